//! [`Plugin`]: a component compiled once, checked against the linker (so a bad import fails at load,
//! not on the first request), with the roles it exports, what is known about it ([`Metadata`]) and the
//! limits its calls run under; [`Registry`], the plugins by name and version; and the built-ins
//! embedded in the binary.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use wasmtime::Engine;
use wasmtime::component::{Component, InstancePre, Linker};

use super::PluginError;
use super::exports::Exports;
use super::manifest::{Limits, LimitsView, RequestedLimits};
use super::state::PluginState;
use super::validate;
use crate::job::PluginRef;

include!(concat!(env!("OUT_DIR"), "/builtins.rs"));

/// One of the roles a plugin can play.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Extractor,
    PageScript,
    Scorer,
}

impl Role {
    /// As an error message puts it: "plugin `x` is not {description}".
    fn description(self) -> &'static str {
        match self {
            Self::Extractor => "an extractor",
            Self::PageScript => "a page script",
            Self::Scorer => "a scorer",
        }
    }
}

/// The roles a plugin exports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Roles {
    pub extractor: bool,
    pub page_script: bool,
    pub scorer: bool,
}

impl Roles {
    /// Role names as the WIT spells them.
    pub fn names(self) -> Vec<&'static str> {
        [
            (self.extractor, "extractor"),
            (self.page_script, "page-script"),
            (self.scorer, "scorer"),
        ]
        .into_iter()
        .filter_map(|(has, name)| has.then_some(name))
        .collect()
    }
}

impl fmt::Display for Roles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.names().join(", "))
    }
}

/// Where a plugin came from. Only uploaded plugins can be replaced or deleted through the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// Embedded in the binary (`plugins/`).
    Builtin,
    /// `--plugin NAME=PATH` at start-up.
    File,
    /// `PUT /v1/plugins/{name}`, kept in the data directory.
    Uploaded,
}

impl Source {
    /// As an error message puts it: "`x` is {description}".
    pub fn description(self) -> &'static str {
        match self {
            Self::Builtin => "a built-in plugin",
            Self::File => "loaded from a file at start-up (--plugin)",
            Self::Uploaded => "an uploaded plugin",
        }
    }
}

/// What is known about one version of a plugin besides its code; the data directory keeps it as the
/// version's manifest file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Metadata {
    pub name: String,
    pub version: semver::Version,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Hex SHA-256 of the component: the name of its file in the data directory.
    pub sha256: String,
    pub size: usize,
    /// RFC 3339, for uploads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uploaded_at: Option<String>,
    /// The limits the uploader asked for; resolved against the server's at every load, so a server
    /// restarted with lower maximums lowers them too.
    #[serde(default)]
    pub limits: RequestedLimits,
}

impl Metadata {
    /// The metadata of a component loaded from bytes the server has (not uploaded).
    pub fn new(name: &str, version: semver::Version, bytes: &[u8]) -> Self {
        Self {
            name: name.to_owned(),
            version,
            description: None,
            sha256: sha256_hex(bytes),
            size: bytes.len(),
            uploaded_at: None,
            limits: RequestedLimits::default(),
        }
    }

    /// `name@version`, as requests may spell a plugin.
    pub fn reference(&self) -> String {
        format!("{}@{}", self.name, self.version)
    }

    /// Checks what was read back from storage: its name and version are what an upload could
    /// have given, its hash is a SHA-256 (it names compiled code to load).
    pub(super) fn check(&self) -> Result<(), String> {
        super::check_name(&self.name)?;
        let is_sha256 = self.sha256.len() == 64
            && self
                .sha256
                .bytes()
                .all(|byte| byte.is_ascii_digit() || (b'a'..=b'f').contains(&byte));
        if !is_sha256 {
            return Err(format!("`{}` is not a SHA-256 in hex", self.sha256));
        }
        super::manifest::check_version(&self.version)
    }
}

/// Hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex(&sha2::Sha256::digest(bytes))
}

