//! Compiled plugin artifacts: wasmtime's serialised machine code, sealed with a hash of itself.
//!
//! Loading compiled code is `unsafe` in wasmtime because the bytes become executable code without
//! validation: they must be what `Component::serialize` wrote. This module is the one place outside
//! `sys` that opts in to `unsafe`, for that one call, and makes the promise true as far as a file can:
//! - the only writer is [`super::store::Store`], into the server's own data directory, under a
//!   directory named by the engine's compatibility hash;
//! - [`seal`] prefixes the artifact with its SHA-256 and [`load`] refuses a file whose contents do not
//!   match it, so a truncated or corrupted file is recompiled instead of executed;
//! - wasmtime itself checks that the artifact was made by this wasmtime version with compatible
//!   settings and refuses it otherwise.
//!
//! Someone who can write to the data directory can replace the code the server runs; so can anyone who
//! can replace the binary. Keep the data directory writable only by the server's user.
#![allow(unsafe_code)]

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

const DIGEST_BYTES: usize = 32;

/// The file contents for a serialised component: its SHA-256, then the bytes.
pub(super) fn seal(serialized: &[u8]) -> Vec<u8> {
    let mut sealed = Vec::with_capacity(DIGEST_BYTES + serialized.len());
    sealed.extend_from_slice(&Sha256::digest(serialized));
    sealed.extend_from_slice(serialized);
    sealed
}

/// The component in a file [`seal`] made, if it is intact and fits `engine`.
pub(super) fn load(engine: &Engine, sealed: &[u8]) -> Result<Component, String> {
    if sealed.len() < DIGEST_BYTES {
        return Err("the file is truncated".into());
    }
    let (digest, serialized) = sealed.split_at(DIGEST_BYTES);
    if Sha256::digest(serialized).as_slice() != digest {
        return Err("the file does not match its hash".into());
    }
    // SAFETY: `serialized` is byte for byte what `Component::serialize` produced in this server's
    // data directory (the hash above), and wasmtime checks its version and settings (see the module
    // documentation).
    unsafe { Component::deserialize(engine, serialized) }.map_err(|error| format!("{error:#}"))
}
