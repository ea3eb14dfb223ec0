//! The host side of the `log` interface, and the plugin's stdout and stderr: each line becomes a
//! `tracing` event with the plugin's name and the job's id.
//!
//! A plugin can print in a loop, so each invocation has a budget of log bytes; past it lines are
//! dropped, with one warning. stderr's last lines are kept: a Rust guest prints its panic message there
//! just before it traps, and the error the caller gets quotes it.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};

use super::bindings::pagewright::plugin::log::{Host, Level};
use super::state::PluginState;

/// Log text one invocation may emit: enough for any debugging, small enough that a plugin printing in
/// a loop cannot fill a disk.
const LOG_BUDGET_BYTES: usize = 1 << 20;
/// Longer lines are cut here.
const MAX_LINE_BYTES: usize = 8 << 10;
/// stderr lines kept for the trap message: a Rust panic is a location line and a message line; a
/// Python exception ends with its line in the traceback and the exception, then two lines of
/// componentize-py's runtime.
const STDERR_TAIL_LINES: usize = 6;

/// What language runtimes print on their way to a trap after the plugin's own message: not worth
/// quoting.
fn is_runtime_noise(line: &str) -> bool {
    line.starts_with("note: run with `RUST_BACKTRACE")
        // SpiderMonkey (componentize-js), as it aborts.
        || line == "Redirecting call to abort() to mozalloc_abort"
        // componentize-py's runtime, after the traceback.
        || line == "Python function threw an unexpected exception"
        || (line.starts_with("thread '") && line.contains("panicked at runtime/src/"))
}

#[derive(Debug)]
pub(super) struct LogSink {
    plugin: Arc<str>,
    job: u64,
    budget: AtomicUsize,
    stderr_tail: Mutex<VecDeque<String>>,
}

impl LogSink {
    pub fn new(plugin: Arc<str>, job: u64) -> Arc<Self> {
        Arc::new(Self {
            plugin,
            job,
            budget: AtomicUsize::new(LOG_BUDGET_BYTES),
            stderr_tail: Mutex::new(VecDeque::new()),
        })
    }

    pub fn plugin(&self) -> &str {
        &self.plugin
    }

    pub fn job(&self) -> u64 {
        self.job
    }

    /// The plugin's last few stderr lines, joined, without what its language's runtime adds; `None`
    /// if it wrote none.
    pub fn stderr_tail(&self) -> Option<String> {
        let tail = self
            .stderr_tail
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let lines: Vec<&str> = tail
            .iter()
            .map(String::as_str)
            .filter(|line| !is_runtime_noise(line))
            .collect();
        (!lines.is_empty()).then(|| lines.join(" "))
    }

    pub fn stdout(self: &Arc<Self>) -> LogStream {
        LogStream {
            sink: self.clone(),
            stderr: false,
        }
    }

    pub fn stderr(self: &Arc<Self>) -> LogStream {
        LogStream {
            sink: self.clone(),
            stderr: true,
        }
    }

    fn emit(&self, level: Level, message: &str) {
        let message = truncate(message.trim_end(), MAX_LINE_BYTES);
        // Control characters (line breaks, carriage returns, terminal escapes) would let a plugin forge
        // or hide log lines.
        let message: String = message
            .chars()
            .map(|c| if c.is_control() && c != '\t' { ' ' } else { c })
            .collect();
        let cost = message.len().max(1);
        let before = self
            .budget
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| {
                Some(left.saturating_sub(cost))
            })
            .unwrap_or(0);
        if before < cost {
            if before > 0 {
                tracing::warn!(plugin = %self.plugin, job = self.job, "log budget spent; dropping the plugin's further log lines");
            }
            return;
        }
        let (plugin, job) = (&*self.plugin, self.job);
        match level {
            Level::Trace => tracing::trace!(target: "plugin", plugin, job, "{message}"),
            Level::Debug => tracing::debug!(target: "plugin", plugin, job, "{message}"),
            Level::Info => tracing::info!(target: "plugin", plugin, job, "{message}"),
            Level::Warn => tracing::warn!(target: "plugin", plugin, job, "{message}"),
            Level::Error => tracing::error!(target: "plugin", plugin, job, "{message}"),
        }
    }
}

fn truncate(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

impl Host for PluginState {
    async fn log(&mut self, level: Level, message: String) -> wasmtime::Result<()> {
        self.log.emit(level, &message);
        Ok(())
    }
}

/// stdout or stderr of one invocation: complete lines go to the log (stdout at info, stderr at warn).
#[derive(Debug, Clone)]
pub(super) struct LogStream {
    sink: Arc<LogSink>,
    stderr: bool,
}

impl IsTerminal for LogStream {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for LogStream {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(LineWriter {
            stream: self.clone(),
            line: Vec::new(),
        })
    }
}

struct LineWriter {
    stream: LogStream,
    line: Vec<u8>,
}

impl LineWriter {
    fn emit_line(&mut self) {
        let text = String::from_utf8_lossy(&self.line).into_owned();
        self.line.clear();
        let sink = &self.stream.sink;
        if self.stream.stderr {
            if !text.trim().is_empty() {
                let mut tail = sink
                    .stderr_tail
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                if tail.len() == STDERR_TAIL_LINES {
                    tail.pop_front();
                }
                tail.push_back(text.trim().to_owned());
            }
            sink.emit(Level::Warn, &text);
        } else {
            sink.emit(Level::Info, &text);
        }
    }
}

impl AsyncWrite for LineWriter {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        for &byte in buf {
            if byte == b'\n' {
                self.emit_line();
            } else if self.line.len() < MAX_LINE_BYTES {
                self.line.push(byte);
            }
        }
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        if !self.line.is_empty() {
            self.emit_line();
        }
        Poll::Ready(Ok(()))
    }
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        if !self.line.is_empty() {
            self.emit_line();
        }
    }
}
