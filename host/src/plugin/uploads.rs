//! Plugins that come and go while the server runs: an upload (checked, compiled at low priority, then
//! stored and registered), a delete, and at start-up the restore of every stored upload from its
//! compiled code.

use std::collections::BTreeSet;
use std::sync::Arc;

use bytes::Bytes;
use wasmtime::component::Component;

use super::data_dir::Unreadable;
use super::manifest::{Limits, Manifest};
use super::registry::{self, Metadata, Plugin, Source, parse_reference, sha256_hex};
use super::{PluginError, PluginHost, check_name};

/// The result of an upload: the plugin, and whether it is new (`false`: this exact version was
/// already there, and nothing changed).
#[derive(Debug)]
pub struct Uploaded {
    pub plugin: Arc<Plugin>,
    pub created: bool,
}

impl PluginHost {
    /// Checks, compiles, stores and registers a component as a new version of `name`. Nothing is
    /// stored unless every check passes; a version that exists with the same component (and
    /// manifest) is answered as it is, one with another is refused.
    pub async fn upload(
        &self,
        name: &str,
        manifest: Manifest,
        bytes: Bytes,
    ) -> Result<Uploaded, PluginError> {
        if self.inner.data_dir.is_none() {
            return Err(PluginError::NoDataDir);
        }
        check_name(name).map_err(PluginError::BadUpload)?;
        manifest.check().map_err(PluginError::BadManifest)?;
        self.check_replaceable(name)?;
        let limits =
            Limits::resolve(&manifest.limits, &self.inner.settings).map_err(PluginError::Limits)?;
        let sha256 = sha256_hex(&bytes);
        let component = self
            .compile_in_background(name, &sha256, bytes.clone())
            .await?;
        let checked = Arc::new(Plugin::new(
            &self.inner.engine,
            &self.inner.linker,
            &component,
            Metadata::new(name, semver::Version::new(0, 0, 0), &bytes),
            Source::Uploaded,
            limits,
        )?);
        self.verify(&checked).await?;
        let exported = checked.roles().names();
        if let Some(missing) = manifest
            .roles
            .iter()
            .find(|role| !exported.contains(&role.as_str()))
        {
            return Err(PluginError::Invalid {
                name: name.to_owned(),
                reason: format!(
                    "the manifest says it is a `{missing}`, but it does not export \
                     pagewright:plugin/{missing}@0.1.0 (it exports: {})",
                    checked.roles()
                ),
            });
        }
        let metadata = Metadata {
            name: name.to_owned(),
            // Decided under the change lock.
            version: semver::Version::new(0, 0, 0),
            description: manifest.description,
            sha256,
            size: bytes.len(),
            uploaded_at: Some(
                humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
            ),
            limits: manifest.limits,
        };
        // The commit runs as a task of its own, holding the change lock throughout: a client that
        // goes away must not leave the disk written and the registry not (or the lock released
        // while the disk is still being written).
        let host = self.clone();
        let commit = tokio::spawn(async move {
            host.commit_upload(&checked, metadata, manifest.version, component, bytes)
                .await
        });
        commit
            .await
            .map_err(|error| PluginError::Storage(format!("storing the plugin failed: {error}")))?
    }

