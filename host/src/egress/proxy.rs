//! [`EgressProxy`]: an HTTP proxy on loopback ports that Chromium (`--proxy-server`, loopback
//! included) and the webhook client send every request through. `CONNECT host:port` (HTTPS, and
//! WebSockets, which Chromium always tunnels) opens a tunnel; a plain `http://` request is forwarded
//! on a pooled connection. Both reach their server only through [`Shared::connect`]: resolve, check
//! every address against the rules, connect to a checked one. What was checked is what is used.
//!
//! Each listener is a [`Route`]: straight out, or on through an [`Upstream`] proxy (the server's
//! `--proxy` for every page, or a job's `page.proxy`, whose browser context Chromium points at that
//! upstream's own listener). Through an upstream, the destination is checked by name (and by the
//! addresses it has here, when the rules check addresses; the upstream resolves it itself), and a
//! job's upstream is itself a destination the rules must allow; the server's is the operator's.
//!
//! A refusal is a `403`, and a site that cannot be reached a `502`, each with the reason in the body
//! and in the `x-pagewright-egress` header (`refused; REASON` or `unreachable; REASON`), which the
//! page code turns into a failed navigation when it is the document's answer: Chromium would render
//! the proxy's answer as if the site had given it.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
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
use super::upstream::Upstream;
use crate::metrics::Metrics;

/// The header the proxy's own answers carry, so a page's navigation can tell them from the site's.
pub const EGRESS_HEADER: &str = "x-pagewright-egress";

/// How long connecting to a checked address may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The most upstream proxies one server keeps a listener for: far more than any deployment's
/// proxy pool, few enough that callers cannot make it hold ports without bound.
const MAX_ROUTES: usize = 1024;

/// The running proxy. Cheap to clone; the proxy stops when the runtime does.
#[derive(Debug, Clone)]
pub struct EgressProxy {
    shared: Arc<Shared>,
    /// Where pages go by default: through the server's `--proxy`, if it has one.
    pages: String,
    /// Straight out, whatever `--proxy` says: for webhooks.
    direct: String,
}

#[derive(Debug)]
struct Shared {
    rules: Arc<EgressRules>,
    metrics: Metrics,
    /// Every listener's port: a connection to one of them would loop.
    ports: Mutex<Vec<u16>>,
    /// The listener of each job upstream, by [`Upstream::id`].
    routes: Mutex<HashMap<String, String>>,
}

/// One listener's way out.
struct Route {
    shared: Arc<Shared>,
    upstream: Option<Upstream>,
    /// The server's own `--proxy`: reached wherever it is, as the operator configured it.
    trusted: bool,
    client: Client<CheckedConnector, Incoming>,
}

type ProxyBody = BoxBody<Bytes, hyper::Error>;

impl EgressProxy {
    /// Listens on free loopback ports and serves until the runtime stops: one listener straight
    /// out and, with `default_upstream` (`--proxy`), one through it for pages.
    pub async fn start(
        rules: Arc<EgressRules>,
        metrics: Metrics,
        default_upstream: Option<Upstream>,
    ) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            rules,
            metrics,
            ports: Mutex::new(Vec::new()),
            routes: Mutex::new(HashMap::new()),
        });
        let direct = listen(&shared, None, false).await?;
        let pages = match default_upstream {
            Some(upstream) => listen(&shared, Some(upstream), true).await?,
            None => direct.clone(),
        };
        Ok(Self {
            shared,
            pages,
            direct,
        })
    }

    /// The pages' proxy URL, for `--proxy-server`.
    pub fn url(&self) -> String {
        self.pages.clone()
    }

    /// The URL straight out, for the webhook client.
    pub fn direct_url(&self) -> String {
        self.direct.clone()
    }

    /// The URL of the listener that goes on through `upstream`, started the first time it is
    /// asked for.
    pub async fn route_via(&self, upstream: &Upstream) -> std::io::Result<String> {
        let id = upstream.id();
        if let Some(url) = self.route_url(&id) {
            return Ok(url);
        }
        if self.shared.lock_routes().len() >= MAX_ROUTES {
            return Err(std::io::Error::other(format!(
                "this server already has listeners for {MAX_ROUTES} proxies"
            )));
        }
        let url = listen(&self.shared, Some(upstream.clone()), false).await?;
        // Two jobs that started one at once keep the first; the other listener idles.
        Ok(self.shared.lock_routes().entry(id).or_insert(url).clone())
    }

    /// The listener [`EgressProxy::route_via`] started for the upstream of this id.
    pub fn route_url(&self, id: &str) -> Option<String> {
        self.shared.lock_routes().get(id).cloned()
    }
}

