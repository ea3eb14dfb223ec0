//! Plugins that come and go while the server runs: an upload (checked, compiled at low priority,
//! then added to the store's registry and to this host's) and a delete. The store is the registry
//! every host shares; `shared.rs` keeps this host in step with it.

use std::collections::HashSet;
use std::sync::Arc;

use bytes::Bytes;
use wasmtime::component::Component;

use super::manifest::{Limits, Manifest};
use super::registry::{self, Metadata, Plugin, Source, parse_reference, sha256_hex};
use super::{PluginError, PluginHost, check_name};
use crate::store::{Added, Event, StoredVersion};

/// The result of an upload: the plugin, and whether it is new (`false`: this exact version was
/// already there, and nothing changed).
#[derive(Debug)]
pub struct Uploaded {
    pub plugin: Arc<Plugin>,
    pub created: bool,
}

/// What a delete removed.
#[derive(Debug)]
pub struct Deleted {
    pub name: String,
    pub versions: Vec<String>,
}

/// Attempts at a version number for an upload that names none, when other hosts keep taking the
/// next one first.
const VERSION_ATTEMPTS: usize = 5;

impl PluginHost {
    /// Checks, compiles and stores a component as a new version of `name`, then registers it.
    /// Nothing is stored unless every check passes; a version that exists with the same component
    /// (and manifest) is answered as it is, one with another is refused.
    pub async fn upload(
        &self,
        name: &str,
        manifest: Manifest,
        bytes: Bytes,
    ) -> Result<Uploaded, PluginError> {
        self.store()?;
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
                     pagewright:plugin/{missing}@{} (it exports: {})",
                    checked.wit_version(),
                    checked.roles()
                ),
            });
        }
        let metadata = Metadata {
            name: name.to_owned(),
            // Decided when it is stored.
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
        // goes away must not leave the store written and the registry not.
        let host = self.clone();
        let commit = tokio::spawn(async move {
            host.commit_upload(&checked, metadata, manifest.version, component, bytes)
                .await
        });
        commit
            .await
            .map_err(|error| PluginError::Storage(format!("storing the plugin failed: {error}")))?
    }

    /// The second half of an upload, under the change lock: decide the version, add it to the
    /// store (where another host may have taken the number first), keep its compiled code,
    /// register it and tell the farm.
    async fn commit_upload(
        &self,
        checked: &Plugin,
        mut metadata: Metadata,
        requested_version: Option<semver::Version>,
        component: Component,
        bytes: Bytes,
    ) -> Result<Uploaded, PluginError> {
        let store = self.store()?;
        let _changing = self.inner.changes.lock().await;
        self.check_open()?;
        self.check_replaceable(&metadata.name)?;
        let same_as = |stored: &Metadata| {
            stored.sha256 == metadata.sha256
                && stored.description == metadata.description
                && stored.limits == metadata.limits
        };
        let mut attempts = 0;
        let plugin = loop {
            attempts += 1;
            let versions = self.stored_versions(&metadata.name).await?;
            metadata.version = match (&requested_version, versions.last()) {
                (Some(version), _) => version.clone(),
                // The same upload again without a version: nothing new.
                (None, Some(latest)) if same_as(latest) => {
                    let existing = latest.clone();
                    return Ok(Uploaded {
                        plugin: self.register_stored(checked, existing),
                        created: false,
                    });
                }
                (None, Some(latest)) => {
                    let latest = &latest.version;
                    semver::Version::new(latest.major, latest.minor, latest.patch + 1)
                }
                (None, None) => semver::Version::new(0, 1, 0),
            };
            let stored = StoredVersion {
                name: metadata.name.clone(),
                version: metadata.version.to_string(),
                sha256: metadata.sha256.clone(),
                metadata: serde_json::to_string(&metadata)
                    .expect("plugin metadata serializes as JSON"),
            };
            match store.add_plugin_version(&stored, &bytes).await? {
                Added::Added => break Arc::new(checked.with_metadata(metadata.clone())),
                Added::Taken(existing) => {
                    let existing: Option<Metadata> = serde_json::from_str(&existing.metadata).ok();
                    match existing {
                        Some(existing) if same_as(&existing) => {
                            return Ok(Uploaded {
                                plugin: self.register_stored(checked, existing),
                                created: false,
                            });
                        }
                        // Another host took the next number first: take the one after.
                        _ if requested_version.is_none() && attempts < VERSION_ATTEMPTS => {}
                        _ => {
                            return Err(PluginError::VersionExists {
                                reference: metadata.reference(),
                            });
                        }
                    }
                }
            }
        };
        if let Some(data_dir) = &self.inner.data_dir
            && let Err(error) = data_dir.save_compiled(&metadata.sha256, &component)
        {
            tracing::warn!(%error, "keeping a compiled plugin failed; it will be compiled again");
        }
        self.registry_mut().insert(plugin.clone());
        self.announce().await;
        tracing::info!(plugin = %metadata.reference(), roles = %plugin.roles(), size = metadata.size, "plugin uploaded");
        Ok(Uploaded {
            plugin,
            created: true,
        })
    }

    /// A version the store has with `checked`'s component, registered here if it is not yet.
    fn register_stored(&self, checked: &Plugin, metadata: Metadata) -> Arc<Plugin> {
        if let Ok(plugin) = self
            .registry()
            .get_version(&metadata.name, &metadata.version)
        {
            return plugin;
        }
        let plugin = Arc::new(checked.with_metadata(metadata));
        self.registry_mut().insert(plugin.clone());
        plugin
    }

    /// Deletes one version (`name@version`) or every version (`name`) of an uploaded plugin, from
    /// the store and then this host's registry (the other hosts follow). Jobs already running it
    /// finish with it. Runs as a task of its own, so a client that goes away cannot cut it in half.
    pub async fn delete(&self, reference: &str) -> Result<Deleted, PluginError> {
        self.store()?;
        let host = self.clone();
        let reference = reference.to_owned();
        tokio::spawn(async move { host.delete_now(&reference).await })
            .await
            .map_err(|error| PluginError::Storage(format!("deleting the plugin failed: {error}")))?
    }

    async fn delete_now(&self, reference: &str) -> Result<Deleted, PluginError> {
        let (name, version) = parse_reference(reference)?;
        let store = self.store()?;
        let _changing = self.inner.changes.lock().await;
        self.check_open()?;
        self.check_replaceable(name)?;
        let removed = store
            .remove_plugin_versions(name, version.as_ref().map(ToString::to_string).as_deref())
            .await?;
        if removed.is_empty() {
            return Err(PluginError::NotFound(reference.to_owned()));
        }
        self.registry_mut().remove(name, version.as_ref());
        self.collect_garbage().await;
        self.announce().await;
        tracing::info!(
            plugin = reference,
            versions = removed.len(),
            "plugin deleted"
        );
        Ok(Deleted {
            name: name.to_owned(),
            versions: removed,
        })
    }

    /// Removes compiled code that no loaded plugin uses. Best effort: what is left is retried at
    /// the next delete or start.
    pub(super) async fn collect_garbage(&self) {
        let Some(_) = &self.inner.data_dir else {
            return;
        };
        let inner = self.inner.clone();
        let keep: HashSet<String> = self.registry().component_hashes();
        let collected = tokio::task::spawn_blocking(move || {
            let data_dir = inner.data_dir.as_ref().expect("checked above");
            data_dir.collect_garbage(&keep)
        })
        .await;
        if let Ok(Err(error)) = collected {
            tracing::warn!(%error, "clearing unused compiled plugins failed");
        }
    }

    /// Tells the other hosts that the registry changed (they would see it at their next poll).
    async fn announce(&self) {
        if let Ok(store) = self.store()
            && let Err(error) = store.notify(&Event::Plugins).await
        {
            tracing::debug!(%error, "telling the farm of a plugin change failed");
        }
    }

    /// Stops changes to the registry, stops following the store, and releases the data directory
    /// for another server to use; waits for an upload or delete in progress to finish first. At
    /// shutdown.
    pub async fn close(&self) {
        let _changing = self.inner.changes.lock().await;
        self.stop_following();
        if let Some(data_dir) = &self.inner.data_dir {
            data_dir.release();
        }
    }

    /// Refuses changes once [`PluginHost::close`] ran. Called under the change lock.
    pub(super) fn check_open(&self) -> Result<(), PluginError> {
        match &self.inner.data_dir {
            Some(data_dir) if !data_dir.is_held() => Err(PluginError::Closed),
            _ => Ok(()),
        }
    }

    /// Only uploaded plugins may be replaced: refuses a name that a built-in or a `--plugin` file has.
    pub(super) fn check_replaceable(&self, name: &str) -> Result<(), PluginError> {
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
    pub(super) async fn compile_in_background(
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
}
