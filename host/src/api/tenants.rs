//! Tenants as an authorization boundary. With `--tokens-file`, a request's bearer token decides who
//! it is for: its tenant (a request may not name another), the priority classes it may use, how
//! many of its synchronous renders may run on this host at once, and how many jobs it may submit a
//! second. Its isolation keys are its own: another tenant naming the same key gets another browser
//! context. Without any token configured the server is open, as it always was: one shared tenant
//! space in which a request names its tenant and class.
//!
//! The file is JSON, a list of grants:
//!
//! ```json
//! [{ "token": "at least 16 characters", "tenant": "acme",
//!    "classes": ["hot", "cold"], "max_in_flight": 50, "rate_per_second": 20 }]
//! ```
//!
//! `classes` defaults to all three, the limits to none. Several tokens may name one tenant; they
//! share its limits.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use axum::extract::FromRequestParts;
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::ApiError;
use crate::job::Class;

/// The shortest token a grant may have (as for the admin and render tokens).
const MIN_TOKEN_CHARS: usize = 16;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GrantEntry {
    token: String,
    tenant: String,
    #[serde(default = "every_class")]
    classes: Vec<Class>,
    max_in_flight: Option<usize>,
    rate_per_second: Option<f64>,
}

fn every_class() -> Vec<Class> {
    vec![Class::Urgent, Class::Hot, Class::Cold]
}

/// The grants of a tokens file, by the SHA-256 of their tokens (so a lookup's timing says nothing
/// about the tokens themselves).
#[derive(Debug, Default)]
pub struct Tenants {
    by_token: HashMap<[u8; 32], Arc<Grant>>,
}

impl Tenants {
    /// Reads and checks a tokens file; the error names the file and what is wrong in it.
    pub fn load(path: &Path) -> Result<Self, String> {
        let shown = path.display();
        let text = std::fs::read_to_string(path)
            .map_err(|error| format!("reading the tokens file {shown} failed: {error}"))?;
        let entries: Vec<GrantEntry> = serde_json::from_str(&text)
            .map_err(|error| format!("the tokens file {shown} is not valid: {error}"))?;
        let mut tenants: HashMap<String, Arc<Grant>> = HashMap::new();
        let mut by_token = HashMap::new();
        for (index, entry) in entries.into_iter().enumerate() {
            let at = format!("the tokens file {shown}, grant {}", index + 1);
            if entry.token.chars().count() < MIN_TOKEN_CHARS {
                return Err(format!(
                    "{at}: a token must have at least {MIN_TOKEN_CHARS} characters"
                ));
            }
            super::request::check_tenant(&entry.tenant)
                .map_err(|error| format!("{at}: {}", error.message))?;
            if entry.classes.is_empty() {
                return Err(format!("{at}: `classes` may not be empty"));
            }
            if entry
                .rate_per_second
                .is_some_and(|rate| !(rate > 0.0 && rate.is_finite()))
            {
                return Err(format!("{at}: `rate_per_second` must be positive"));
            }
            // One tenant's grants share one set of limits: the first grant's.
            let grant = tenants
                .entry(entry.tenant.clone())
                .or_insert_with(|| {
                    Arc::new(Grant {
                        tenant: entry.tenant.as_str().into(),
                        classes: entry.classes.clone(),
                        max_in_flight: entry.max_in_flight,
                        in_flight: Arc::new(AtomicUsize::new(0)),
                        rate: entry.rate_per_second.map(|rate| {
                            Mutex::new(Bucket {
                                rate,
                                capacity: rate.max(1.0),
                                tokens: rate.max(1.0),
                                filled_at: Instant::now(),
                            })
                        }),
                    })
                })
                .clone();
            let digest: [u8; 32] = Sha256::digest(entry.token.as_bytes()).into();
            if by_token.insert(digest, grant).is_some() {
                return Err(format!("{at}: the same token appears twice"));
            }
        }
        Ok(Self { by_token })
    }

    /// The grant `token` carries, if any.
    pub fn find(&self, token: &str) -> Option<Arc<Grant>> {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        self.by_token.get(&digest).cloned()
    }
}

/// What a token allows its tenant.
#[derive(Debug)]
pub struct Grant {
    pub tenant: Arc<str>,
    classes: Vec<Class>,
    max_in_flight: Option<usize>,
    in_flight: Arc<AtomicUsize>,
    rate: Option<Mutex<Bucket>>,
}

/// A token bucket: `rate` submissions a second on average, bursts of up to `capacity`.
#[derive(Debug)]
struct Bucket {
    rate: f64,
    capacity: f64,
    tokens: f64,
    filled_at: Instant,
}

