//! The registry every host shares: this host follows the store's plugin versions (uploads and
//! deletes made through any host), compiling what it has not compiled into its own data directory,
//! and the scorer setting. On PostgreSQL it looks again when another host says the registry changed
//! and every [`FOLLOW_POLL`] in case it missed that; an embedded store has no other host.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::manifest::Limits;
use super::registry::{Metadata, Plugin, Source, sha256_hex};
use super::{PluginError, PluginHost};
use crate::store::{Backend, Event, Store, StoredVersion};

/// How often a farm host looks at the registry's revision without being told of a change.
pub const FOLLOW_POLL: Duration = Duration::from_secs(2);

/// The shared setting that names the scorer.
const SCORER: &str = "scorer";

/// The scorer every host follows, as the store says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum ScorerSetting {
    /// Never set through the API: each host keeps its `--scorer`.
    #[default]
    Unset,
    /// The built-in score.
    BuiltIn,
    /// This plugin (`name` or `name@version`).
    Plugin(String),
}

/// Where this host stands with the store's registry.
#[derive(Debug, Default)]
pub(super) struct Following {
    /// The registry revision last followed; `None` before the first.
    revision: Option<i64>,
    /// Stored versions that do not load here, with why (logged once, not retried).
    unloadable: HashMap<String, String>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl PluginHost {
    /// Makes `store` this host's registry of uploads: hands it what the data directory kept before
    /// there was a store, loads every stored version, reads the scorer setting, and (on
    /// PostgreSQL) follows the other hosts' changes from now on.
    pub async fn share_registry(&self, store: Store) -> Result<(), PluginError> {
        if self.inner.store.set(store.clone()).is_err() {
            return Ok(());
        }
        self.import_legacy_uploads(&store).await?;
        self.follow().await?;
        // Compiled code of plugins deleted while this host was down, or of another engine build.
        self.collect_garbage().await;
        if store.backend() == Backend::Postgres {
            // Restarted if it panics: a host that stopped following would serve stale plugins.
            let host = self.downgrade();
            let task = crate::tasks::supervise("follow plugin changes", move || {
                follow_changes(host.clone(), store.clone())
            });
            self.following().task = Some(task);
        }
        Ok(())
    }

    /// The store of uploads.
    pub(super) fn store(&self) -> Result<&Store, PluginError> {
        self.inner.store.get().ok_or(PluginError::NoStore)
    }

    /// The scorer setting every host follows, and its revision (which changes with every setting,
    /// even to the same name, whose latest version may have changed).
    pub fn shared_scorer(&self) -> watch::Receiver<(i64, ScorerSetting)> {
        self.inner.scorer.subscribe()
    }

    /// Sets the scorer every host follows: a plugin, or `None` for the built-in score.
    pub async fn share_scorer(&self, reference: Option<&str>) -> Result<(), PluginError> {
        let store = self.store()?;
        store.set_shared(SCORER, reference).await?;
        self.refresh_scorer().await?;
        if let Err(error) = store.notify(&Event::Plugins).await {
            tracing::debug!(%error, "telling the farm of a scorer change failed");
        }
        Ok(())
    }

    /// Catches up with the store: the registry, then the scorer setting.
    async fn follow(&self) -> Result<(), PluginError> {
        self.sync_uploads().await?;
        self.refresh_scorer().await
    }

    /// Loads the stored versions this host does not have and drops those the store no longer has,
    /// if the registry changed since the last time.
    async fn sync_uploads(&self) -> Result<(), PluginError> {
        let store = self.store()?;
        // Read first: a change after it is seen at the next look.
        let revision = store.registry_revision().await?;
        if self.following().revision == Some(revision) {
            return Ok(());
        }
        let stored = store.plugin_versions(None).await?;
        let _changing = self.inner.changes.lock().await;
        if self.check_open().is_err() {
            return Ok(());
        }
        let mut wanted: HashMap<(String, semver::Version), Metadata> = HashMap::new();
        for row in &stored {
            match read_stored(row) {
                Ok(metadata) => {
                    wanted.insert((metadata.name.clone(), metadata.version.clone()), metadata);
                }
                Err(reason) => self.unloadable(format!("{}@{}", row.name, row.version), reason),
            }
        }
        let gone: Vec<Arc<Plugin>> = self
            .catalog()
            .into_iter()
            .flatten()
            .filter(|plugin| plugin.source() == Source::Uploaded)
            .filter(|plugin| {
                !wanted.contains_key(&(plugin.name().to_owned(), plugin.version().clone()))
            })
            .collect();
        for plugin in &gone {
            self.registry_mut()
                .remove(plugin.name(), Some(plugin.version()));
            tracing::info!(plugin = %plugin.metadata().reference(), "plugin deleted through another host");
        }
        let mut loaded = 0;
        for ((name, version), metadata) in wanted {
            let reference = metadata.reference();
            let have = self.registry().get_version(&name, &version).is_ok();
            if have || self.following().unloadable.contains_key(&reference) {
                continue;
            }
            match self.load_stored(store, metadata).await {
                Ok(plugin) => {
                    self.registry_mut().insert(plugin);
                    loaded += 1;
                }
                Err(error) => self.unloadable(reference, error.to_string()),
            }
        }
        self.following().revision = Some(revision);
        if !gone.is_empty() {
            self.collect_garbage().await;
        }
        if loaded > 0 || !gone.is_empty() {
            tracing::info!(
                revision,
                loaded,
                removed = gone.len(),
                "plugin registry followed"
            );
        }
        Ok(())
    }

    /// A stored version made a plugin: from this host's compiled code if it has it, else compiled
    /// now from the store's component.
    async fn load_stored(
        &self,
        store: &Store,
        metadata: Metadata,
    ) -> Result<Arc<Plugin>, PluginError> {
        // A `--plugin` file or a built-in with the name shadows the upload (which stays stored).
        self.check_replaceable(&metadata.name)?;
        let settings = &self.inner.settings;
        // A server with lower maximums lowers the plugin's limits with them.
        let limits = Limits::resolve(&metadata.limits.within(&Limits::server(settings)), settings)
            .map_err(PluginError::Limits)?;
        let compiled = self
            .inner
            .data_dir
            .as_ref()
            .and_then(|data_dir| data_dir.compiled(&self.inner.engine, &metadata.sha256));
        let component = match compiled {
            Some(component) => component,
            None => {
                let bytes = store
                    .plugin_component(&metadata.sha256)
                    .await?
                    .filter(|bytes| sha256_hex(bytes) == metadata.sha256)
                    .ok_or_else(|| {
                        PluginError::Storage(format!(
                            "the store has no component {} for {}",
                            metadata.sha256,
                            metadata.reference()
                        ))
                    })?;
                let component = self
                    .compile_in_background(&metadata.name, &metadata.sha256, bytes.into())
                    .await?;
                if let Some(data_dir) = &self.inner.data_dir
                    && let Err(error) = data_dir.save_compiled(&metadata.sha256, &component)
                {
                    tracing::warn!(%error, "keeping a compiled plugin failed; it will be compiled again");
                }
                component
            }
        };
        Ok(Arc::new(Plugin::new(
            &self.inner.engine,
            &self.inner.linker,
            &component,
            metadata,
            Source::Uploaded,
            limits,
        )?))
    }

    /// Notes (once) a stored version that does not load here. It stays stored: another host, or
    /// this one restarted with other settings, may load it.
    fn unloadable(&self, reference: String, reason: String) {
        if let std::collections::hash_map::Entry::Vacant(entry) =
            self.following().unloadable.entry(reference)
        {
            tracing::error!(plugin = %entry.key(), %reason, "a stored plugin does not load here; skipped");
            entry.insert(reason);
        }
    }

    /// Reads the scorer setting and publishes it if it changed.
    async fn refresh_scorer(&self) -> Result<(), PluginError> {
        let shared = self.store()?.shared(SCORER).await?;
        let next = match shared {
            None => (0, ScorerSetting::Unset),
            Some(shared) => (
                shared.revision,
                shared
                    .value
                    .map_or(ScorerSetting::BuiltIn, ScorerSetting::Plugin),
            ),
        };
        self.inner.scorer.send_if_modified(|current| {
            let changed = *current != next;
            *current = next;
            changed
        });
        Ok(())
    }

    /// Hands the uploads a data directory kept before the store to the store, then drops them
    /// from the directory. Unreadable ones are logged and left where they are.
    async fn import_legacy_uploads(&self, store: &Store) -> Result<(), PluginError> {
        let Some(data_dir) = &self.inner.data_dir else {
            return Ok(());
        };
        let (uploads, unreadable) = data_dir.legacy_uploads().map_err(|error| {
            PluginError::Storage(format!(
                "reading the data directory's old uploads failed: {error}"
            ))
        })?;
        for unreadable in &unreadable {
            tracing::error!(path = %unreadable.path.display(), reason = %unreadable.reason, "an old stored plugin is unreadable; left in place");
        }
        if uploads.is_empty() {
            return Ok(());
        }
        for (metadata, bytes) in &uploads {
            let version = StoredVersion {
                name: metadata.name.clone(),
                version: metadata.version.to_string(),
                sha256: metadata.sha256.clone(),
                metadata: serde_json::to_string(metadata)
                    .expect("plugin metadata serializes as JSON"),
            };
            store.add_plugin_version(&version, bytes).await?;
        }
        tracing::info!(
            versions = uploads.len(),
            "the data directory's uploads moved to the store"
        );
        if unreadable.is_empty()
            && let Err(error) = data_dir.remove_legacy_uploads()
        {
            tracing::warn!(%error, "removing the data directory's old uploads failed; they are in the store");
        }
        Ok(())
    }

    /// Stops following the store (at shutdown).
    pub(super) fn stop_following(&self) {
        if let Some(task) = self.following().task.take() {
            task.abort();
        }
    }

    fn following(&self) -> std::sync::MutexGuard<'_, Following> {
        self.inner
            .following
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The stored versions of `name`, oldest first.
    pub(super) async fn stored_versions(&self, name: &str) -> Result<Vec<Metadata>, PluginError> {
        let rows = self.store()?.plugin_versions(Some(name)).await?;
        let mut versions: Vec<Metadata> = rows
            .iter()
            .filter_map(|row| read_stored(row).ok())
            .collect();
        versions.sort_by(|a, b| a.version.cmp(&b.version));
        Ok(versions)
    }
}

/// A stored version's metadata, checked against its row.
fn read_stored(row: &StoredVersion) -> Result<Metadata, String> {
    let metadata: Metadata = serde_json::from_str(&row.metadata)
        .map_err(|error| format!("its stored metadata does not parse: {error}"))?;
    metadata.check()?;
    if metadata.name != row.name
        || metadata.version.to_string() != row.version
        || metadata.sha256 != row.sha256
    {
        return Err(format!(
            "its stored metadata describes {} ({}), not {}@{} ({})",
            metadata.reference(),
            metadata.sha256,
            row.name,
            row.version,
            row.sha256
        ));
    }
    Ok(metadata)
}

/// Follows the other hosts' changes until the plugin host is gone or stops following: at once
/// when told of one, else every [`FOLLOW_POLL`].
async fn follow_changes(host: super::WeakPluginHost, store: Store) {
    let mut listener = store.listen();
    loop {
        let heard = async {
            match &mut listener {
                Some(listener) => listener.next().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            event = heard => match event {
                Some(Event::Plugins | Event::Missed) => {}
                Some(_) => continue,
                None => listener = None,
            },
            () = tokio::time::sleep(FOLLOW_POLL) => {}
        }
        let Some(host) = host.upgrade() else {
            return;
        };
        if let Err(error) = host.follow().await {
            tracing::warn!(%error, "following the shared plugin registry failed; retrying");
        }
    }
}
