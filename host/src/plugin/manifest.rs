//! What an uploader says about a plugin ([`Manifest`]), and the limits a plugin runs under ([`Limits`]):
//! the server's, lowered where the manifest asks for less.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::PluginSettings;

/// The optional manifest of an upload (the `x-pagewright-manifest` header, JSON). Unknown fields are
/// refused, so a misspelt limit is an error instead of silently the default.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// A semantic version. Default: the latest version's patch + 1, or 0.1.0 for a new name.
    #[schema(value_type = Option<String>, example = "1.2.0")]
    pub version: Option<semver::Version>,
    pub description: Option<String>,
    /// Roles the plugin must export (`extractor`, `page-script`, `scorer`): a check that the upload is
    /// the component its author meant.
    #[serde(default)]
    pub roles: Vec<String>,
    #[serde(default)]
    pub limits: RequestedLimits,
}

/// Longest description kept, in bytes.
pub const MAX_DESCRIPTION_BYTES: usize = 1024;

/// Longest version, in bytes: it is a file name.
const MAX_VERSION_BYTES: usize = 64;

impl Manifest {
    /// What serde cannot check: the description's length, the role names and the version's form.
    pub fn check(&self) -> Result<(), String> {
        if let Some(description) = &self.description
            && description.len() > MAX_DESCRIPTION_BYTES
        {
            return Err(format!(
                "the description is {} bytes, above {MAX_DESCRIPTION_BYTES}",
                description.len()
            ));
        }
        for role in &self.roles {
            if !["extractor", "page-script", "scorer"].contains(&role.as_str()) {
                return Err(format!(
                    "`{role}` is not a role: use extractor, page-script or scorer"
                ));
            }
        }
        match &self.version {
            Some(version) => check_version(version),
            None => Ok(()),
        }
    }
}

/// A version is a file name and a lookup key: at most 64 bytes, no build metadata (semver orders by
/// it, but `name@1.0.0` could not find `1.0.0+b`), and lowercase (`1.0.0-A` and `1.0.0-a` would be
/// one file on a case-insensitive filesystem).
pub fn check_version(version: &semver::Version) -> Result<(), String> {
    let text = version.to_string();
    if text.len() > MAX_VERSION_BYTES {
        Err(format!(
            "version `{text}` is longer than {MAX_VERSION_BYTES} bytes"
        ))
    } else if !version.build.is_empty() {
        Err(format!(
            "version `{text}` has build metadata (`+{}`); use a pre-release or another version",
            version.build
        ))
    } else if text.bytes().any(|byte| byte.is_ascii_uppercase()) {
        Err(format!(
            "version `{text}` has uppercase letters; use lowercase"
        ))
    } else {
        Ok(())
    }
}

/// Limits a plugin asks for, each at most the server's. Missing ones are the server's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RequestedLimits {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fuel: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_mib: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_output_mib: Option<usize>,
}

impl RequestedLimits {
    /// These limits, each lowered to at most `max`'s.
    pub fn within(&self, max: &Limits) -> Self {
        let max = max.view();
        Self {
            fuel: self.fuel.map(|fuel| fuel.min(max.fuel)),
            timeout_ms: self.timeout_ms.map(|ms| ms.min(max.timeout_ms)),
            memory_mib: self.memory_mib.map(|mib| mib.min(max.memory_mib)),
            max_output_mib: self.max_output_mib.map(|mib| mib.min(max.max_output_mib)),
        }
    }
}

/// The limits of every call into one plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub fuel: u64,
    pub timeout: Duration,
    pub memory_bytes: usize,
    pub output_bytes: usize,
}

/// The limits as the API shows them, in the manifest's units.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct LimitsView {
    pub fuel: u64,
    pub timeout_ms: u64,
    pub memory_mib: usize,
    pub max_output_mib: usize,
}

impl Limits {
    /// The server's limits: what a plugin without a manifest gets, and the most any may ask for.
    pub fn server(settings: &PluginSettings) -> Self {
        Self {
            fuel: settings.fuel,
            timeout: settings.timeout,
            memory_bytes: settings.max_memory_bytes,
            output_bytes: settings.max_output_bytes,
        }
    }