    /// The second half of an upload, under the change lock: decide the version, write the data
    /// directory, register.
    async fn commit_upload(
        &self,
        checked: &Plugin,
        mut metadata: Metadata,
        requested_version: Option<semver::Version>,
        component: Component,
        bytes: Bytes,
    ) -> Result<Uploaded, PluginError> {
        let _changing = self.inner.changes.lock().await;
        self.check_open()?;
        self.check_replaceable(&metadata.name)?;
        let versions = self.versions(&metadata.name);
        let same_as = |existing: &Plugin| {
            let stored = existing.metadata();
            stored.sha256 == metadata.sha256
                && stored.description == metadata.description
                && stored.limits == metadata.limits
        };
        metadata.version = match (requested_version, versions.last()) {
            (Some(version), _) => version,
            // The same upload again without a version: nothing new.
            (None, Some(latest)) if same_as(latest) => {
                return Ok(Uploaded {
                    plugin: latest.clone(),
                    created: false,
                });
            }
            (None, Some(latest)) => {
                let latest = latest.version();
                semver::Version::new(latest.major, latest.minor, latest.patch + 1)
            }
            (None, None) => semver::Version::new(0, 1, 0),
        };
        if let Some(existing) = versions.iter().find(|p| p.version() == &metadata.version) {
            return if same_as(existing) {
                Ok(Uploaded {
                    plugin: existing.clone(),
                    created: false,
                })
            } else {
                Err(PluginError::VersionExists {
                    reference: metadata.reference(),
                })
            };
        }
        let plugin = Arc::new(checked.with_metadata(metadata.clone()));
        let reference = metadata.reference();
        let inner = self.inner.clone();
        let stored = tokio::task::spawn_blocking(move || {
            let data_dir = inner.data_dir.as_ref().expect("checked by upload");
            data_dir.put(&metadata, &bytes, &component)
        })
        .await
        .map_err(|error| PluginError::Storage(format!("storing the plugin failed: {error}")))?;
        match stored {
            Ok(()) => {}
            // A manifest on disk that the registry does not have: a version that did not load at
            // start-up. It still holds its version number.
            Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(PluginError::VersionExists { reference });
            }
            Err(error) => {
                tracing::error!(plugin = %reference, %error, "storing an upload failed");
                return Err(PluginError::Storage(format!(
                    "storing {reference} failed: {error}"
                )));
            }
        }
        self.inner
            .plugins
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(plugin.clone());
        tracing::info!(plugin = %reference, roles = %plugin.roles(), size = plugin.metadata().size, "plugin uploaded");
        Ok(Uploaded {
            plugin,
            created: true,
        })
    }

    /// Deletes one version (`name@version`) or every version (`name`) of an uploaded plugin, from
    /// the data directory and then the registry. Jobs already running it finish with it. Runs as a
    /// task of its own, so a client that goes away cannot cut it in half.
    pub async fn delete(&self, reference: &str) -> Result<Vec<Arc<Plugin>>, PluginError> {
        if self.inner.data_dir.is_none() {
            return Err(PluginError::NoDataDir);
        }
        let host = self.clone();
        let reference = reference.to_owned();
        tokio::spawn(async move { host.delete_now(&reference).await })
            .await
            .map_err(|error| PluginError::Storage(format!("deleting the plugin failed: {error}")))?
    }

    async fn delete_now(&self, reference: &str) -> Result<Vec<Arc<Plugin>>, PluginError> {
        let (name, version) = parse_reference(reference)?;
        let _changing = self.inner.changes.lock().await;
        self.check_open()?;
        let targets = match &version {
            Some(_) => vec![self.get(reference)?],
            None => self.versions(name),
        };
        let Some(first) = targets.first() else {
            return Err(PluginError::NotFound(reference.to_owned()));
        };
        if first.source() != Source::Uploaded {
            return Err(PluginError::Protected {
                name: name.to_owned(),
                what: first.source().description(),
            });
        }
        let versions: Vec<semver::Version> = targets
            .iter()
            .map(|plugin| plugin.version().clone())
            .collect();
        // The disk first: if removing a manifest fails, the registry still has the version, as
        // the next start would.
        let inner = self.inner.clone();
        let name_ = name.to_owned();
        let removed = tokio::task::spawn_blocking(move || {
            let data_dir = inner.data_dir.as_ref().expect("checked by delete");
            data_dir.remove(&name_, &versions)
        })
        .await
        .map_err(|error| PluginError::Storage(format!("deleting the plugin failed: {error}")))?;
        if let Err(error) = removed {
            tracing::error!(plugin = reference, %error, "deleting a plugin from the data directory failed");
            return Err(PluginError::Storage(format!(
                "deleting {reference} from the data directory failed: {error}"
            )));
        }
        let removed = self
            .inner
            .plugins
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(name, version.as_ref());
        self.collect_garbage().await;
        tracing::info!(
            plugin = reference,
            versions = removed.len(),
            "plugin deleted"
        );
        Ok(removed)
    }

    /// Removes components that no stored manifest and no loaded plugin uses. Best effort: what is
    /// left is retried at the next delete or start.
    async fn collect_garbage(&self) {
        let inner = self.inner.clone();
        let keep = self.registry().component_hashes();
        let collected = tokio::task::spawn_blocking(move || {
            let data_dir = inner.data_dir.as_ref().expect("only with a data directory");
            data_dir.collect_garbage(keep)
        })
        .await;
        if let Ok(Err(error)) = collected {
            tracing::warn!(%error, "clearing unused files from the data directory failed");
        }
    }

    /// Stops changes to the registry and releases the data directory, for another server to use;
    /// waits for an upload or delete in progress to finish first. At shutdown.
    pub async fn close(&self) {
        let _changing = self.inner.changes.lock().await;
        if let Some(data_dir) = &self.inner.data_dir {
            data_dir.release();
        }
    }

    /// Refuses changes once [`PluginHost::close`] ran. Called under the change lock.
    fn check_open(&self) -> Result<(), PluginError> {
        match &self.inner.data_dir {
            Some(data_dir) if !data_dir.is_held() => Err(PluginError::Closed),
            _ => Ok(()),
        }
    }

    /// Only uploaded plugins may be replaced: refuses a name that a built-in or a `--plugin` file has.
    fn check_replaceable(&self, name: &str) -> Result<(), PluginError> {
        let source = if registry::is_builtin(name) {
            Some(Source::Builtin)
        } else {
            self.versions(name).first().map(|plugin| plugin.source())
        };
        match source {
            Some(source) if source != Source::Uploaded => Err(PluginError::Protected {
                name: name.to_owned(),
                what: source.description(),
            }),
            _ => Ok(()),
        }
    }

    /// Compiles an upload on a thread of its own at the plugin workers' low priority, one upload at
    /// a time, so a 20 MB component compiling for seconds slows renders as little as it can; reuses
    /// compiled code the data directory already has.
    async fn compile_in_background(
        &self,
        name: &str,
        sha256: &str,
        bytes: Bytes,
    ) -> Result<Component, PluginError> {
        let invalid = |reason: String| PluginError::Invalid {
            name: name.to_owned(),
            reason,
        };
        if let Some(data_dir) = &self.inner.data_dir
            && let Some(component) = data_dir.compiled(&self.inner.engine, sha256)
        {
            return Ok(component);
        }
        let _permit = self
            .inner
            .compiles
            .acquire()
            .await
            .map_err(|_| PluginError::Engine("the compiler queue closed".into()))?;
        let host = self.clone();
        let (done, compiled) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name("pagewright-compile".into())
            .spawn(move || {
                crate::sys::lower_thread_priority();
                let started = std::time::Instant::now();
                let result = host.compile(&bytes);
                let _ = done.send((result, started.elapsed()));
            })
            .map_err(|error| {
                PluginError::Engine(format!("starting the compiler thread: {error}"))
            })?;
        let (result, elapsed) = compiled
            .await
            .map_err(|_| PluginError::Engine("the compiler thread stopped".into()))?;
        tracing::debug!(plugin = name, ?elapsed, "upload compiled");
        result.map_err(invalid)
    }

    /// Loads every upload kept in the data directory, from compiled code where this engine has it.
    /// A stored plugin that no longer loads (the server's rules changed, a file is damaged) is logged
    /// and left on disk, never a reason not to start. Then removes what no plugin uses.
    pub(super) fn restore_uploads(&self) {
        let Some(data_dir) = &self.inner.data_dir else {
            return;
        };
        let started = std::time::Instant::now();
        let (mut manifests, unreadable) = match data_dir.manifests() {
            Ok(found) => found,
            Err(error) => {
                tracing::error!(%error, "reading the stored plugins failed; starting without them");
                return;
            }
        };
        for Unreadable { path, reason } in unreadable {
            tracing::error!(path = %path.display(), %reason, "a stored plugin manifest is unreadable; skipped");
        }
        manifests.sort_by(|a, b| (&a.name, &a.version).cmp(&(&b.name, &b.version)));
        let mut restored = 0;
        let mut names = BTreeSet::new();
        for metadata in manifests {
            let reference = metadata.reference();
            match self.restore(metadata) {
                Ok(plugin) => {
                    restored += 1;
                    names.insert(plugin.name().to_owned());
                }
                Err(error) => {
                    tracing::error!(plugin = %reference, %error, "a stored plugin does not load; skipped")
                }
            }
        }
        if let Err(error) = data_dir.collect_garbage(self.registry().component_hashes()) {
            tracing::warn!(%error, "clearing unused files from the data directory failed");
        }
        tracing::info!(plugins = names.len(), versions = restored, elapsed = ?started.elapsed(), "restored uploaded plugins");
    }

    fn restore(&self, metadata: Metadata) -> Result<Arc<Plugin>, PluginError> {
        let data_dir = self.inner.data_dir.as_ref().ok_or(PluginError::NoDataDir)?;
        self.check_replaceable(&metadata.name)?;
        let settings = &self.inner.settings;
        // A server restarted with lower maximums lowers the plugin's limits with them.
        let limits = Limits::resolve(&metadata.limits.within(&Limits::server(settings)), settings)
            .map_err(PluginError::Limits)?;
        let component = match data_dir.compiled(&self.inner.engine, &metadata.sha256) {
            Some(component) => component,
            None => {
                let bytes = data_dir
                    .component_bytes(&metadata.sha256)
                    .map_err(|error| {
                        PluginError::Storage(format!("reading its component: {error}"))
                    })?;
                self.component(&metadata.sha256, &bytes)
                    .map_err(|reason| PluginError::Invalid {
                        name: metadata.name.clone(),
                        reason,
                    })?
            }
        };
        let plugin = Arc::new(Plugin::new(
            &self.inner.engine,
            &self.inner.linker,
            &component,
            metadata,
            Source::Uploaded,
            limits,
        )?);
        self.inner
            .plugins
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(plugin.clone());
        Ok(plugin)
    }
}
