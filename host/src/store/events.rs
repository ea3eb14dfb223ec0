//! What one host tells the others at once, through PostgreSQL's `LISTEN`/`NOTIFY`: a job was
//! queued (claim now rather than at the next poll), a job was cancelled (stop it if it runs here),
//! the plugin registry or the scorer changed (reload). An embedded SQLite store has one host and
//! no such channel: notifying does nothing and there is nothing to listen to.
//!
//! Notifications are a shortcut, never the only way: one sent while a listener reconnects is lost,
//! so every host also polls (claims), renews its leases (which finds cancelled jobs) and re-reads
//! the registry now and then.

use std::time::Duration;

use sqlx::postgres::PgListener;
use tokio::sync::broadcast;

use super::jobs::query;
use super::{Backend, Store, StoreError};

/// The one channel every host listens on.
const CHANNEL: &str = "pagewright";

/// What happened on another host (or this one: a host hears its own notifications too).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Jobs were queued.
    Queued,
    /// A job was cancelled; the host running it stops it.
    Cancelled(String),
    /// A plugin was uploaded or deleted, or the scorer set.
    Plugins,
    /// The connection that hears events was lost and is back: whatever was said meanwhile was
    /// missed, so look again.
    Missed,
}

impl Event {
    fn payload(&self) -> String {
        match self {
            Self::Queued => "queued".into(),
            Self::Cancelled(id) => format!("cancelled:{id}"),
            Self::Plugins => "plugins".into(),
            Self::Missed => "missed".into(),
        }
    }

    fn parse(payload: &str) -> Option<Self> {
        match payload {
            "queued" => Some(Self::Queued),
            "plugins" => Some(Self::Plugins),
            _ => payload
                .strip_prefix("cancelled:")
                .map(|id| Self::Cancelled(id.to_owned())),
        }
    }
}

/// Events buffered for a subscriber that falls behind; one that falls further gets `Missed`.
const BACKLOG: usize = 1024;
/// Waits between attempts to connect the listening connection.
const RECONNECT: Duration = Duration::from_secs(1);

/// The farm's events, heard on one connection of their own and handed to every subscriber.
#[derive(Debug)]
pub(super) struct Hub {
    sender: broadcast::Sender<Event>,
    listener: tokio::task::JoinHandle<()>,
}

impl Hub {
    /// Starts hearing the farm's events on a connection to `url`.
    pub(super) fn start(url: String, shown: String) -> Self {
        let (sender, _) = broadcast::channel(BACKLOG);
        let listener = tokio::spawn(listen(url, shown, sender.clone()));
        Self { sender, listener }
    }

    pub(super) fn stop(&self) {
        self.listener.abort();
    }
}

/// Connects, listens and forwards until stopped; a lost connection is made again, and its
/// subscribers told that they missed what was said meanwhile.
async fn listen(url: String, shown: String, sender: broadcast::Sender<Event>) {
    loop {
        let mut listener = match PgListener::connect(&url).await {
            Ok(listener) => listener,
            Err(error) => {
                tracing::warn!(store = %shown, %error, "connecting to hear the farm's events failed; retrying");
                tokio::time::sleep(RECONNECT).await;
                continue;
            }
        };
        if let Err(error) = listener.listen(CHANNEL).await {
            tracing::warn!(store = %shown, %error, "listening for the farm's events failed; retrying");
            tokio::time::sleep(RECONNECT).await;
            continue;
        }
        let _ = sender.send(Event::Missed);
        loop {
            match listener.try_recv().await {
                Ok(Some(notification)) => match Event::parse(notification.payload()) {
                    Some(event) => {
                        let _ = sender.send(event);
                    }
                    None => tracing::debug!(payload = notification.payload(), "unknown event"),
                },
                // Reconnected: tell the subscribers they missed what was sent meanwhile.
                Ok(None) => {
                    let _ = sender.send(Event::Missed);
                }
                Err(error) => {
                    tracing::warn!(store = %shown, %error, "hearing the farm's events failed; reconnecting");
                    tokio::time::sleep(RECONNECT).await;
                    break;
                }
            }
        }
    }
}

/// What a subscriber hears.
#[derive(Debug)]
pub struct Listener {
    receiver: broadcast::Receiver<Event>,
}

impl Listener {
    /// The next event; `None` once the store is closed. A subscriber that fell behind by more than
    /// the backlog hears `Missed`.
    pub async fn next(&mut self) -> Option<Event> {
        match self.receiver.recv().await {
            Ok(event) => Some(event),
            Err(broadcast::error::RecvError::Lagged(_)) => Some(Event::Missed),
            Err(broadcast::error::RecvError::Closed) => None,
        }
    }
}

impl Store {
    /// Tells every host of the farm (nothing, on SQLite).
    pub async fn notify(&self, event: &Event) -> Result<(), StoreError> {
        if self.backend() != Backend::Postgres {
            return Ok(());
        }
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(CHANNEL)
            .bind(event.payload())
            .execute(self.pool())
            .await
            .map_err(query("notify the farm"))?;
        Ok(())
    }

    /// The farm's events from now on; `None` on SQLite, which has no farm.
    pub fn listen(&self) -> Option<Listener> {
        self.hub().map(|hub| Listener {
            receiver: hub.sender.subscribe(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::Event;

    #[test]
    fn events_read_back_as_sent() {
        assert_eq!(Event::parse("missed"), None, "never sent, only heard");
        for event in [
            Event::Queued,
            Event::Plugins,
            Event::Cancelled("0123abcd".into()),
        ] {
            assert_eq!(Event::parse(&event.payload()), Some(event));
        }
        assert_eq!(Event::parse("something new"), None);
    }
}
