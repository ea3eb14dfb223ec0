//! pagewright-sdk: write pagewright plugins in Rust.
//!
//! A plugin is a WebAssembly component that implements one or more roles of the `pagewright:plugin`
//! WIT package (`wit/plugin@0.2.0`): [`Extractor`] (a loaded page in, JSON, text or bytes out),
//! [`PageScript`] (scripts injected before the page's own, and a hook after it loads) and [`Scorer`]
//! (a priority for queued jobs). Implement the traits on a type and name the roles in [`plugin!`]:
//!
//! ```no_run
//! use pagewright_sdk::{Error, Extractor, Output, Page};
//! use serde::Deserialize;
//!
//! struct Title;
//!
//! #[derive(Deserialize, Default)]
//! #[serde(deny_unknown_fields)]
//! struct Params {
//!     #[serde(default)]
//!     uppercase: bool,
//! }
//!
//! impl Extractor for Title {
//!     type Params = Params;
//!
//!     fn extract(page: Page<'_>, params: Params) -> Result<Output, Error> {
//!         let title: String = page.evaluate("document.title")?;
//!         Ok(Output::text(if params.uppercase { title.to_uppercase() } else { title }))
//!     }
//! }
//!
//! pagewright_sdk::plugin!(Title: extractor);
//! # fn main() {}
//! ```
//!
//! Build it with `cargo build --release --target wasm32-wasip2` from a `cdylib` crate; the `.wasm` in
//! `target/wasm32-wasip2/release/` is the component. `docs/plugin-authoring.md` walks through it.
//!
//! Page operations run in the host, under the job's deadline, and cost the plugin no fuel; waiting
//! (`wait_for_selector`, `wait_for_timeout`) is free, spinning is not.
#![deny(missing_docs)]

// The generated bindings name the runtime by the crate's public path, also from inside this crate.
extern crate self as pagewright_sdk;

mod page;
mod types;

pub use page::Page;
pub use types::{
    Binary, Clip, Cookie, Element, ElementState, Error, FunctionWait, Geolocation, GotoOptions,
    ImageFormat, JobInfo, Margins, MediaType, Navigation, OriginStats, Output, PaperFormat,
    PdfMetadata, PdfOptions, PriorityClass, SameSite, ScreenshotOptions, ScrollBy, ScrollTarget,
    SelectorWait, Viewport, WaitUntil,
};

/// Logging to the host, which records each line with the plugin's name and the job's id. Lines above
/// the host's log level cost one call and are dropped there.
pub mod log {
    use std::fmt::Display;

    pub use crate::types::Level;

    /// Logs `message` at `level`.
    pub fn log(level: Level, message: impl Display) {
        crate::__private::bindings::pagewright::plugin::log::log(level, &message.to_string());
    }

    /// Logs at `trace` level.
    pub fn trace(message: impl Display) {
        log(Level::Trace, message);
    }

    /// Logs at `debug` level.
    pub fn debug(message: impl Display) {
        log(Level::Debug, message);
    }

    /// Logs at `info` level.
    pub fn info(message: impl Display) {
        log(Level::Info, message);
    }

    /// Logs at `warn` level.
    pub fn warn(message: impl Display) {
        log(Level::Warn, message);
    }

    /// Logs at `error` level.
    pub fn error(message: impl Display) {
        log(Level::Error, message);
    }
}

/// The extractor role: turns a loaded page into an output.
pub trait Extractor {
    /// The plugin's params, parsed from the request's JSON (`{}` when it gave none). A parse error is
    /// answered with [`Error::InvalidInput`] naming the field, before [`Extractor::extract`] runs.
    type Params: serde::de::DeserializeOwned;

    /// Produces the output from `page`, which the host has already set up and navigated.
    fn extract(page: Page<'_>, params: Self::Params) -> Result<Output, Error>;
}

/// The page-script role: prepares a page before an extractor runs on it.
pub trait PageScript {
    /// The plugin's params, as for [`Extractor::Params`].
    type Params: serde::de::DeserializeOwned;

    /// JavaScript sources to run in every document of the page, before the page's own scripts.
    fn init_scripts(params: &Self::Params) -> Result<Vec<String>, Error> {
        let _ = params;
        Ok(Vec::new())
    }

