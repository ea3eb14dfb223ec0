//! The data directory: this host's compiled plugin code, so no component is compiled twice (the
//! uploads themselves are in the store, which every host of a farm shares), and the lock that
//! gives the directory to one server.
//!
//! ```text
//! DATA/lock                                  held by the running server (one server per directory)
//! DATA/compiled/ENGINE/SHA256.cwasm          compiled components, per engine build and settings
//! DATA/tmp/                                  files being written
//! DATA/pagewright.db                         the embedded store (SQLite), unless a farm's is used
//! ```
//!
//! Before the store, uploads were kept here (`blobs/SHA256.wasm` and `manifests/NAME/VERSION.json`);
//! a directory that still has them hands them to the store once ([`DataDir::legacy_uploads`]) and
//! then drops them.
//!
//! Every file is written to `tmp/`, flushed to disk, then renamed into place (and the directory
//! flushed), so a crash leaves the old state or the new one, never half a file. Compiled code no
//! plugin uses any more is removed after a delete and at start-up.

use std::collections::HashSet;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use wasmtime::Engine;
use wasmtime::component::Component;

use super::artifact;
use super::registry::{Metadata, hex, sha256_hex};

#[derive(Debug)]
pub(super) struct DataDir {
    root: PathBuf,
    /// Where this engine's compiled artifacts go: a hash of everything that makes compiled code
    /// compatible (wasmtime version, target, settings).
    compiled: PathBuf,
    /// The data directory's lock, held from start-up until [`DataDir::release`].
    lock: std::sync::Mutex<Option<File>>,
}

/// A version kept here before the store: its metadata and its component.
pub(super) type LegacyUpload = (Metadata, Vec<u8>);

/// A manifest that could not be read back, with why.
#[derive(Debug)]
pub(super) struct Unreadable {
    pub path: PathBuf,
    pub reason: String,
}

impl DataDir {
    /// Opens (creating if needed) the data directory and takes its lock.
    pub fn open(root: &Path, engine: &Engine) -> io::Result<Self> {
        let context = |step: &str, path: &Path| {
            let path = path.display().to_string();
            let step = step.to_owned();
            move |error: io::Error| io::Error::new(error.kind(), format!("{step} {path}: {error}"))
        };
        for dir in ["compiled", "tmp"] {
            let path = root.join(dir);
            fs::create_dir_all(&path).map_err(context("creating", &path))?;
        }
        let lock_path = root.join("lock");
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(context("opening", &lock_path))?;
        lock.try_lock().map_err(|_| {
            io::Error::new(
                io::ErrorKind::WouldBlock,
                format!(
                    "the data directory {} is in use by another pagewright; give each server its own --data-dir",
                    root.display()
                ),
            )
        })?;
        let compiled = root.join("compiled").join(engine_key(engine));
        fs::create_dir_all(&compiled).map_err(context("creating", &compiled))?;
        // Whatever is in tmp/ was being written when a server stopped.
        let tmp = root.join("tmp");
        for entry in fs::read_dir(&tmp).map_err(context("reading", &tmp))? {
            let path = entry?.path();
            let _ = fs::remove_file(&path).or_else(|_| fs::remove_dir_all(&path));
        }
        Ok(Self {
            root: root.to_owned(),
            compiled,
            lock: std::sync::Mutex::new(Some(lock)),
        })
    }

    /// Lets another server have the directory; this one changes nothing in it any more.
    pub fn release(&self) {
        self.lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
    }

    /// Is the directory still this server's to change?
    pub fn is_held(&self) -> bool {
        self.lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .is_some()
    }

    fn blob_path(&self, sha256: &str) -> PathBuf {
        self.root.join("blobs").join(format!("{sha256}.wasm"))
    }

    fn artifact_path(&self, sha256: &str) -> PathBuf {
        self.compiled.join(format!("{sha256}.cwasm"))
    }

    /// Every legacy version's metadata, and the manifests that could not be read.
    fn manifests(&self) -> io::Result<(Vec<Metadata>, Vec<Unreadable>)> {
        let mut found = Vec::new();
        let mut unreadable = Vec::new();
        for name_dir in fs::read_dir(self.root.join("manifests"))? {
            let name_dir = name_dir?.path();
            if !name_dir.is_dir() {
                continue;
            }
            for file in fs::read_dir(&name_dir)? {
                let path = file?.path();
                match read_manifest(&path) {
                    Ok(metadata) => found.push(metadata),
                    Err(reason) => unreadable.push(Unreadable { path, reason }),
                }
            }
        }
        Ok((found, unreadable))
    }

