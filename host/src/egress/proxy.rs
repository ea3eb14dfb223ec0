//! [`EgressProxy`]: an HTTP proxy on a loopback port that Chromium (`--proxy-server`, loopback
//! included) and the webhook client send every request through. `CONNECT host:port` (HTTPS, and
//! WebSockets, which Chromium always tunnels) opens a tunnel; a plain `http://` request is forwarded
//! on a pooled connection. Both reach their server only through [`Shared::connect`]: resolve, check
//! every address against the rules, connect to a checked one. What was checked is what is used.
//!
//! A refusal is a `403`, and a site that cannot be reached a `502`, each with the reason in the body
//! and in the `x-pagewright-egress` header (`refused; REASON` or `unreachable; REASON`), which the
//! page code turns into a failed navigation when it is the document's answer: Chromium would render
//! the proxy's answer as if the site had given it.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderName, HeaderValue};
use hyper::{Method, Request, Response, StatusCode, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::{TcpListener, TcpStream};

use super::rules::{EgressRules, Refusal, is_this_machine};
use crate::metrics::Metrics;

/// The header the proxy's own answers carry, so a page's navigation can tell them from the site's.
pub const EGRESS_HEADER: &str = "x-pagewright-egress";

/// How long connecting to a checked address may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The running proxy. Cheap to clone; the proxy stops when the runtime does.
#[derive(Debug, Clone)]
pub struct EgressProxy {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    rules: Arc<EgressRules>,
    address: SocketAddr,
    metrics: Metrics,
}

type ProxyBody = BoxBody<Bytes, hyper::Error>;

impl EgressProxy {
    /// Listens on a free loopback port and serves until the runtime stops.
    pub async fn start(rules: Arc<EgressRules>, metrics: Metrics) -> std::io::Result<Self> {
        let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
        let address = listener.local_addr()?;
        let shared = Arc::new(Shared {
            rules,
            address,
            metrics,
        });
        let client = Client::builder(TokioExecutor::new()).build(CheckedConnector {
            shared: shared.clone(),
        });
        tokio::spawn(serve(listener, shared.clone(), client));
        Ok(Self { shared })
    }

    /// The proxy's URL, for `--proxy-server` and the webhook client.
    pub fn url(&self) -> String {
        format!("http://{}", self.shared.address)
    }
}

impl Shared {
    /// A connection to `host:port` at an address the rules allow.
    async fn connect(&self, host: &str, port: u16) -> Result<TcpStream, ConnectError> {
        let addresses = self.rules.resolve(host, port).await.map_err(|refusal| {
            if !matches!(refusal, Refusal::Resolve { .. }) {
                self.metrics.egress_refused.inc();
                tracing::info!(host, port, %refusal, "egress refused");
            }
            ConnectError::Refused(refusal)
        })?;
        // A request to the proxy itself would loop.
        if let Some(&address) = addresses
            .iter()
            .find(|address| is_this_machine(address.ip()) && port == self.address.port())
        {
            self.metrics.egress_refused.inc();
            return Err(ConnectError::Refused(Refusal::Protected { address }));
        }
        let mut last = None;
        for address in addresses {
            match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(address)).await {
                Ok(Ok(stream)) => {
                    let _ = stream.set_nodelay(true);
                    return Ok(stream);
                }
                Ok(Err(error)) => last = Some(error),
                Err(_) => last = Some(std::io::ErrorKind::TimedOut.into()),
            }
        }
        Err(ConnectError::Io(last.unwrap_or_else(|| {
            std::io::Error::other("no address to connect to")
        })))
    }
}

#[derive(Debug, thiserror::Error)]
enum ConnectError {
    #[error(transparent)]
    Refused(Refusal),
    #[error("connecting failed: {0}")]
    Io(#[from] std::io::Error),
}

async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    client: Client<CheckedConnector, Incoming>,
) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(error) => {
                // Out of file descriptors, most likely: pause rather than spin.
                tracing::warn!(%error, "the egress proxy could not accept a connection");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let (shared, client) = (shared.clone(), client.clone());
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                handle(shared.clone(), client.clone(), request)
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .preserve_header_case(true)
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades()
                .await;
        });
    }
}

async fn handle(
    shared: Arc<Shared>,
    client: Client<CheckedConnector, Incoming>,
    mut request: Request<Incoming>,
) -> Result<Response<ProxyBody>, Infallible> {
    if request.method() == Method::CONNECT {
        let Some(authority) = request.uri().authority().cloned() else {
            return Ok(answer(StatusCode::BAD_REQUEST, "CONNECT needs host:port"));
        };
        let port = authority.port_u16().unwrap_or(443);
        let mut upstream = match shared.connect(authority.host(), port).await {
            Ok(upstream) => upstream,
            Err(error) => return Ok(refused(&error)),
        };
        tokio::spawn(async move {
            if let Ok(upgraded) = hyper::upgrade::on(&mut request).await {
                let mut tunnel = TokioIo::new(upgraded);
                let _ = tokio::io::copy_bidirectional(&mut tunnel, &mut upstream).await;
            }
        });
        return Ok(Response::new(empty()));
    }
    if request.uri().scheme_str() != Some("http") || request.uri().host().is_none() {
        return Ok(answer(
            StatusCode::BAD_REQUEST,
            "a proxy request needs an absolute http:// URL (https goes through CONNECT)",
        ));
    }
    // What was meant for this proxy stays here.
    let headers = request.headers_mut();
    headers.remove(HeaderName::from_static("proxy-connection"));
    headers.remove(hyper::header::PROXY_AUTHORIZATION);
    match client.request(request).await {
        Ok(response) => Ok(response.map(BodyExt::boxed)),
        Err(error) => {
            // The connector's own error, if that is where it failed.
            let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&error);
            let mut chain = Vec::new();
            while let Some(current) = source {
                if let Some(connect) = current.downcast_ref::<ConnectError>() {
                    return Ok(refused(connect));
                }
                chain.push(current.to_string());
                source = current.source();
            }
            Ok(refused(&ConnectError::Io(std::io::Error::other(
                chain.join(": "),
            ))))
        }
    }
}

/// The answer to a connection that was refused or failed.
fn refused(error: &ConnectError) -> Response<ProxyBody> {
    let (status, kind) = match error {
        ConnectError::Refused(Refusal::Resolve { .. }) | ConnectError::Io(_) => {
            (StatusCode::BAD_GATEWAY, "unreachable")
        }
        ConnectError::Refused(_) => (StatusCode::FORBIDDEN, "refused"),
    };
    let mut response = answer(status, &error.to_string());
    if let Ok(value) = HeaderValue::from_str(&format!("{kind}; {error}")) {
        response.headers_mut().insert(EGRESS_HEADER, value);
    }
    response
}

fn answer(status: StatusCode, text: &str) -> Response<ProxyBody> {
    let mut response = Response::new(
        Full::new(Bytes::from(text.to_owned()))
            .map_err(|never| match never {})
            .boxed(),
    );
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

fn empty() -> ProxyBody {
    Full::new(Bytes::new())
        .map_err(|never| match never {})
        .boxed()
}

/// The pooled client's connector: every new connection through [`Shared::connect`].
#[derive(Debug, Clone)]
struct CheckedConnector {
    shared: Arc<Shared>,
}

impl tower_service::Service<Uri> for CheckedConnector {
    type Response = TokioIo<TcpStream>;
    type Error = ConnectError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let shared = self.shared.clone();
        Box::pin(async move {
            let host = uri.host().unwrap_or_default().to_owned();
            let port = uri.port_u16().unwrap_or(80);
            shared.connect(&host, port).await.map(TokioIo::new)
        })
    }
}