    /// Acts on the page after it has loaded, before the extractor runs.
    fn after_load(page: Page<'_>, params: &Self::Params) -> Result<(), Error> {
        let _ = (page, params);
        Ok(())
    }
}

/// The scorer role: a priority for each queued job. Higher runs sooner.
pub trait Scorer {
    /// The job's score. Scorers run with a small fuel budget; what the host does with a score (and with
    /// a scorer that fails) is the scheduler's business.
    fn score(job: JobInfo) -> f64;
}

/// Exports `$ty` as a plugin with the named roles: `extractor`, `page_script`, `scorer`.
///
/// Use it once per crate, at module level: `pagewright_sdk::plugin!(MyPlugin: extractor, page_script);`
#[macro_export]
macro_rules! plugin {
    ($ty:ty : $($role:ident),+ $(,)?) => {
        $( $crate::__export_role!($role, $ty); )+
    };
}

/// One role's export glue: generated bindings for the role's world, and a guest type that forwards to
/// the plugin's trait implementation.
#[doc(hidden)]
#[macro_export]
macro_rules! __export_role {
    (extractor, $ty:ty) => {
        #[doc(hidden)]
        #[allow(missing_docs, unsafe_code, unused_qualifications, clippy::all)]
        mod __pagewright_extractor {
            use super::*;
            $crate::__generate_role!("extractor-plugin");

            struct Glue;

            impl exports::pagewright::plugin::extractor::Guest for Glue {
                fn extract(
                    page: &$crate::__private::bindings::pagewright::plugin::page::Page,
                    params: ::std::string::String,
                ) -> ::std::result::Result<$crate::Output, $crate::Error> {
                    $crate::__private::extract::<$ty>(page, &params)
                }
            }

            export!(Glue);
        }
    };
    (page_script, $ty:ty) => {
        #[doc(hidden)]
        #[allow(missing_docs, unsafe_code, unused_qualifications, clippy::all)]
        mod __pagewright_page_script {
            use super::*;
            $crate::__generate_role!("page-script-plugin");

            struct Glue;

            impl exports::pagewright::plugin::page_script::Guest for Glue {
                fn init_scripts(
                    params: ::std::string::String,
                ) -> ::std::result::Result<::std::vec::Vec<::std::string::String>, $crate::Error>
                {
                    $crate::__private::init_scripts::<$ty>(&params)
                }

                fn after_load(
                    page: &$crate::__private::bindings::pagewright::plugin::page::Page,
                    params: ::std::string::String,
                ) -> ::std::result::Result<(), $crate::Error> {
                    $crate::__private::after_load::<$ty>(page, &params)
                }
            }

            export!(Glue);
        }
    };
    (scorer, $ty:ty) => {
        #[doc(hidden)]
        #[allow(missing_docs, unsafe_code, unused_qualifications, clippy::all)]
        mod __pagewright_scorer {
            use super::*;
            $crate::__generate_role!("scorer-plugin");

            struct Glue;

            impl exports::pagewright::plugin::scorer::Guest for Glue {
                fn score(job: $crate::JobInfo) -> f64 {
                    <$ty as $crate::Scorer>::score(job)
                }
            }

            export!(Glue);
        }
    };
    ($other:ident, $ty:ty) => {
        compile_error!(concat!(
            "unknown pagewright plugin role `",
            stringify!($other),
            "`: use extractor, page_script or scorer"
        ));
    };
}

include!(concat!(env!("OUT_DIR"), "/generate_role.rs"));

/// What the `plugin!` macro expands to; not part of the API.
#[doc(hidden)]
pub mod __private {
    pub use wit_bindgen;

    use crate::{Error, Extractor, Output, Page, PageScript};

