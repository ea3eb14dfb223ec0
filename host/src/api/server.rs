//! The API's connections: accepted here rather than by `axum::serve`, which has no header-read
//! timeout and no cap on connections. A client gets [`ConnectionLimits::header_read_timeout`] to
//! send a request's headers (a connection trickling them, or idling between requests, is closed),
//! and past [`ConnectionLimits::max_connections`] a new connection is answered 503 and closed
//! rather than held. Shutdown stops accepting and lets every open connection finish the request
//! it is serving.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

/// How many connections, and how long a client may take to send a request's headers.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    pub max_connections: usize,
    pub header_read_timeout: Duration,
}

impl ConnectionLimits {
    /// Above the 12,800 clients the flood benchmark holds waiting for synchronous renders.
    pub const MAX_CONNECTIONS: usize = 16_384;
    /// A client on a slow link sends its headers in well under a second; ten leaves room.
    pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            max_connections: Self::MAX_CONNECTIONS,
            header_read_timeout: Self::HEADER_READ_TIMEOUT,
        }
    }
}

/// Serves `app` on `listener` until `stop` resolves, then waits for the open connections to finish
/// the requests they are serving (the caller bounds that wait).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ConnectionLimits,
    stop: impl Future<Output = ()>,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    builder.http2().timer(TokioTimer::new());
    let builder = Arc::new(builder);
    let connections = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    tokio::pin!(stop);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    // Out of file descriptors, most likely: pause rather than spin.
                    tracing::warn!(%error, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut stop => break,
        };
        let Ok(permit) = connections.clone().try_acquire_owned() else {
            tokio::spawn(refuse(stream, limits.max_connections));
            continue;
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(app.clone());
        let connection = builder
            .serve_connection(TokioIo::new(stream), service)
            .into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            // Errors here are the client's: it went away, or sent something that is not HTTP.
            let _ = connection.await;
            drop(permit);
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// The answer past the connection cap: a 503 saying so, then the connection closes.
async fn refuse(mut stream: TcpStream, max: usize) {
    let body = serde_json::json!({ "error": {
        "code": "too_many_connections",
        "message": format!("this server holds at most {max} connections (--max-connections); retry shortly"),
    }})
    .to_string();
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
         retry-after: 1\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let write = async {
        let _ = stream.write_all(response.as_bytes()).await;
        let _ = stream.shutdown().await;
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), write).await;
}