    /// The server's limits lowered to what `requested` asks for; an error names the first limit that
    /// asks for more than the server allows, or for nothing at all.
    pub fn resolve(requested: &RequestedLimits, settings: &PluginSettings) -> Result<Self, String> {
        let server = Self::server(settings);
        let server_view = server.view();
        fn pick<T: Copy + PartialOrd + std::fmt::Display + Default>(
            field: &str,
            requested: Option<T>,
            max: T,
        ) -> Result<T, String> {
            match requested {
                None => Ok(max),
                Some(value) if value == T::default() => {
                    Err(format!("limits.{field} must be positive"))
                }
                Some(value) if value > max => Err(format!(
                    "limits.{field} is {value}, above this server's maximum of {max}"
                )),
                Some(value) => Ok(value),
            }
        }
        Ok(Self {
            fuel: pick("fuel", requested.fuel, server.fuel)?,
            timeout: Duration::from_millis(pick(
                "timeout_ms",
                requested.timeout_ms,
                server_view.timeout_ms,
            )?),
            memory_bytes: pick("memory_mib", requested.memory_mib, server_view.memory_mib)? << 20,
            output_bytes: pick(
                "max_output_mib",
                requested.max_output_mib,
                server_view.max_output_mib,
            )? << 20,
        })
    }

    pub fn view(&self) -> LimitsView {
        LimitsView {
            fuel: self.fuel,
            timeout_ms: self.timeout.as_millis() as u64,
            memory_mib: self.memory_bytes >> 20,
            max_output_mib: self.output_bytes >> 20,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> PluginSettings {
        PluginSettings::default()
    }

    #[test]
    fn limits_may_be_lowered_but_not_raised() {
        let settings = settings();
        let none = Limits::resolve(&RequestedLimits::default(), &settings).expect("defaults");
        assert_eq!(none, Limits::server(&settings));

        let lower = RequestedLimits {
            fuel: Some(1_000),
            memory_mib: Some(16),
            ..RequestedLimits::default()
        };
        let limits = Limits::resolve(&lower, &settings).expect("lower limits");
        assert_eq!((limits.fuel, limits.memory_bytes), (1_000, 16 << 20));
        assert_eq!(limits.timeout, settings.timeout);

        let more_fuel = RequestedLimits {
            fuel: Some(settings.fuel + 1),
            ..RequestedLimits::default()
        };
        let error = Limits::resolve(&more_fuel, &settings).expect_err("too much fuel");
        assert!(
            error.contains("limits.fuel") && error.contains("maximum"),
            "{error}"
        );

        let zero = RequestedLimits {
            timeout_ms: Some(0),
            ..RequestedLimits::default()
        };
        let error = Limits::resolve(&zero, &settings).expect_err("zero timeout");
        assert!(
            error.contains("limits.timeout_ms must be positive"),
            "{error}"
        );
    }

    #[test]
    fn versions_are_short_lowercase_and_without_build_metadata() {
        let version = |text: &str| semver::Version::parse(text).expect("semver");
        assert!(check_version(&version("1.2.3-beta.1")).is_ok());
        assert!(check_version(&version("1.0.0+build")).is_err());
        assert!(check_version(&version("1.0.0-Beta")).is_err());
        let long = format!("1.0.0-{}", "a".repeat(64));
        assert!(check_version(&version(&long)).is_err());
    }

    #[test]
    fn manifests_refuse_unknown_fields() {
        let error = serde_json::from_str::<Manifest>(r#"{"version":"1.0.0","limits":{"fuels":1}}"#)
            .expect_err("misspelt limit");
        assert!(error.to_string().contains("fuels"), "{error}");
        let manifest: Manifest =
            serde_json::from_str(r#"{"version":"1.2.3","roles":["extractor"]}"#).expect("valid");
        assert_eq!(manifest.version, Some(semver::Version::new(1, 2, 3)));
    }
}
