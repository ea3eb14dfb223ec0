//! The plugin registry every host shares: uploaded versions (their metadata as JSON, owned by the
//! plugin host) and components by content hash, and the settings every host follows (`shared`:
//! the scorer). Every change advances a revision, which hosts poll (and hear of, on PostgreSQL) to
//! know when to look again.

use super::jobs::query;
use super::{Store, StoreError};

/// One uploaded version, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredVersion {
    pub name: String,
    pub version: String,
    pub sha256: String,
    /// The plugin host's metadata, as JSON.
    pub metadata: String,
}

/// What adding a version found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Added {
    Added,
    /// The version exists already (another upload took it first): as stored.
    Taken(StoredVersion),
}

/// A setting every host follows, with its revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shared {
    pub value: Option<String>,
    pub revision: i64,
}

/// The revision of the registry as a whole: advanced by every upload and delete.
const REGISTRY: &str = "registry";

impl Store {
    /// Every stored version (of `name`, if given).
    pub async fn plugin_versions(
        &self,
        name: Option<&str>,
    ) -> Result<Vec<StoredVersion>, StoreError> {
        let rows: Vec<(String, String, String, String)> = sqlx::query_as(
            "SELECT name, version, sha256, metadata FROM plugin_versions \
             WHERE $1 IS NULL OR name = $1 ORDER BY name, version",
        )
        .bind(name)
        .fetch_all(self.pool())
        .await
        .map_err(query("read the plugin registry"))?;
        Ok(rows
            .into_iter()
            .map(|(name, version, sha256, metadata)| StoredVersion {
                name,
                version,
                sha256,
                metadata,
            })
            .collect())
    }

    /// A component's bytes by its hash.
    pub async fn plugin_component(&self, sha256: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let row: Option<(Vec<u8>,)> =
            sqlx::query_as("SELECT bytes FROM plugin_components WHERE sha256 = $1")
                .bind(sha256)
                .fetch_optional(self.pool())
                .await
                .map_err(query("read a plugin's component"))?;
        Ok(row.map(|(bytes,)| bytes))
    }

    /// Adds a version and its component in one transaction, unless the version exists.
    pub async fn add_plugin_version(
        &self,
        version: &StoredVersion,
        component: &[u8],
    ) -> Result<Added, StoreError> {
        let mut transaction = self
            .pool()
            .begin()
            .await
            .map_err(query("begin adding a plugin"))?;
        let added = sqlx::query(
            "INSERT INTO plugin_versions (name, version, sha256, metadata) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (name, version) DO NOTHING",
        )
        .bind(&version.name)
        .bind(&version.version)
        .bind(&version.sha256)
        .bind(&version.metadata)
        .execute(&mut *transaction)
        .await
        .map_err(query("add a plugin version"))?;
        if added.rows_affected() == 0 {
            let (sha256, metadata): (String, String) = sqlx::query_as(
                "SELECT sha256, metadata FROM plugin_versions WHERE name = $1 AND version = $2",
            )
            .bind(&version.name)
            .bind(&version.version)
            .fetch_one(&mut *transaction)
            .await
            .map_err(query("read the plugin version that exists"))?;
            transaction
                .rollback()
                .await
                .map_err(query("roll back adding a plugin"))?;
            return Ok(Added::Taken(StoredVersion {
                sha256,
                metadata,
                ..version.clone()
            }));
        }
        sqlx::query(
            "INSERT INTO plugin_components (sha256, bytes) VALUES ($1, $2) \
             ON CONFLICT (sha256) DO NOTHING",
        )
        .bind(&version.sha256)
        .bind(component)
        .execute(&mut *transaction)
        .await
        .map_err(query("store a plugin's component"))?;
        advance(&mut transaction, REGISTRY, None, false).await?;
        transaction
            .commit()
            .await
            .map_err(query("commit a plugin version"))?;
        Ok(Added::Added)
    }

    /// Removes `version` of `name` (every version, if `None`) and the components no version uses
    /// any more; the versions removed.
    pub async fn remove_plugin_versions(
        &self,
        name: &str,
        version: Option<&str>,
    ) -> Result<Vec<String>, StoreError> {
        let mut transaction = self
            .pool()
            .begin()
            .await
            .map_err(query("begin removing a plugin"))?;
        let removed: Vec<(String,)> = sqlx::query_as(
            "DELETE FROM plugin_versions WHERE name = $1 AND ($2 IS NULL OR version = $2) \
             RETURNING version",
        )
        .bind(name)
        .bind(version)
        .fetch_all(&mut *transaction)
        .await
        .map_err(query("remove plugin versions"))?;
        if removed.is_empty() {
            transaction
                .rollback()
                .await
                .map_err(query("roll back removing a plugin"))?;
            return Ok(Vec::new());
        }
        sqlx::query(
            "DELETE FROM plugin_components WHERE NOT EXISTS \
             (SELECT 1 FROM plugin_versions WHERE plugin_versions.sha256 = plugin_components.sha256)",
        )
        .execute(&mut *transaction)
        .await
        .map_err(query("remove unused plugin components"))?;
        advance(&mut transaction, REGISTRY, None, false).await?;
        transaction
            .commit()
            .await
            .map_err(query("commit removing a plugin"))?;
        Ok(removed.into_iter().map(|(version,)| version).collect())
    }

    /// The registry's revision (0 before any change).
    pub async fn registry_revision(&self) -> Result<i64, StoreError> {
        Ok(self
            .shared(REGISTRY)
            .await?
            .map_or(0, |shared| shared.revision))
    }

    /// A shared setting; `None` if it was never set.
    pub async fn shared(&self, name: &str) -> Result<Option<Shared>, StoreError> {
        let row: Option<(Option<String>, i64)> =
            sqlx::query_as("SELECT value, revision FROM shared WHERE name = $1")
                .bind(name)
                .fetch_optional(self.pool())
                .await
                .map_err(query("read a shared setting"))?;
        Ok(row.map(|(value, revision)| Shared { value, revision }))
    }

    /// Sets a shared setting (`None`: set to nothing, which is not the same as never set).
    pub async fn set_shared(&self, name: &str, value: Option<&str>) -> Result<(), StoreError> {
        let mut transaction = self
            .pool()
            .begin()
            .await
            .map_err(query("begin setting a shared setting"))?;
        advance(&mut transaction, name, value, true).await?;
        transaction
            .commit()
            .await
            .map_err(query("commit a shared setting"))
    }
}

/// Advances setting `name`'s revision, and sets its value if `set`.
async fn advance(
    transaction: &mut sqlx::Transaction<'_, sqlx::Any>,
    name: &str,
    value: Option<&str>,
    set: bool,
) -> Result<(), StoreError> {
    let statement = if set {
        "INSERT INTO shared (name, value, revision) VALUES ($1, $2, 1) \
         ON CONFLICT (name) DO UPDATE SET value = excluded.value, revision = shared.revision + 1"
    } else {
        "INSERT INTO shared (name, value, revision) VALUES ($1, $2, 1) \
         ON CONFLICT (name) DO UPDATE SET revision = shared.revision + 1"
    };
    sqlx::query(statement)
        .bind(name)
        .bind(value)
        .execute(&mut **transaction)
        .await
        .map_err(query("advance a shared revision"))?;
    Ok(())
}