/// Binds a listener for a route and serves it; returns its URL.
async fn listen(
    shared: &Arc<Shared>,
    upstream: Option<Upstream>,
    trusted: bool,
) -> std::io::Result<String> {
    let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
    let address = listener.local_addr()?;
    shared
        .ports
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(address.port());
    let client = Client::builder(TokioExecutor::new()).build(CheckedConnector {
        shared: shared.clone(),
    });
    let route = Arc::new(Route {
        shared: shared.clone(),
        upstream,
        trusted,
        client,
    });
    tokio::spawn(serve(listener, route));
    Ok(format!("http://{address}"))
}

impl Shared {
    fn lock_routes(&self) -> std::sync::MutexGuard<'_, HashMap<String, String>> {
        self.routes.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn is_listener(&self, address: SocketAddr) -> bool {
        is_this_machine(address.ip())
            && self
                .ports
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .contains(&address.port())
    }

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
        if let Some(&address) = addresses.iter().find(|address| self.is_listener(**address)) {
            self.metrics.egress_refused.inc();
            return Err(ConnectError::Refused(Refusal::Protected { address }));
        }
        connect_any(addresses).await
    }
}

/// The first of `addresses` that accepts a connection.
async fn connect_any(addresses: Vec<SocketAddr>) -> Result<TcpStream, ConnectError> {
    {
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
    #[error("the proxy {proxy} {reason}")]
    Upstream { proxy: String, reason: String },
}

impl Route {
    /// A connection to the upstream proxy: checked like any destination when a job named it.
    async fn connect_upstream(&self, upstream: &Upstream) -> Result<TcpStream, ConnectError> {
        let failed = |error: ConnectError| ConnectError::Upstream {
            proxy: upstream.to_string(),
            reason: format!("could not be reached: {error}"),
        };
        if !self.trusted {
            return self
                .shared
                .connect(&upstream.host, upstream.port)
                .await
                .map_err(|error| match error {
                    refused @ ConnectError::Refused(
                        Refusal::Internal { .. }
                        | Refusal::DeniedHost { .. }
                        | Refusal::HostNotAllowed { .. }
                        | Refusal::DeniedNetwork { .. }
                        | Refusal::Protected { .. },
                    ) => refused,
                    other => failed(other),
                });
        }
        let addresses = tokio::time::timeout(
            CONNECT_TIMEOUT,
            tokio::net::lookup_host((upstream.host.as_str(), upstream.port)),
        )
        .await
        .map_err(|_| failed(std::io::Error::from(std::io::ErrorKind::TimedOut).into()))?
        .map_err(|error| failed(error.into()))?
        .collect();
        connect_any(addresses).await.map_err(failed)
    }

    /// Checks a destination the upstream will connect to: by name, and by the addresses it has
    /// here when the rules check addresses (a name that does not resolve here is the upstream's).
    async fn check_destination(&self, host: &str, port: u16) -> Result<(), ConnectError> {
        let rules = &self.shared.rules;
        let checked = if rules.checks_addresses() {
            match rules.resolve(host, port).await {
                Ok(_) | Err(Refusal::Resolve { .. }) => Ok(()),
                Err(refusal) => Err(refusal),
            }
        } else {
            rules.check_host(host)
        };
        checked.map_err(|refusal| {
            self.shared.metrics.egress_refused.inc();
            tracing::info!(host, port, %refusal, "egress refused");
            ConnectError::Refused(refusal)
        })
    }

    /// A tunnel to `host:port` through the upstream's `CONNECT`.
    async fn tunnel_through(
        &self,
        upstream: &Upstream,
        host: &str,
        port: u16,
    ) -> Result<TokioIo<hyper::upgrade::Upgraded>, ConnectError> {
        self.check_destination(host, port).await?;
        let stream = self.connect_upstream(upstream).await?;
        let failed = |reason: String| ConnectError::Upstream {
            proxy: upstream.to_string(),
            reason,
        };
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|error| failed(format!("failed: {error}")))?;
        tokio::spawn(connection.with_upgrades());
        let authority = format!("{host}:{port}");
        let mut connect = Request::builder()
            .method(Method::CONNECT)
            .uri(authority.as_str())
            .header(hyper::header::HOST, authority.as_str());
        if let Some(authorization) = upstream.authorization() {
            connect = connect.header(hyper::header::PROXY_AUTHORIZATION, authorization);
        }
        let connect = connect
            .body(empty())
            .map_err(|error| failed(format!("could not be asked: {error}")))?;
        let response = sender
            .send_request(connect)
            .await
            .map_err(|error| failed(format!("failed: {error}")))?;
        if response.status() != StatusCode::OK {
            return Err(failed(format!(
                "answered {} to CONNECT {authority}",
                response.status()
            )));
        }
        let upgraded = hyper::upgrade::on(response)
            .await
            .map_err(|error| failed(format!("failed: {error}")))?;
        Ok(TokioIo::new(upgraded))
    }

    /// A plain `http://` request sent on to the upstream in absolute form, with its credentials.
    async fn forward_through(
        &self,
        upstream: &Upstream,
        mut request: Request<Incoming>,
    ) -> Result<Response<ProxyBody>, ConnectError> {
        let host = request.uri().host().unwrap_or_default().to_owned();
        let port = request.uri().port_u16().unwrap_or(80);
        self.check_destination(&host, port).await?;
        let stream = self.connect_upstream(upstream).await?;
        let failed = |error: hyper::Error| ConnectError::Upstream {
            proxy: upstream.to_string(),
            reason: format!("failed: {error}"),
        };
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(failed)?;
        tokio::spawn(connection);
        if let Some(authorization) = upstream.authorization() {
            request
                .headers_mut()
                .insert(hyper::header::PROXY_AUTHORIZATION, authorization);
        }
        let response = sender.send_request(request).await.map_err(failed)?;
        // Chromium would ask for credentials it does not have, or show the proxy's page as the
        // site's: the proxy's refusal is this proxy's failure to reach the site.
        if response.status() == StatusCode::PROXY_AUTHENTICATION_REQUIRED {
            return Err(ConnectError::Upstream {
                proxy: upstream.to_string(),
                reason: "answered 407: it refused the credentials".into(),
            });
        }
        Ok(response.map(BodyExt::boxed))
    }
}

