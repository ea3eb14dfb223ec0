//! The generated bindings of the WIT versions the host serves, private to the plugin host: the rest
//! of the host uses the hand-written types around them.
//!
//! The host implements the current version, `wit/plugin@0.2.0`, whose bindings are this module's
//! top level. Plugins built against `wit/plugin@0.1.0` import and export [`v0_1`]'s, which
//! `super::v0_1` converts to and from the current ones.

wasmtime::component::bindgen!({
    path: "../wit/plugin@0.2.0",
    world: "host",
    imports: { default: async | trappable },
    exports: { default: async },
    with: {
        "pagewright:plugin/page.page": super::page_resource::PageResource,
    },
});

/// `pagewright:plugin@0.1.0`. Its `page` resource is the same host type as the current one's, so a
/// handle is one and the same whichever version's functions use it.
pub mod v0_1 {
    wasmtime::component::bindgen!({
        path: "../wit/plugin@0.1.0",
        world: "host",
        imports: { default: async | trappable },
        exports: { default: async },
        with: {
            "pagewright:plugin/page.page": crate::plugin::page_resource::PageResource,
        },
    });
}