pub(super) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// A loaded plugin: ready to instantiate in a fresh store per call.
pub struct Plugin {
    metadata: Metadata,
    source: Source,
    limits: Limits,
    imports: Vec<String>,
    pub(super) pre: InstancePre<PluginState>,
    pub(super) exports: Exports,
}

impl fmt::Debug for Plugin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Plugin")
            .field("name", &self.metadata.name)
            .field("version", &self.metadata.version)
            .field("source", &self.source)
            .field("roles", &self.roles())
            .finish_non_exhaustive()
    }
}

/// How the API shows one version of a plugin.
#[derive(Debug, Clone, Serialize)]
pub struct PluginInfo {
    pub name: String,
    pub version: String,
    pub source: Source,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub roles: Vec<&'static str>,
    /// The version of `pagewright:plugin` it was built against.
    pub wit: &'static str,
    pub size: usize,
    pub sha256: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uploaded_at: Option<String>,
    pub limits: LimitsView,
    pub imports: Vec<String>,
}

/// Compiles `bytes` as a component, after checking that they are a component binary at all and
/// import nothing a plugin may not.
pub(super) fn compile(engine: &Engine, bytes: &[u8]) -> Result<Component, String> {
    validate::check_header(bytes)?;
    validate::check_imports_before_compiling(bytes)?;
    Component::new(engine, bytes).map_err(|error| format!("it does not compile: {error:#}"))
}

impl Plugin {
    /// Checks a compiled component's imports and exports and makes it a plugin; `limits` are the
    /// resolved [`Metadata::limits`].
    pub(super) fn new(
        engine: &Engine,
        linker: &Linker<PluginState>,
        component: &Component,
        metadata: Metadata,
        source: Source,
        limits: Limits,
    ) -> Result<Self, PluginError> {
        let invalid = |reason: String| PluginError::Invalid {
            name: metadata.name.clone(),
            reason,
        };
        let imports = validate::check_imports(engine, component).map_err(invalid)?;
        let pre = linker
            .instantiate_pre(component)
            .map_err(|error| invalid(format!("its imports cannot be satisfied: {error:#}")))?;
        let exports = validate::check_exports(engine, component, &pre).map_err(invalid)?;
        Ok(Self {
            metadata,
            source,
            limits,
            imports,
            pre,
            exports,
        })
    }

    /// The same checked component under other metadata (an upload's final version), without
    /// checking it again.
    pub(super) fn with_metadata(&self, metadata: Metadata) -> Self {
        Self {
            metadata,
            source: self.source,
            limits: self.limits,
            imports: self.imports.clone(),
            pre: self.pre.clone(),
            exports: self.exports.clone(),
        }
    }

    pub fn name(&self) -> &str {
        &self.metadata.name
    }

    /// This version, as a job names it.
    pub fn reference(&self) -> PluginRef {
        PluginRef {
            name: Arc::from(self.metadata.name.as_str()),
            version: self.metadata.version.clone(),
        }
    }

    pub fn version(&self) -> &semver::Version {
        &self.metadata.version
    }

    pub fn metadata(&self) -> &Metadata {
        &self.metadata
    }

    pub fn source(&self) -> Source {
        self.source
    }

    /// The limits of every call into this plugin.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The interfaces the component imports.
    pub fn imports(&self) -> &[String] {
        &self.imports
    }

    /// `Ok` if the plugin exports `role`, else the error that names what it is not.
    pub fn require(&self, role: Role) -> Result<(), PluginError> {
        let roles = self.roles();
        let has = match role {
            Role::Extractor => roles.extractor,
            Role::PageScript => roles.page_script,
            Role::Scorer => roles.scorer,
        };
        if has {
            Ok(())
        } else {
            Err(PluginError::MissingRole {
                plugin: self.name().to_owned(),
                role: role.description(),
            })
        }
    }

    pub fn roles(&self) -> Roles {
        self.exports.roles()
    }