    /// The bindings of the host's interfaces, shared by every role's generated glue.
    #[allow(missing_docs, unsafe_code, unused_qualifications, clippy::all)]
    pub mod bindings {
        wit_bindgen::generate!({
            path: "../wit/plugin@0.2.0",
            world: "imports",
            runtime_path: "::pagewright_sdk::__private::wit_bindgen::rt",
            additional_derives: [serde::Serialize, serde::Deserialize, PartialEq],
            additional_type_attributes: {
                "pagewright:plugin/types@0.2.0/priority-class": [#[serde(rename_all = "lowercase")]],
                "pagewright:plugin/log@0.2.0/level": [#[serde(rename_all = "lowercase")]],
                "pagewright:plugin/page@0.2.0/wait-until": [#[serde(rename_all = "lowercase")]],
                "pagewright:plugin/page@0.2.0/media-type": [#[serde(rename_all = "lowercase")]],
                "pagewright:plugin/page@0.2.0/image-format": [#[serde(rename_all = "lowercase")]],
                "pagewright:plugin/page@0.2.0/paper-format": [#[serde(rename_all = "lowercase")]],
                "pagewright:plugin/page@0.2.0/scroll-target": [#[serde(rename_all = "snake_case")]],
                "pagewright:plugin/page@0.2.0/goto-options": [#[serde(deny_unknown_fields)]],
                "pagewright:plugin/page@0.2.0/viewport": [#[serde(deny_unknown_fields)]],
                "pagewright:plugin/page@0.2.0/cookie": [#[serde(deny_unknown_fields)]],
                "pagewright:plugin/page@0.2.0/clip": [#[serde(deny_unknown_fields)]],
                "pagewright:plugin/page@0.2.0/screenshot-options": [#[serde(deny_unknown_fields)]],
                "pagewright:plugin/page@0.2.0/margins": [#[serde(deny_unknown_fields)] #[derive(Default)]],
                "pagewright:plugin/page@0.2.0/pdf-options": [#[serde(deny_unknown_fields)] #[derive(Default)]],
                "pagewright:plugin/page@0.2.0/pdf-metadata": [#[serde(deny_unknown_fields)] #[derive(Default)]],
                "pagewright:plugin/page@0.2.0/element-state": [#[serde(rename_all = "lowercase")]],
                "pagewright:plugin/page@0.2.0/selector-wait": [#[serde(deny_unknown_fields)]],
                "pagewright:plugin/page@0.2.0/function-wait": [#[serde(deny_unknown_fields)]],
                "pagewright:plugin/page@0.2.0/geolocation": [#[serde(deny_unknown_fields)]],
            },
            additional_member_attributes: {
                "pagewright:plugin/page@0.2.0/wait-until.dom-content-loaded": [#[serde(alias = "dom_content_loaded")]],
                "pagewright:plugin/page@0.2.0/wait-until.network-idle": [#[serde(alias = "network_idle")]],
                "pagewright:plugin/page@0.2.0/wait-until.network-almost-idle": [#[serde(alias = "network_almost_idle")]],
                "pagewright:plugin/page@0.2.0/goto-options.best-attempt": [#[serde(default)]],
                "pagewright:plugin/page@0.2.0/screenshot-options.optimize-for-speed": [#[serde(default)]],
                "pagewright:plugin/page@0.2.0/pdf-options.outline": [#[serde(default)]],
                "pagewright:plugin/page@0.2.0/pdf-options.tagged": [#[serde(default)]],
                "pagewright:plugin/page@0.2.0/pdf-options.omit-background": [#[serde(default)]],
                "pagewright:plugin/page@0.2.0/pdf-metadata.keywords": [#[serde(default)]],
                "pagewright:plugin/page@0.2.0/image-format.jpeg": [#[serde(alias = "jpg")]],
                "pagewright:plugin/page@0.2.0/goto-options.wait-until": [#[serde(default)]],
                "pagewright:plugin/page@0.2.0/viewport.device-scale-factor": [#[serde(default = "crate::types::one")]],
                "pagewright:plugin/page@0.2.0/viewport.mobile": [#[serde(default)]],
                "pagewright:plugin/page@0.2.0/cookie.secure": [#[serde(default)]],
                "pagewright:plugin/page@0.2.0/cookie.http-only": [#[serde(default)]],
                "pagewright:plugin/page@0.2.0/screenshot-options.format": [#[serde(default)]],
                "pagewright:plugin/page@0.2.0/screenshot-options.full-page": [#[serde(default)]],
                "pagewright:plugin/page@0.2.0/screenshot-options.omit-background": [#[serde(default)]],
                "pagewright:plugin/page@0.2.0/margins.top": [#[serde(default, deserialize_with = "crate::types::length")]],
                "pagewright:plugin/page@0.2.0/margins.right": [#[serde(default, deserialize_with = "crate::types::length")]],
                "pagewright:plugin/page@0.2.0/margins.bottom": [#[serde(default, deserialize_with = "crate::types::length")]],
                "pagewright:plugin/page@0.2.0/margins.left": [#[serde(default, deserialize_with = "crate::types::length")]],
                "pagewright:plugin/page@0.2.0/pdf-options.width": [#[serde(default, deserialize_with = "crate::types::length")]],
                "pagewright:plugin/page@0.2.0/pdf-options.height": [#[serde(default, deserialize_with = "crate::types::length")]],
                "pagewright:plugin/page@0.2.0/pdf-options.landscape": [#[serde(default)]],
                "pagewright:plugin/page@0.2.0/pdf-options.print-background": [#[serde(default)]],
                "pagewright:plugin/page@0.2.0/pdf-options.margin": [#[serde(default)]],
                "pagewright:plugin/page@0.2.0/pdf-options.prefer-css-page-size": [#[serde(default)]],
            },
        });
    }

    /// Parses params JSON; an empty string counts as `{}`.
    fn params<P: serde::de::DeserializeOwned>(params: &str) -> Result<P, Error> {
        let params = if params.trim().is_empty() {
            "{}"
        } else {
            params
        };
        serde_json::from_str(params)
            .map_err(|error| Error::InvalidInput(format!("invalid plugin params: {error}")))
    }

    pub fn extract<T: Extractor>(
        page: &bindings::pagewright::plugin::page::Page,
        params_json: &str,
    ) -> Result<Output, Error> {
        T::extract(Page::new(page), params(params_json)?)
    }

    pub fn init_scripts<T: PageScript>(params_json: &str) -> Result<Vec<String>, Error> {
        T::init_scripts(&params(params_json)?)
    }

    pub fn after_load<T: PageScript>(
        page: &bindings::pagewright::plugin::page::Page,
        params_json: &str,
    ) -> Result<(), Error> {
        T::after_load(Page::new(page), &params(params_json)?)
    }
}
