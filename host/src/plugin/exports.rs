//! A plugin's exported roles in the WIT version it was built against, found once when it loads, and
//! the calls into them, which answer in the current version's types whatever the plugin's version.

use wasmtime::Store;
use wasmtime::component::{Instance, InstancePre, Resource};

use super::bindings::exports::pagewright::plugin as current;
use super::bindings::pagewright::plugin::types::{Error, JobInfo, Output};
use super::bindings::v0_1::exports::pagewright::plugin as v0_1;
use super::page_resource::PageResource;
use super::registry::Roles;
use super::state::PluginState;

/// The WIT package plugins implement, as export names spell it.
pub(super) const PACKAGE: &str = "pagewright:plugin";
/// The version the host implements and the built-ins and the SDK are built against.
pub(super) const CURRENT_VERSION: &str = "0.2.0";
/// Every version the host serves, newest first.
pub(super) const VERSIONS: &[&str] = &[CURRENT_VERSION, "0.1.0"];

/// Where each exported role's functions are.
#[derive(Clone)]
pub(super) struct RoleIndices<E, P, S> {
    pub extractor: Option<E>,
    pub page_script: Option<P>,
    pub scorer: Option<S>,
}

impl<E, P, S> RoleIndices<E, P, S> {
    fn roles(&self) -> Roles {
        Roles {
            extractor: self.extractor.is_some(),
            page_script: self.page_script.is_some(),
            scorer: self.scorer.is_some(),
        }
    }
}

type CurrentIndices = RoleIndices<
    current::extractor::GuestIndices,
    current::page_script::GuestIndices,
    current::scorer::GuestIndices,
>;
type V0_1Indices = RoleIndices<
    v0_1::extractor::GuestIndices,
    v0_1::page_script::GuestIndices,
    v0_1::scorer::GuestIndices,
>;

/// The roles of a plugin, by the WIT version it exports them in.
#[derive(Clone)]
pub(super) enum Exports {
    Current(CurrentIndices),
    V0_1(V0_1Indices),
}

/// A call's result: a trap or a host failure outside, the plugin's own error inside.
type Answer<T> = wasmtime::Result<Result<T, Error>>;

const CHECKED: &str = "the role was checked before the call";

impl Exports {
    /// Looks up, in `version`'s types, every role the component exports. Each role's result is
    /// `Err` with wasmtime's reason when the component exports it with other types, `Ok(None)`
    /// when it does not export it.
    pub fn find(pre: &InstancePre<PluginState>, version: &str) -> Found {
        fn found<T>(
            name: &'static str,
            lookup: wasmtime::Result<T>,
            exported: bool,
        ) -> Result<Option<T>, (&'static str, String)> {
            match lookup {
                Ok(indices) => Ok(Some(indices)),
                Err(error) if exported => Err((name, format!("{error:#}"))),
                Err(_) => Ok(None),
            }
        }
        let exported = |role: &str| {
            let name = format!("{PACKAGE}/{role}@{version}");
            pre.component()
                .component_type()
                .exports(pre.component().engine())
                .any(|(export, _)| export == name)
        };
        let (extractor, page_script, scorer) = (
            exported("extractor"),
            exported("page-script"),
            exported("scorer"),
        );
        if version == CURRENT_VERSION {
            Ok(Self::Current(RoleIndices {
                extractor: found(
                    "extractor",
                    current::extractor::GuestIndices::new(pre),
                    extractor,
                )?,
                page_script: found(
                    "page-script",
                    current::page_script::GuestIndices::new(pre),
                    page_script,
                )?,
                scorer: found("scorer", current::scorer::GuestIndices::new(pre), scorer)?,
            }))
        } else {
            Ok(Self::V0_1(RoleIndices {
                extractor: found(
                    "extractor",
                    v0_1::extractor::GuestIndices::new(pre),
                    extractor,
                )?,
                page_script: found(
                    "page-script",
                    v0_1::page_script::GuestIndices::new(pre),
                    page_script,
                )?,
                scorer: found("scorer", v0_1::scorer::GuestIndices::new(pre), scorer)?,
            }))
        }
    }

    pub fn roles(&self) -> Roles {
        match self {
            Self::Current(indices) => indices.roles(),
            Self::V0_1(indices) => indices.roles(),
        }
    }

