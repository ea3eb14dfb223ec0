//! pagewright-sdk: write pagewright plugins in Rust.
//!
//! The WIT interface (`wit/`) and the bindings over it arrive with the plugin host; until then this crate
//! only reserves the name so the workspace layout is final.
#![deny(missing_docs)]