    /// The version of `pagewright:plugin` the plugin was built against.
    pub fn wit_version(&self) -> &'static str {
        self.exports.version()
    }

    pub fn info(&self) -> PluginInfo {
        let metadata = &self.metadata;
        PluginInfo {
            name: metadata.name.clone(),
            version: metadata.version.to_string(),
            source: self.source,
            description: metadata.description.clone(),
            roles: self.roles().names(),
            wit: self.wit_version(),
            size: metadata.size,
            sha256: metadata.sha256.clone(),
            uploaded_at: metadata.uploaded_at.clone(),
            limits: self.limits.view(),
            imports: self.imports.clone(),
        }
    }
}

/// Is `name` a built-in plugin's?
pub fn is_builtin(name: &str) -> bool {
    BUILTINS.iter().any(|(builtin, _)| *builtin == name)
}

/// A plugin as a request names it: `name` (its latest version) or `name@version`.
pub fn parse_reference(reference: &str) -> Result<(&str, Option<semver::Version>), PluginError> {
    let (name, version) = match reference.split_once('@') {
        Some((name, version)) => (name, Some(version)),
        None => (reference, None),
    };
    super::check_name(name).map_err(|_| PluginError::NotFound(reference.to_owned()))?;
    let version = version
        .map(semver::Version::parse)
        .transpose()
        .map_err(|_| PluginError::NotFound(reference.to_owned()))?;
    Ok((name, version))
}

/// The loaded plugins: every version of every name.
#[derive(Debug, Default)]
pub(super) struct Registry {
    plugins: HashMap<String, BTreeMap<semver::Version, Arc<Plugin>>>,
}

impl Registry {
    /// `name` resolves to its latest version, `name@version` to that one.
    pub fn get(&self, reference: &str) -> Result<Arc<Plugin>, PluginError> {
        let (name, version) = parse_reference(reference)?;
        let versions = self.plugins.get(name);
        let plugin = match version {
            None => versions.and_then(|versions| versions.values().next_back()),
            Some(version) => versions.and_then(|versions| versions.get(&version)),
        };
        plugin
            .cloned()
            .ok_or_else(|| PluginError::NotFound(reference.to_owned()))
    }

    /// Version `version` of `name`.
    pub fn get_version(
        &self,
        name: &str,
        version: &semver::Version,
    ) -> Result<Arc<Plugin>, PluginError> {
        self.plugins
            .get(name)
            .and_then(|versions| versions.get(version))
            .cloned()
            .ok_or_else(|| PluginError::NotFound(format!("{name}@{version}")))
    }

    /// The versions of `name`, oldest first.
    pub fn versions(&self, name: &str) -> Vec<Arc<Plugin>> {
        self.plugins
            .get(name)
            .map(|versions| versions.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Every plugin's versions, by name.
    pub fn all(&self) -> Vec<Vec<Arc<Plugin>>> {
        let mut names: Vec<&String> = self.plugins.keys().collect();
        names.sort();
        names.into_iter().map(|name| self.versions(name)).collect()
    }

    pub fn insert(&mut self, plugin: Arc<Plugin>) {
        self.plugins
            .entry(plugin.name().to_owned())
            .or_default()
            .insert(plugin.version().clone(), plugin);
    }

    /// Removes one version, or every version of `name`; returns what was removed.
    pub fn remove(&mut self, name: &str, version: Option<&semver::Version>) -> Vec<Arc<Plugin>> {
        let Some(versions) = self.plugins.get_mut(name) else {
            return Vec::new();
        };
        let removed = match version {
            Some(version) => versions.remove(version).into_iter().collect(),
            None => std::mem::take(versions).into_values().collect(),
        };
        if versions.is_empty() {
            self.plugins.remove(name);
        }
        removed
    }

    /// The hashes of every loaded plugin's component: what the data directory must keep.
    pub fn component_hashes(&self) -> std::collections::HashSet<String> {
        self.plugins
            .values()
            .flat_map(BTreeMap::values)
            .map(|plugin| plugin.metadata.sha256.clone())
            .collect()
    }
}
