//! Tries what a plugin must not be able to do (read and write files, list a directory, connect to
//! `params.port` on loopback, look a name up, read the environment) and reports what each attempt
//! got, as JSON: `"ok"` or the error. It imports WASI's filesystem and sockets, as Python and
//! JavaScript toolchains' output does; the host must link them with nothing behind them.

use pagewright_sdk::{Error, Extractor, Output, Page};
use serde::Deserialize;
use serde_json::json;
use std::net::{TcpStream, ToSocketAddrs};

struct Sandbox;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    port: u16,
}

fn outcome<T, E: std::fmt::Display>(result: Result<T, E>) -> String {
    match result {
        Ok(_) => "ok".into(),
        Err(error) => error.to_string(),
    }
}

impl Extractor for Sandbox {
    type Params = Params;

    fn extract(_page: Page<'_>, params: Params) -> Result<Output, Error> {
        println!("the sandbox guest writes to stdout");
        Output::json(&json!({
            "read": outcome(std::fs::read("/etc/passwd")),
            "write": outcome(std::fs::write("/tmp/pagewright-sandbox-guest", b"x")),
            "list": outcome(std::fs::read_dir("/")),
            "connect": outcome(TcpStream::connect(("127.0.0.1", params.port))),
            "lookup": outcome(("localhost", 80).to_socket_addrs()),
            "environment": std::env::vars().count(),
            "arguments": std::env::args().count(),
        }))
    }
}

pagewright_sdk::plugin!(Sandbox: extractor);
