//! Chromium's DevTools over a pipe (`--remote-debugging-pipe`: commands on its descriptor 3,
//! answers and events on 4, each message ended by a NUL byte) instead of a TCP port, which any
//! local process, or a page pointed at it, could connect to and drive the browser through.
//!
//! chromiumoxide speaks DevTools only over a WebSocket, so [`bridge`] hands it one: a listener on
//! a loopback port whose path is a 128-bit secret, that accepts exactly one connection (refusing
//! any other path) and then stops listening. From then on nothing listens, and the messages pass
//! between that connection and the pipe.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

use async_tungstenite::tungstenite::Message;
use async_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use async_tungstenite::tungstenite::protocol::WebSocketConfig;
use futures::StreamExt;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::net::unix::pipe;

/// The pipe pair, before Chromium starts.
pub(super) struct DevtoolsPipe {
    /// Chromium's ends: it reads commands from the first and writes to the second.
    child: (OwnedFd, OwnedFd),
    /// Ours: we write commands into the first and read from the second.
    ours: (OwnedFd, OwnedFd),
}

impl DevtoolsPipe {
    pub fn new() -> io::Result<Self> {
        let (command_reader, command_writer) = io::pipe()?;
        let (answer_reader, answer_writer) = io::pipe()?;
        Ok(Self {
            child: (command_reader.into(), answer_writer.into()),
            ours: (command_writer.into(), answer_reader.into()),
        })
    }

    /// Gives Chromium its ends as descriptors 3 and 4.
    pub fn pass_to(&self, command: &mut tokio::process::Command) {
        crate::sys::pass_devtools_pipe(command, self.child.0.as_raw_fd(), self.child.1.as_raw_fd());
    }

    /// Once Chromium has started (with its own copies of its ends): closes ours of its ends, so
    /// that its exit ends the pipe, and starts the bridge. Returns the URL chromiumoxide connects
    /// to.
    pub async fn bridge(self) -> io::Result<String> {
        drop(self.child);
        let to_chromium = pipe::Sender::from_owned_fd(self.ours.0)?;
        let from_chromium = pipe::Receiver::from_owned_fd(self.ours.1)?;
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let mut secret = [0u8; 16];
        getrandom::fill(&mut secret).map_err(|error| io::Error::other(error.to_string()))?;
        let path = format!(
            "/devtools/{}",
            secret
                .iter()
                .map(|byte| format!("{byte:02x}"))
                .collect::<String>()
        );
        let url = format!("ws://{}{path}", listener.local_addr()?);
        tokio::spawn(serve_once(listener, path, to_chromium, from_chromium));
        Ok(url)
    }
}

/// Accepts the one connection that knows the path, stops listening, and passes messages until
/// either side ends.
async fn serve_once(
    listener: TcpListener,
    path: String,
    mut to_chromium: pipe::Sender,
    from_chromium: pipe::Receiver,
) {
    let websocket = loop {
        let Ok((stream, _)) = listener.accept().await else {
            return;
        };
        // Small messages both ways, each awaited: without this, Nagle's algorithm holds an answer
        // until the client's delayed ACK (~40 ms), on every round trip.
        let _ = stream.set_nodelay(true);
        #[allow(
            clippy::result_large_err,
            reason = "the signature tungstenite's handshake callback has"
        )]
        let check_path = |request: &Request, response: Response| {
            if request.uri().path() == path {
                Ok(response)
            } else {
                let mut refusal = ErrorResponse::new(None);
                *refusal.status_mut() = http::StatusCode::NOT_FOUND;
                Err(refusal)
            }
        };
        // Messages as large as a full-page screenshot pass in one piece.
        let config = WebSocketConfig::default()
            .max_message_size(None)
            .max_frame_size(None);
        if let Ok(websocket) =
            async_tungstenite::tokio::accept_hdr_async_with_config(stream, check_path, Some(config))
                .await
        {
            break websocket;
        }
    };
    drop(listener);
    let (mut to_client, mut from_client) = websocket.split();
    let commands = async {
        while let Some(Ok(message)) = from_client.next().await {
            let bytes = match message {
                Message::Text(text) => text.as_bytes().to_vec(),
                Message::Binary(bytes) => bytes.to_vec(),
                Message::Close(_) => break,
                _ => continue,
            };
            if to_chromium.write_all(&bytes).await.is_err()
                || to_chromium.write_all(&[0]).await.is_err()
            {
                break;
            }
        }
    };
    let answers = async {
        let mut reader = BufReader::with_capacity(256 * 1024, from_chromium);
        let mut message = Vec::new();
        loop {
            message.clear();
            match reader.read_until(0, &mut message).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            if message.last() == Some(&0) {
                message.pop();
            }
            let Ok(text) = String::from_utf8(std::mem::take(&mut message)) else {
                continue;
            };
            if to_client.send(Message::text(text)).await.is_err() {
                break;
            }
        }
        let _ = to_client.close(None).await;
    };
    // Either side ending ends the connection, which is how the supervisor hears of it.
    tokio::select! {
        () = commands => {}
        () = answers => {}
    }
}