    /// The component of a legacy version, checked against its hash.
    fn component_bytes(&self, sha256: &str) -> io::Result<Vec<u8>> {
        let bytes = fs::read(self.blob_path(sha256))?;
        if sha256_hex(&bytes) != sha256 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("the stored component {sha256} does not match its hash"),
            ));
        }
        Ok(bytes)
    }

    /// The compiled artifact of a component, if this engine compiled it before.
    pub fn compiled(&self, engine: &Engine, sha256: &str) -> Option<Component> {
        let path = self.artifact_path(sha256);
        let bytes = fs::read(&path).ok()?;
        match artifact::load(engine, &bytes) {
            Ok(component) => Some(component),
            Err(error) => {
                tracing::warn!(path = %path.display(), %error, "a compiled plugin artifact is unusable; compiling again");
                let _ = fs::remove_file(&path);
                None
            }
        }
    }

    /// Keeps a component's compiled artifact for next time.
    pub fn save_compiled(&self, sha256: &str, component: &Component) -> io::Result<()> {
        let path = self.artifact_path(sha256);
        if path.exists() {
            return Ok(());
        }
        let serialized = component.serialize().map_err(|error| {
            io::Error::other(format!("serialising the compiled plugin: {error}"))
        })?;
        self.write_file(&path, &artifact::seal(&serialized))
    }

    /// Removes compiled code that `keep` does not name, and that of other engine builds.
    pub fn collect_garbage(&self, keep: &HashSet<String>) -> io::Result<()> {
        for entry in fs::read_dir(&self.compiled)? {
            let path = entry?.path();
            let unused = path
                .file_stem()
                .and_then(|stem| stem.to_str())
                .is_none_or(|sha256| !keep.contains(sha256));
            if unused {
                fs::remove_file(&path)?;
            }
        }
        for entry in fs::read_dir(self.root.join("compiled"))? {
            let path = entry?.path();
            if path != self.compiled {
                fs::remove_dir_all(&path)?;
            }
        }
        Ok(())
    }

    /// The uploads kept here before the store: each version's metadata and component, and the
    /// manifests that could not be read. Empty if there are none.
    pub fn legacy_uploads(&self) -> io::Result<(Vec<LegacyUpload>, Vec<Unreadable>)> {
        if !self.root.join("manifests").exists() {
            return Ok((Vec::new(), Vec::new()));
        }
        let (manifests, mut unreadable) = self.manifests()?;
        let mut uploads = Vec::with_capacity(manifests.len());
        for metadata in manifests {
            match self.component_bytes(&metadata.sha256) {
                Ok(bytes) => uploads.push((metadata, bytes)),
                Err(error) => unreadable.push(Unreadable {
                    path: self.blob_path(&metadata.sha256),
                    reason: error.to_string(),
                }),
            }
        }
        Ok((uploads, unreadable))
    }

    /// Drops the uploads kept here before the store, once the store has them.
    pub fn remove_legacy_uploads(&self) -> io::Result<()> {
        for dir in ["manifests", "blobs"] {
            match fs::remove_dir_all(self.root.join(dir)) {
                Err(error) if error.kind() != io::ErrorKind::NotFound => return Err(error),
                _ => {}
            }
        }
        sync_dir(&self.root)
    }

    /// Writes `bytes` to `path` through a flushed temporary file and a rename, so `path` is either
    /// absent or whole.
    fn write_file(&self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        let mut file = tempfile::NamedTempFile::new_in(self.root.join("tmp"))?;
        file.write_all(bytes)?;
        file.as_file().sync_all()?;
        file.persist(path).map_err(|error| error.error)?;
        sync_dir(path.parent().unwrap_or(&self.root))
    }
}

fn read_manifest(path: &Path) -> Result<Metadata, String> {
    let text = fs::read(path).map_err(|error| error.to_string())?;
    let metadata: Metadata = serde_json::from_slice(&text).map_err(|error| error.to_string())?;
    metadata.check()?;
    // The file's place must agree with its contents: a manifest copied by hand to another name or
    // version would otherwise shadow it.
    let expected = Path::new(&metadata.name).join(format!("{}.json", metadata.version));
    if !path.ends_with(&expected) {
        return Err(format!(
            "it describes {} but is not at manifests/{}",
            metadata.reference(),
            expected.display()
        ));
    }
    Ok(metadata)
}

/// Flushes a directory, so a rename or removal in it survives a power cut.
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// A stable name for this engine's compatibility: SHA-256 over what wasmtime hashes to decide whether
/// compiled code fits an engine.
fn engine_key(engine: &Engine) -> String {
    use sha2::Digest;
    use std::hash::{Hash, Hasher};
    struct Sha256Hasher(sha2::Sha256);
    impl Hasher for Sha256Hasher {
        fn write(&mut self, bytes: &[u8]) {
            self.0.update(bytes);
        }
        fn finish(&self) -> u64 {
            0 // unused: the digest is the result
        }
    }
    let mut hasher = Sha256Hasher(sha2::Sha256::new());
    engine.precompile_compatibility_hash().hash(&mut hasher);
    hex(&hasher.0.finalize()[..8])
}
