-- The plugin registry every host shares: each uploaded version's metadata (JSON, as
-- `GET /v1/plugins` shows it) and the components by content hash. Each host compiles them into its
-- own data directory. Versions are immutable: a version is added or removed, never changed.

CREATE TABLE plugin_versions (
    name TEXT NOT NULL,
    version TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    metadata TEXT NOT NULL,
    PRIMARY KEY (name, version)
);

CREATE TABLE plugin_components (
    sha256 TEXT PRIMARY KEY,
    bytes BYTEA NOT NULL
);

-- What every host follows, by name, with a revision each change advances: `registry` (its value
-- unused: its revision tells hosts the plugins changed) and `scorer` (the scorer plugin; NULL for
-- the built-in score; no row: each host's --scorer).
CREATE TABLE shared (
    name TEXT PRIMARY KEY,
    value TEXT,
    revision BIGINT NOT NULL
);
