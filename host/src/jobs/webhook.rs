//! Webhook deliveries: a worker on every host takes due deliveries from the store's outbox (written
//! with each job's end, so a restart loses none), posts them, and records each attempt.
//!
//! A delivery is `POST` of the job's document with `Content-Type: application/json` and the
//! Standard Webhooks headers: `webhook-id` (the job's id: the same on every attempt, so a receiver
//! can drop duplicates), `webhook-timestamp` (Unix seconds of the attempt, so it can reject
//! replays) and, with `--webhook-secret`, `webhook-signature: v1,BASE64`, the HMAC-SHA256 of
//! `{id}.{timestamp}.{body}`. A secret written `whsec_BASE64` is that key, as the scheme's libraries
//! take it; any other secret is used as it is. The older `x-pagewright-signature: sha256=HEX` (the
//! HMAC of the body alone, under the secret as written) is sent too, and `x-pagewright-job`.
//!
//! A 2xx answer is delivered; anything else is tried again after [`RETRY_DELAYS`], then given up.
//! Each attempt has [`ATTEMPT_TIMEOUT`]. The job's record shows where delivery stands.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio::sync::{Notify, watch};

use super::record::now_ms;
use crate::metrics::{Metrics, ReasonLabels};
use crate::secret::Secret;
use crate::store::{Delivery, Store};

/// Waits before the second and third attempts.
pub const RETRY_DELAYS: [Duration; 2] = [Duration::from_secs(1), Duration::from_secs(5)];
/// One attempt's budget, connecting included.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
/// The older signature header.
pub const SIGNATURE_HEADER: &str = "x-pagewright-signature";

/// How long a host holds the deliveries it took: longer than an attempt, so no other host takes
/// one while it is being made; a host that dies holds them no longer than this.
const HOLD: Duration = Duration::from_secs(60);
/// Deliveries taken at a time.
const BATCH: i64 = 16;
/// How long the worker waits after a delivery was added before it takes the due ones.
const GATHER: Duration = Duration::from_millis(5);
/// How often the worker looks for retries that fell due, when nothing wakes it sooner.
const POLL: Duration = Duration::from_millis(500);

/// Makes rustls's ring provider the process's crypto provider (once; later calls do nothing).
/// reqwest is built without a provider of its own, so every HTTPS client needs this first.
pub fn install_tls_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The outbox worker's state. Cheap to clone.
#[derive(Debug, Clone)]
pub(super) struct Webhooks {
    client: reqwest::Client,
    /// The secret as written (the older header) and the Standard Webhooks key.
    secret: Option<Arc<(Vec<u8>, Vec<u8>)>>,
    store: Store,
    host: Arc<str>,
    metrics: Metrics,
    wake: Arc<Notify>,
}

impl Webhooks {
    pub fn new(
        store: Store,
        host: Arc<str>,
        secret: Option<&Secret>,
        egress_proxy: Option<&str>,
        metrics: Metrics,
    ) -> Self {
        install_tls_provider();
        let secret = secret.map(|secret| {
            let written = secret.expose().as_bytes().to_vec();
            let key = secret
                .expose()
                .strip_prefix("whsec_")
                .and_then(|key| BASE64.decode(key).ok())
                .unwrap_or_else(|| written.clone());
            Arc::new((written, key))
        });
        // Redirects are not followed: a webhook goes where it was told, or nowhere. Through the
        // egress proxy, it goes only where the egress rules allow, checked on the address
        // connected to when it is sent (the URL was checked when the job was submitted).
        let mut client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(ATTEMPT_TIMEOUT);
        if let Some(proxy) = egress_proxy.and_then(|url| reqwest::Proxy::all(url).ok()) {
            client = client.proxy(proxy);
        }
        Self {
            client: client.build().unwrap_or_default(),
            secret,
            store,
            host,
            metrics,
            wake: Arc::new(Notify::new()),
        }
    }

