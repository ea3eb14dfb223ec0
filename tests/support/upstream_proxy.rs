//! [`UpstreamProxy`]: a small HTTP forward proxy for the tests to route pages through, as a
//! customer's proxy would be: `CONNECT` tunnels, absolute-form `http://` requests forwarded, and
//! optionally basic credentials required (a 407 without them). It records what it was asked for.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};

/// One request the proxy received.
#[derive(Debug, Clone)]
pub struct Proxied {
    pub method: String,
    /// `host:port` for `CONNECT`, the absolute URL otherwise.
    pub target: String,
    /// Whether it carried the credentials the proxy wants (always, when it wants none).
    pub authorized: bool,
}

pub struct UpstreamProxy {
    /// `http://address:port`, without credentials.
    pub url: String,
    pub seen: Arc<Mutex<Vec<Proxied>>>,
}

type Body = BoxBody<Bytes, hyper::Error>;

impl UpstreamProxy {
    /// A proxy on `address` (a loopback address), wanting `credentials` if given.
    pub async fn start(address: [u8; 4], credentials: Option<(&str, &str)>) -> Self {
        let listener = TcpListener::bind(SocketAddr::from((address, 0)))
            .await
            .expect("binding the test proxy");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        let wanted = credentials.map(|(user, password)| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
            )
        });
        let seen = Arc::new(Mutex::new(Vec::new()));
        let recorded = seen.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (wanted, recorded) = (wanted.clone(), recorded.clone());
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request| {
                        handle(request, wanted.clone(), recorded.clone())
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .with_upgrades()
                        .await;
                });
            }
        });
        Self { url, seen }
    }

    /// What it was asked for so far.
    pub fn requests(&self) -> Vec<Proxied> {
        self.seen.lock().expect("lock").clone()
    }
}

async fn handle(
    mut request: Request<Incoming>,
    wanted: Option<String>,
    seen: Arc<Mutex<Vec<Proxied>>>,
) -> Result<Response<Body>, Infallible> {
    let given = request
        .headers()
        .get(hyper::header::PROXY_AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    let authorized = wanted.is_none() || given == wanted;
    let target = if request.method() == Method::CONNECT {
        request
            .uri()
            .authority()
            .map(ToString::to_string)
            .unwrap_or_default()
    } else {
        request.uri().to_string()
    };
    seen.lock().expect("lock").push(Proxied {
        method: request.method().to_string(),
        target: target.clone(),
        authorized,
    });
    if !authorized {
        let mut response = Response::new(empty());
        *response.status_mut() = StatusCode::PROXY_AUTHENTICATION_REQUIRED;
        response.headers_mut().insert(
            hyper::header::PROXY_AUTHENTICATE,
            hyper::header::HeaderValue::from_static("Basic realm=\"test\""),
        );
        return Ok(response);
    }
    if request.method() == Method::CONNECT {
        let Ok(mut server) = TcpStream::connect(target.as_str()).await else {
            return Ok(status(StatusCode::BAD_GATEWAY));
        };
        tokio::spawn(async move {
            if let Ok(upgraded) = hyper::upgrade::on(&mut request).await {
                let _ =
                    tokio::io::copy_bidirectional(&mut TokioIo::new(upgraded), &mut server).await;
            }
        });
        return Ok(Response::new(empty()));
    }
    let (Some(host), port) = (request.uri().host(), request.uri().port_u16()) else {
        return Ok(status(StatusCode::BAD_REQUEST));
    };
    let Ok(server) = TcpStream::connect((host, port.unwrap_or(80))).await else {
        return Ok(status(StatusCode::BAD_GATEWAY));
    };
    let Ok((mut sender, connection)) =
        hyper::client::conn::http1::handshake(TokioIo::new(server)).await
    else {
        return Ok(status(StatusCode::BAD_GATEWAY));
    };
    tokio::spawn(connection);
    // On to the server in origin form, without what was meant for the proxy.
    let origin_form = request
        .uri()
        .path_and_query()
        .map(ToString::to_string)
        .unwrap_or_else(|| "/".into());
    *request.uri_mut() = origin_form.parse().expect("a path");
    request
        .headers_mut()
        .remove(hyper::header::PROXY_AUTHORIZATION);
    match sender.send_request(request).await {
        Ok(response) => Ok(response.map(BodyExt::boxed)),
        Err(_) => Ok(status(StatusCode::BAD_GATEWAY)),
    }
}

fn status(code: StatusCode) -> Response<Body> {
    let mut response = Response::new(empty());
    *response.status_mut() = code;
    response
}

fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed()
}
