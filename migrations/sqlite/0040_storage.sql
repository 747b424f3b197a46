-- Storage tiers: where each file's copies are, what the audit found and did, legal holds,
-- retention proposals and the tombstones of purged assets. Times are Unix milliseconds.

-- A copy counts (state 'ok') only once it was read back: size and SHA-256 equal the file's.
CREATE TABLE copies (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    file_id     INTEGER NOT NULL REFERENCES files(id) ON DELETE CASCADE,
    storage     TEXT NOT NULL,
    key         TEXT NOT NULL,
    size        INTEGER NOT NULL,
    sha256      TEXT NOT NULL,
    state       TEXT NOT NULL,
    verified_ms INTEGER NOT NULL,
    created_ms  INTEGER NOT NULL,
    UNIQUE (file_id, storage)
);
CREATE INDEX copies_storage ON copies(storage, verified_ms);

-- Every detection, repair, copy, move and purge, append-only.
CREATE TABLE storage_events (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    ts_ms    INTEGER NOT NULL,
    kind     TEXT NOT NULL,
    storage  TEXT NOT NULL DEFAULT '',
    file_id  INTEGER,
    asset_id INTEGER,
    detail   TEXT NOT NULL DEFAULT ''
);
CREATE INDEX storage_events_kind ON storage_events(kind, id);

CREATE TABLE legal_holds (
    asset_id   INTEGER PRIMARY KEY REFERENCES assets(id) ON DELETE CASCADE,
    reason     TEXT NOT NULL,
    set_by     TEXT NOT NULL,
    set_ms     INTEGER NOT NULL
);

-- A dry run's proposal: the asset may be purged by `rule` once `proposed_ms` is grace old.
CREATE TABLE retention_proposals (
    asset_id    INTEGER NOT NULL REFERENCES assets(id) ON DELETE CASCADE,
    rule        TEXT NOT NULL,
    bytes       INTEGER NOT NULL,
    proposed_ms INTEGER NOT NULL,
    PRIMARY KEY (asset_id, rule)
);

-- What is left of a purged asset: its metadata and files (with hashes), who, when and why.
CREATE TABLE tombstones (
    asset_id  INTEGER PRIMARY KEY,
    house_id  TEXT NOT NULL,
    title     TEXT NOT NULL,
    metadata  TEXT NOT NULL,
    files     TEXT NOT NULL,
    bytes     INTEGER NOT NULL,
    purged_by TEXT NOT NULL,
    purged_ms INTEGER NOT NULL,
    why       TEXT NOT NULL
);