async fn serve(listener: TcpListener, route: Arc<Route>) {
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
        let route = route.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| handle(route.clone(), request));
            let _ = hyper::server::conn::http1::Builder::new()
                .preserve_header_case(true)
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades()
                .await;
        });
    }
}

async fn handle(
    route: Arc<Route>,
    mut request: Request<Incoming>,
) -> Result<Response<ProxyBody>, Infallible> {
    if request.method() == Method::CONNECT {
        let Some(authority) = request.uri().authority().cloned() else {
            return Ok(answer(StatusCode::BAD_REQUEST, "CONNECT needs host:port"));
        };
        let port = authority.port_u16().unwrap_or(443);
        let far_end = match &route.upstream {
            None => route
                .shared
                .connect(authority.host(), port)
                .await
                .map(FarEnd::Direct),
            Some(upstream) => route
                .tunnel_through(upstream, authority.host(), port)
                .await
                .map(FarEnd::Tunnel),
        };
        let far_end = match far_end {
            Ok(far_end) => far_end,
            Err(error) => return Ok(refused(&error)),
        };
        tokio::spawn(async move {
            if let Ok(upgraded) = hyper::upgrade::on(&mut request).await {
                let mut tunnel = TokioIo::new(upgraded);
                let _ = match far_end {
                    FarEnd::Direct(mut stream) => {
                        tokio::io::copy_bidirectional(&mut tunnel, &mut stream).await
                    }
                    FarEnd::Tunnel(mut stream) => {
                        tokio::io::copy_bidirectional(&mut tunnel, &mut stream).await
                    }
                };
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
    if let Some(upstream) = &route.upstream {
        return Ok(route
            .forward_through(upstream, request)
            .await
            .unwrap_or_else(|error| refused(&error)));
    }
    match route.client.request(request).await {
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

/// Where a tunnel goes: a server, or a tunnel through an upstream proxy.
enum FarEnd {
    Direct(TcpStream),
    Tunnel(TokioIo<hyper::upgrade::Upgraded>),
}

/// The answer to a connection that was refused or failed.
fn refused(error: &ConnectError) -> Response<ProxyBody> {
    let (status, kind) = match error {
        ConnectError::Refused(Refusal::Resolve { .. })
        | ConnectError::Io(_)
        | ConnectError::Upstream { .. } => (StatusCode::BAD_GATEWAY, "unreachable"),
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
