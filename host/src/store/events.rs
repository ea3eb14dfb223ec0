//! What one host tells the others at once, through PostgreSQL's `LISTEN`/`NOTIFY`: a job was
//! queued (claim now rather than at the next poll), a job was cancelled (stop it if it runs here),
//! the plugin registry or the scorer changed (reload). An embedded SQLite store has one host and
//! no such channel: notifying does nothing and there is nothing to listen to.
//!
//! Notifications are a shortcut, never the only way: one sent while a listener reconnects is lost,
//! so every host also polls (claims), renews its leases (which finds cancelled jobs) and re-reads
//! the registry now and then.

use sqlx::postgres::PgListener;

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
}

impl Event {
    fn payload(&self) -> String {
        match self {
            Self::Queued => "queued".into(),
            Self::Cancelled(id) => format!("cancelled:{id}"),
            Self::Plugins => "plugins".into(),
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

/// A connection that hears the farm's events.
#[derive(Debug)]
pub struct Listener {
    listener: PgListener,
}

impl Listener {
    /// The next event. A lost connection is made again here; what was sent meanwhile is missed,
    /// and this returns `None` so the caller can catch up by other means.
    pub async fn next(&mut self) -> Result<Option<Event>, StoreError> {
        loop {
            match self
                .listener
                .try_recv()
                .await
                .map_err(query("hear the farm's events"))?
            {
                None => return Ok(None),
                Some(notification) => {
                    if let Some(event) = Event::parse(notification.payload()) {
                        return Ok(Some(event));
                    }
                    tracing::debug!(payload = notification.payload(), "unknown event");
                }
            }
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

    /// A connection of its own that hears the farm's events; `None` on SQLite, which has no farm.
    pub async fn listen(&self) -> Result<Option<Listener>, StoreError> {
        if self.backend() != Backend::Postgres {
            return Ok(None);
        }
        let mut listener = PgListener::connect(self.url())
            .await
            .map_err(query("connect to hear the farm's events"))?;
        listener
            .listen(CHANNEL)
            .await
            .map_err(query("listen for the farm's events"))?;
        Ok(Some(Listener { listener }))
    }
}

#[cfg(test)]
mod tests {
    use super::Event;

    #[test]
    fn events_read_back_as_sent() {
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