    /// A delivery was added: look now rather than at the next poll.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Takes and makes due deliveries until `stop`.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        loop {
            let woken = self.wake.notified();
            let now = now_ms();
            let hold_until = now + HOLD.as_millis() as i64;
            let due = match self
                .store
                .claim_deliveries(&self.host, BATCH, now, hold_until)
                .await
            {
                Ok(due) => due,
                Err(error) => {
                    tracing::warn!(%error, "taking webhook deliveries failed; retrying");
                    Vec::new()
                }
            };
            let full = due.len() as i64 == BATCH;
            for delivery in due {
                tokio::spawn(self.clone().deliver(delivery));
            }
            if full {
                continue;
            }
            let added = tokio::select! {
                () = woken => true,
                () = tokio::time::sleep(POLL) => false,
                _ = stop.wait_for(|stop| *stop) => return,
            };
            if added {
                // Jobs end in bunches: gather their deliveries for a moment, so one claim takes
                // several rather than one query each.
                tokio::time::sleep(GATHER).await;
            }
        }
    }

    /// One attempt, recorded.
    async fn deliver(self, delivery: Delivery) {
        let timestamp = (now_ms() / 1000).to_string();
        let mut request = self
            .client
            .post(&delivery.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("webhook-id", &delivery.job_id)
            .header("webhook-timestamp", &timestamp)
            .header("x-pagewright-job", &delivery.job_id)
            .body(delivery.body.clone());
        if let Some(traceparent) = &delivery.traceparent {
            request = request.header(crate::telemetry::TRACEPARENT, traceparent);
        }
        if let Some(secret) = &self.secret {
            let (written, key) = &**secret;
            request = request
                .header(
                    "webhook-signature",
                    standard_signature(key, &delivery.job_id, &timestamp, &delivery.body),
                )
                .header(
                    SIGNATURE_HEADER,
                    format!("sha256={}", sign(written, &delivery.body)),
                );
        }
        let error = match request.send().await {
            Ok(response) if response.status().is_success() => None,
            Ok(response) => Some(format!("the receiver answered {}", response.status())),
            Err(error) => Some(format!("posting failed: {error}")),
        };
        let attempt = usize::try_from(delivery.attempts).unwrap_or(usize::MAX);
        let retry_at = error.as_ref().and_then(|_| {
            RETRY_DELAYS
                .get(attempt)
                .map(|delay| now_ms() + delay.as_millis() as i64)
        });
        match (&error, retry_at) {
            (None, _) => self.count("delivered"),
            (Some(error), _) => {
                tracing::debug!(job = %delivery.job_id, url = %delivery.url, attempt, %error, "a webhook delivery failed");
                if retry_at.is_none() {
                    self.count("failed");
                }
            }
        }
        if let Err(error) = self
            .store
            .delivery_attempted(&delivery.job_id, error.as_deref(), retry_at)
            .await
        {
            // The delivery stays held until `HOLD` passes, then any host makes it again.
            tracing::warn!(job = %delivery.job_id, %error, "recording a webhook attempt failed");
        }
    }

    fn count(&self, outcome: &'static str) {
        self.metrics
            .webhook_deliveries
            .get_or_create(&ReasonLabels { reason: outcome })
            .inc();
    }
}

/// HMAC-SHA256 of `body` under `secret`, as lowercase hex.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    hmac(secret, &[body])
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// The Standard Webhooks signature: `v1,` and the base64 HMAC-SHA256 of `{id}.{timestamp}.{body}`.
pub fn standard_signature(key: &[u8], id: &str, timestamp: &str, body: &[u8]) -> String {
    let mac = hmac(
        key,
        &[id.as_bytes(), b".", timestamp.as_bytes(), b".", body],
    );
    format!("v1,{}", BASE64.encode(mac))
}

fn hmac(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes a key of any length");
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().to_vec()
}

#[cfg(test)]
mod tests {
    #[test]
    fn signatures_are_rfc_4231_hmac_sha256() {
        // RFC 4231, test case 2.
        assert_eq!(
            super::sign(b"Jefe", b"what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn standard_signatures_match_the_schemes_example() {
        // The example of the Standard Webhooks specification (its reference libraries' test).
        use base64::Engine;
        let key = super::BASE64
            .decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
            .expect("base64");
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            super::standard_signature(&key, "msg_p5jXN8AQM9LWM0D4loKWxJek", "1614265330", body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }
}
