//! The test guests: components built from the crates in this folder, each a fixture for one way a
//! plugin behaves or misbehaves (`trap`, `spin`, `memory-bomb`, `huge-output`, `bad-args`, ...). Only
//! the tests and the bench depend on this crate, so the server's own build never compiles them.

use std::path::PathBuf;

include!(concat!(env!("OUT_DIR"), "/guests.rs"));

/// The component of guest `name` (its folder's name).
///
/// # Panics
/// If there is no such guest: a test naming one that does not exist is a mistake in the test.
pub fn path(name: &str) -> PathBuf {
    GUESTS
        .iter()
        .find(|(guest, _)| *guest == name)
        .map(|(_, path)| PathBuf::from(path))
        .unwrap_or_else(|| panic!("no test guest named `{name}` in tests/guests"))
}

/// The bytes of guest `name`'s component.
///
/// # Panics
/// If there is no such guest, or its component cannot be read.
pub fn bytes(name: &str) -> Vec<u8> {
    let path = path(name);
    std::fs::read(&path).unwrap_or_else(|error| panic!("reading {}: {error}", path.display()))
}

/// `NAME=PATH` for guest `name`, as `pagewright serve --plugin` takes it.
pub fn plugin_flag(name: &str) -> String {
    format!("{name}={}", path(name).display())
}
