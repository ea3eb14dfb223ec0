//! The generated bindings of `wit/plugin@0.1.0`, private to the plugin host: the rest of the host uses
//! the hand-written types around them.

wasmtime::component::bindgen!({
    path: "../wit/plugin@0.1.0",
    world: "host",
    imports: { default: async | trappable },
    exports: { default: async },
    with: {
        "pagewright:plugin/page.page": super::page_resource::PageResource,
    },
});
