//! [`Webhooks`]: posts a finished async job's document to the URL the job named.
//!
//! A delivery is `POST` with `Content-Type: application/json`, and with `--webhook-secret` an
//! `x-pagewright-signature: sha256=HEX` header, the HMAC-SHA256 of the body under the secret, so the
//! receiver can tell the post came from this server. A 2xx answer is delivered; anything else is
//! tried again after [`RETRY_DELAYS`], then the delivery is failed. Each attempt has
//! [`ATTEMPT_TIMEOUT`]. The job's record shows where delivery stands.

use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::records::Records;
use crate::metrics::{Metrics, ReasonLabels};

/// Waits before the second and third attempts.
pub const RETRY_DELAYS: [Duration; 2] = [Duration::from_secs(1), Duration::from_secs(5)];
/// One attempt's budget, connecting included.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
/// The signature header.
pub const SIGNATURE_HEADER: &str = "x-pagewright-signature";

/// Cheap to clone.
#[derive(Debug, Clone)]
pub struct Webhooks {
    client: reqwest::Client,
    secret: Option<std::sync::Arc<[u8]>>,
    records: Records,
    metrics: Metrics,
}

impl Webhooks {
    pub fn new(records: Records, secret: Option<&str>, metrics: Metrics) -> Self {
        install_tls_provider();
        Self {
            // Redirects are not followed: a webhook goes where it was told, or nowhere.
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .timeout(ATTEMPT_TIMEOUT)
                .build()
                .unwrap_or_default(),
            secret: secret.map(|secret| secret.as_bytes().into()),
            records,
            metrics,
        }
    }

    /// The signature header's value for `body`, if a secret is set.
    pub fn signature(&self, body: &[u8]) -> Option<String> {
        let secret = self.secret.as_ref()?;
        Some(format!("sha256={}", sign(secret, body)))
    }

    /// Posts `body` for job `id` to `url` in the background, retrying as the module docs say.
    pub fn deliver(&self, id: &str, url: &str, body: Vec<u8>) {
        let (webhooks, id, url) = (self.clone(), id.to_owned(), url.to_owned());
        tokio::spawn(async move {
            let signature = webhooks.signature(&body);
            let attempts = RETRY_DELAYS.len() + 1;
            for attempt in 0..attempts {
                let mut request = webhooks
                    .client
                    .post(&url)
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .header("x-pagewright-job", &id)
                    .body(body.clone());
                if let Some(signature) = &signature {
                    request = request.header(SIGNATURE_HEADER, signature);
                }
                let error = match request.send().await {
                    Ok(response) if response.status().is_success() => {
                        webhooks.records.webhook_attempt(&id, "delivered", None);
                        webhooks.count("delivered");
                        return;
                    }
                    Ok(response) => format!("the receiver answered {}", response.status()),
                    Err(error) => format!("posting failed: {error}"),
                };
                let last = attempt + 1 == attempts;
                tracing::debug!(job = %id, %url, attempt, %error, "a webhook delivery failed");
                webhooks.records.webhook_attempt(
                    &id,
                    if last { "failed" } else { "pending" },
                    Some(error),
                );
                match RETRY_DELAYS.get(attempt) {
                    Some(delay) => tokio::time::sleep(*delay).await,
                    None => webhooks.count("failed"),
                }
            }
        });
    }

    fn count(&self, outcome: &'static str) {
        self.metrics
            .webhook_deliveries
            .get_or_create(&ReasonLabels { reason: outcome })
            .inc();
    }
}

/// Makes rustls's ring provider the process's crypto provider (once; later calls do nothing).
/// reqwest is built without a provider of its own, so every HTTPS client needs this first.
pub fn install_tls_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// HMAC-SHA256 of `body` under `secret`, as lowercase hex.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes a key of any length");
    mac.update(body);
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
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
}