    /// The WIT version the plugin was built against.
    pub fn version(&self) -> &'static str {
        match self {
            Self::Current(_) => CURRENT_VERSION,
            Self::V0_1(_) => "0.1.0",
        }
    }

    pub async fn extract(
        &self,
        store: &mut Store<PluginState>,
        instance: &Instance,
        page: Resource<PageResource>,
        params: &str,
    ) -> Answer<Output> {
        match self {
            Self::Current(indices) => {
                let guest = loaded(&indices.extractor, |found| {
                    found.load(&mut *store, instance)
                })?;
                guest.call_extract(&mut *store, page, params).await
            }
            Self::V0_1(indices) => {
                let guest = loaded(&indices.extractor, |found| {
                    found.load(&mut *store, instance)
                })?;
                let answer = guest.call_extract(&mut *store, page, params).await?;
                Ok(answer
                    .map(super::v0_1::output_now)
                    .map_err(super::v0_1::error_now))
            }
        }
    }

    pub async fn init_scripts(
        &self,
        store: &mut Store<PluginState>,
        instance: &Instance,
        params: &str,
    ) -> Answer<Vec<String>> {
        match self {
            Self::Current(indices) => {
                let guest = loaded(&indices.page_script, |found| {
                    found.load(&mut *store, instance)
                })?;
                guest.call_init_scripts(&mut *store, params).await
            }
            Self::V0_1(indices) => {
                let guest = loaded(&indices.page_script, |found| {
                    found.load(&mut *store, instance)
                })?;
                let answer = guest.call_init_scripts(&mut *store, params).await?;
                Ok(answer.map_err(super::v0_1::error_now))
            }
        }
    }

    pub async fn after_load(
        &self,
        store: &mut Store<PluginState>,
        instance: &Instance,
        page: Resource<PageResource>,
        params: &str,
    ) -> Answer<()> {
        match self {
            Self::Current(indices) => {
                let guest = loaded(&indices.page_script, |found| {
                    found.load(&mut *store, instance)
                })?;
                guest.call_after_load(&mut *store, page, params).await
            }
            Self::V0_1(indices) => {
                let guest = loaded(&indices.page_script, |found| {
                    found.load(&mut *store, instance)
                })?;
                let answer = guest.call_after_load(&mut *store, page, params).await?;
                Ok(answer.map_err(super::v0_1::error_now))
            }
        }
    }

    pub async fn score(
        &self,
        store: &mut Store<PluginState>,
        instance: &Instance,
        job: &JobInfo,
    ) -> wasmtime::Result<f64> {
        match self {
            Self::Current(indices) => {
                let guest = loaded(&indices.scorer, |found| found.load(&mut *store, instance))?;
                guest.call_score(&mut *store, job).await
            }
            Self::V0_1(indices) => {
                let guest = loaded(&indices.scorer, |found| found.load(&mut *store, instance))?;
                guest
                    .call_score(&mut *store, &super::v0_1::job_info(job))
                    .await
            }
        }
    }

    /// Looks up every exported role's functions in `instance` with the WIT's types, calling none.
    /// The error is one message, not a chain: the caller quotes only an error's root cause.
    pub fn verify(
        &self,
        store: &mut Store<PluginState>,
        instance: &Instance,
    ) -> wasmtime::Result<()> {
        let version = self.version();
        let mismatch = |role: &'static str| {
            move |error: wasmtime::Error| {
                wasmtime::format_err!(
                    "its export `{PACKAGE}/{role}@{version}` does not match the WIT: {error:#}"
                )
            }
        };
        macro_rules! verify_roles {
            ($indices:expr) => {{
                if let Some(found) = &$indices.extractor {
                    found
                        .load(&mut *store, instance)
                        .map_err(mismatch("extractor"))?;
                }
                if let Some(found) = &$indices.page_script {
                    found
                        .load(&mut *store, instance)
                        .map_err(mismatch("page-script"))?;
                }
                if let Some(found) = &$indices.scorer {
                    found
                        .load(&mut *store, instance)
                        .map_err(mismatch("scorer"))?;
                }
            }};
        }
        match self {
            Self::Current(indices) => verify_roles!(indices),
            Self::V0_1(indices) => verify_roles!(indices),
        }
        Ok(())
    }
}

/// What [`Exports::find`] found, or the role whose export has other types, and why.
pub(super) type Found = Result<Exports, (&'static str, String)>;

/// A role's functions, loaded from an instance.
fn loaded<I, G>(
    indices: &Option<I>,
    load: impl FnOnce(&I) -> wasmtime::Result<G>,
) -> wasmtime::Result<G> {
    load(
        indices
            .as_ref()
            .ok_or_else(|| wasmtime::format_err!(CHECKED))?,
    )
}
