//! [`Plugin`]: a component compiled once, checked against the linker (so a bad import fails at load,
//! not on the first request), with the roles it exports; and the built-ins embedded in the binary.

use std::fmt;

use wasmtime::Engine;
use wasmtime::component::{Component, InstancePre, Linker};

use super::PluginError;
use super::bindings::exports::pagewright::plugin::{extractor, page_script, scorer};
use super::state::PluginState;

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

/// A loaded plugin: ready to instantiate in a fresh store per call.
pub struct Plugin {
    name: String,
    builtin: bool,
    size: usize,
    imports: Vec<String>,
    pub(super) pre: InstancePre<PluginState>,
    pub(super) extractor: Option<extractor::GuestIndices>,
    pub(super) page_script: Option<page_script::GuestIndices>,
    pub(super) scorer: Option<scorer::GuestIndices>,
}

impl fmt::Debug for Plugin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Plugin")
            .field("name", &self.name)
            .field("builtin", &self.builtin)
            .field("roles", &self.roles())
            .finish_non_exhaustive()
    }
}

impl Plugin {
    pub(super) fn compile(
        engine: &Engine,
        linker: &Linker<PluginState>,
        name: &str,
        bytes: &[u8],
        builtin: bool,
    ) -> Result<Self, PluginError> {
        let invalid = |reason: String| PluginError::Invalid {
            name: name.to_owned(),
            reason,
        };
        let component = Component::new(engine, bytes)
            .map_err(|error| invalid(format!("it does not compile as a component: {error:#}")))?;
        let pre = linker
            .instantiate_pre(&component)
            .map_err(|error| invalid(format!("its imports cannot be satisfied: {error:#}")))?;
        let imports = component
            .component_type()
            .imports(engine)
            .map(|(name, _)| name.to_owned())
            .collect();
        let plugin = Self {
            name: name.to_owned(),
            builtin,
            size: bytes.len(),
            imports,
            extractor: extractor::GuestIndices::new(&pre).ok(),
            page_script: page_script::GuestIndices::new(&pre).ok(),
            scorer: scorer::GuestIndices::new(&pre).ok(),
            pre,
        };
        if plugin.roles().names().is_empty() {
            return Err(invalid(
                "it exports none of the roles of pagewright:plugin@0.1.0 (extractor, page-script, scorer)"
                    .into(),
            ));
        }
        Ok(plugin)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn is_builtin(&self) -> bool {
        self.builtin
    }

    /// The component's size in bytes.
    pub fn size(&self) -> usize {
        self.size
    }

    /// The interfaces the component imports.
    pub fn imports(&self) -> &[String] {
        &self.imports
    }

    /// `Ok` if the plugin exports `role`, else the error that names what it is not.
    pub fn require(&self, role: Role) -> Result<(), PluginError> {
        let has = match role {
            Role::Extractor => self.extractor.is_some(),
            Role::PageScript => self.page_script.is_some(),
            Role::Scorer => self.scorer.is_some(),
        };
        if has {
            Ok(())
        } else {
            Err(PluginError::MissingRole {
                plugin: self.name.clone(),
                role: role.description(),
            })
        }
    }

    pub fn roles(&self) -> Roles {
        Roles {
            extractor: self.extractor.is_some(),
            page_script: self.page_script.is_some(),
            scorer: self.scorer.is_some(),
        }
    }
}
