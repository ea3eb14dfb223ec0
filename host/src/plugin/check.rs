//! `pagewright plugin check`: an upload's checks, offline, with a report.

use std::sync::Arc;
use std::time::Duration;

use super::registry::{self, Metadata, Plugin, Roles, Source};
use super::{Limits, PluginError, PluginHost, PluginSettings};
use crate::metrics::Metrics;

/// What `pagewright plugin check` found: a component the server would load.
#[derive(Debug)]
pub struct Checked {
    pub roles: Roles,
    pub imports: Vec<String>,
    pub size: usize,
    pub compile_time: Duration,
}

/// Checks `bytes` as the server checks an upload under `name` (compile, imports and exports against
/// the linker, roles, one instantiation), with the default settings and no other plugin loaded.
pub async fn check_component(name: &str, bytes: &[u8]) -> Result<Checked, PluginError> {
    let host = PluginHost::without_plugins(PluginSettings::default(), Metrics::new())?;
    let started = std::time::Instant::now();
    let component =
        registry::compile(&host.inner.engine, bytes).map_err(|reason| PluginError::Invalid {
            name: name.to_owned(),
            reason,
        })?;
    let compile_time = started.elapsed();
    let metadata = Metadata::new(name, semver::Version::new(0, 0, 0), bytes);
    let plugin = Arc::new(Plugin::new(
        &host.inner.engine,
        &host.inner.linker,
        &component,
        metadata,
        Source::File,
        Limits::server(&host.inner.settings),
    )?);
    host.verify(&plugin).await?;
    Ok(Checked {
        roles: plugin.roles(),
        imports: plugin.imports().to_vec(),
        size: bytes.len(),
        compile_time,
    })
}