impl Bucket {
    /// Takes a token, or says how long until one is there.
    fn take(&mut self) -> Result<(), f64> {
        let now = Instant::now();
        let elapsed = now.duration_since(self.filled_at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.capacity);
        self.filled_at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err((1.0 - self.tokens) / self.rate)
        }
    }
}

/// Who a request comes from, as the authentication middleware (`auth.rs`) decided.
#[derive(Debug, Clone)]
pub enum Caller {
    /// No token is configured at all: the open server of old, where requests name their tenant.
    Open,
    /// A request of the shared tenant space on a server with tokens: the render token's, or any
    /// request where only an admin token guards the registry. Names its tenant; sees no other
    /// tenant's detail.
    Shared,
    /// The admin token: anything, and every tenant's detail.
    Admin,
    /// A tokens-file grant: its own tenant only.
    Tenant(Arc<Grant>),
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        // The middleware puts one on every request it lets through.
        Ok(parts
            .extensions
            .get::<Caller>()
            .cloned()
            .unwrap_or(Caller::Shared))
    }
}

/// A synchronous render counted against its tenant's `max_in_flight` until dropped.
#[derive(Debug)]
pub struct InFlight(Option<Arc<AtomicUsize>>);

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Some(count) = &self.0 {
            count.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl Caller {
    /// May this caller see isolation keys and per-tenant detail (`/v1/status`)?
    pub fn sees_every_tenant(&self) -> bool {
        matches!(self, Self::Open | Self::Admin)
    }

    /// The tenant a job of this caller is for: its grant's, or the one the request names
    /// (`default` if none).
    pub fn tenant(&self, requested: Option<String>) -> Result<Arc<str>, ApiError> {
        match self {
            Self::Tenant(grant) => match requested {
                Some(requested) if *requested != *grant.tenant => Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "tenant_not_allowed",
                    format!(
                        "this token is tenant `{}`'s; it may not submit jobs for `{requested}`",
                        grant.tenant
                    ),
                )),
                _ => Ok(grant.tenant.clone()),
            },
            _ => {
                let tenant = requested.unwrap_or_else(|| crate::job::DEFAULT_TENANT.to_owned());
                super::request::check_tenant(&tenant)?;
                Ok(tenant.into())
            }
        }
    }

    /// Refuses a priority class the caller's grant does not include.
    pub fn check_class(&self, class: Class) -> Result<(), ApiError> {
        match self {
            Self::Tenant(grant) if !grant.classes.contains(&class) => Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "class_not_allowed",
                format!(
                    "tenant `{}` may not use the `{}` class",
                    grant.tenant,
                    serde_json::to_value(class)
                        .ok()
                        .and_then(|name| name.as_str().map(str::to_owned))
                        .unwrap_or_default()
                ),
            )),
            _ => Ok(()),
        }
    }

    /// The tenant whose isolation keys the caller's jobs use, so that they are its own.
    pub fn key_scope(&self) -> Option<Arc<str>> {
        match self {
            Self::Tenant(grant) => Some(grant.tenant.clone()),
            _ => None,
        }
    }

    /// May the caller see (or cancel) a job of `tenant`?
    pub fn owns(&self, tenant: &str) -> bool {
        match self {
            Self::Tenant(grant) => *grant.tenant == *tenant,
            _ => true,
        }
    }

    /// Counts a submission against the tenant's rate: a 429 with the wait if it is over.
    pub fn take_rate(&self) -> Result<(), ApiError> {
        let Self::Tenant(grant) = self else {
            return Ok(());
        };
        let Some(bucket) = &grant.rate else {
            return Ok(());
        };
        let taken = bucket.lock().unwrap_or_else(PoisonError::into_inner).take();
        taken.map_err(|wait| {
            ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!(
                    "tenant `{}` is over its rate of submissions; retry in {:.0} ms",
                    grant.tenant,
                    (wait * 1000.0).ceil()
                ),
            )
            .retry_after(std::time::Duration::from_secs_f64(wait))
        })
    }

    /// Counts a synchronous render against the tenant's `max_in_flight` until the guard drops: a
    /// 429 if it is at its cap.
    pub fn enter(&self) -> Result<InFlight, ApiError> {
        let Self::Tenant(grant) = self else {
            return Ok(InFlight(None));
        };
        let Some(max) = grant.max_in_flight else {
            return Ok(InFlight(None));
        };
        let count = &grant.in_flight;
        if count.fetch_add(1, Ordering::Relaxed) >= max {
            count.fetch_sub(1, Ordering::Relaxed);
            return Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_in_flight",
                format!(
                    "tenant `{}` already has {max} renders running on this host, its most",
                    grant.tenant
                ),
            )
            .retry_after(std::time::Duration::from_secs(1)));
        }
        Ok(InFlight(Some(count.clone())))
    }
}
