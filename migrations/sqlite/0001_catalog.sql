-- The catalog: users and rights, assets and their files, the audit chain and the change feed.
-- Times are Unix milliseconds (UTC). The PostgreSQL migration of the same number is the same
-- model in that dialect; the catalog conformance tests run against both.

CREATE TABLE users (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    username      TEXT NOT NULL UNIQUE,
    display_name  TEXT NOT NULL DEFAULT '',
    role          TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    disabled      INTEGER NOT NULL DEFAULT 0,
    created_ms    INTEGER NOT NULL,
    updated_ms    INTEGER NOT NULL
);

CREATE TABLE groups (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    name        TEXT NOT NULL UNIQUE,
    description TEXT NOT NULL DEFAULT '',
    created_ms  INTEGER NOT NULL
);

CREATE TABLE group_members (
    group_id INTEGER NOT NULL REFERENCES groups(id) ON DELETE CASCADE,
    user_id  INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    PRIMARY KEY (group_id, user_id)
);
CREATE INDEX group_members_user ON group_members(user_id);

CREATE TABLE tokens (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id      INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    kind         TEXT NOT NULL,
    name         TEXT NOT NULL DEFAULT '',
    hash         TEXT NOT NULL UNIQUE,
    created_ms   INTEGER NOT NULL,
    expires_ms   INTEGER NOT NULL,
    revoked_ms   INTEGER,
    last_used_ms INTEGER
);
CREATE INDEX tokens_user ON tokens(user_id);

CREATE TABLE naming_seq (
    scope TEXT PRIMARY KEY,
    next  INTEGER NOT NULL
);

CREATE TABLE assets (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    house_id    TEXT NOT NULL UNIQUE,
    kind        TEXT NOT NULL,
    status      TEXT NOT NULL,
    title       TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    subject     TEXT NOT NULL DEFAULT '',
    creator     TEXT NOT NULL DEFAULT '',
    contributor TEXT NOT NULL DEFAULT '',
    date        TEXT NOT NULL DEFAULT '',
    language    TEXT NOT NULL DEFAULT '',
    rights      TEXT NOT NULL DEFAULT '',
    identifier  TEXT NOT NULL DEFAULT '',
    series      TEXT NOT NULL DEFAULT '',
    episode     TEXT NOT NULL DEFAULT '',
    custom      TEXT NOT NULL DEFAULT '{}',
    owner_id    INTEGER REFERENCES users(id) ON DELETE SET NULL,
    created_ms  INTEGER NOT NULL,
    updated_ms  INTEGER NOT NULL,
    version     INTEGER NOT NULL DEFAULT 1
);
CREATE INDEX assets_status ON assets(status, id);
CREATE INDEX assets_kind ON assets(kind, id);
CREATE INDEX assets_created ON assets(created_ms);
CREATE INDEX assets_owner ON assets(owner_id);

-- Text of title, description, subject, series, tags and custom fields, rowid = assets.id.
CREATE VIRTUAL TABLE assets_fts USING fts5(body, tokenize = 'unicode61 remove_diacritics 2');

CREATE TABLE asset_tags (
    asset_id INTEGER NOT NULL REFERENCES assets(id) ON DELETE CASCADE,
    tag      TEXT NOT NULL,
    PRIMARY KEY (asset_id, tag)
);
CREATE INDEX asset_tags_tag ON asset_tags(tag, asset_id);

CREATE TABLE collections (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    name        TEXT NOT NULL UNIQUE,
    description TEXT NOT NULL DEFAULT '',
    owner_id    INTEGER REFERENCES users(id) ON DELETE SET NULL,
    created_ms  INTEGER NOT NULL
);

CREATE TABLE collection_assets (
    collection_id INTEGER NOT NULL REFERENCES collections(id) ON DELETE CASCADE,
    asset_id      INTEGER NOT NULL REFERENCES assets(id) ON DELETE CASCADE,
    PRIMARY KEY (collection_id, asset_id)
);
CREATE INDEX collection_assets_asset ON collection_assets(asset_id);

-- Grants: perms is a bit set (1 read, 2 write metadata, 4 download, 8 delete).
CREATE TABLE acl (
    object_kind    TEXT NOT NULL,
    object_id      INTEGER NOT NULL,
    principal_kind TEXT NOT NULL,
    principal_id   INTEGER NOT NULL,
    perms          INTEGER NOT NULL,
    PRIMARY KEY (object_kind, object_id, principal_kind, principal_id)
);
CREATE INDEX acl_principal ON acl(principal_kind, principal_id, object_kind);

CREATE TABLE files (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    asset_id   INTEGER NOT NULL REFERENCES assets(id) ON DELETE CASCADE,
    role       TEXT NOT NULL,
    path       TEXT NOT NULL,
    storage    TEXT NOT NULL,
    size       INTEGER NOT NULL,
    sha256     TEXT NOT NULL,
    container  TEXT NOT NULL DEFAULT '',
    video_codec TEXT NOT NULL DEFAULT '',
    width      INTEGER NOT NULL DEFAULT 0,
    height     INTEGER NOT NULL DEFAULT 0,
    duration_s REAL NOT NULL DEFAULT 0,
    technical  TEXT NOT NULL DEFAULT '{}',
    profile    TEXT NOT NULL DEFAULT '',
    verification TEXT NOT NULL DEFAULT '',
    created_ms INTEGER NOT NULL
);
CREATE INDEX files_asset ON files(asset_id);
CREATE INDEX files_sha256 ON files(sha256);
CREATE INDEX files_codec ON files(video_codec, height);

CREATE TABLE rights_windows (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    asset_id     INTEGER NOT NULL REFERENCES assets(id) ON DELETE CASCADE,
    licensed_from_ms  INTEGER,
    licensed_until_ms INTEGER,
    territories  TEXT NOT NULL DEFAULT '',
    platforms    TEXT NOT NULL DEFAULT '',
    note         TEXT NOT NULL DEFAULT ''
);
CREATE INDEX rights_windows_asset ON rights_windows(asset_id);

-- Append-only: each row's hash covers the previous row's hash and its own fields.
CREATE TABLE audit (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    ts_ms       INTEGER NOT NULL,
    actor_id    INTEGER,
    actor       TEXT NOT NULL,
    action      TEXT NOT NULL,
    object      TEXT NOT NULL,
    result      TEXT NOT NULL,
    detail      TEXT NOT NULL DEFAULT '',
    prev_hash   TEXT NOT NULL,
    hash        TEXT NOT NULL
);
CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;

-- The change feed: seq is the cursor; rows are written in commit order.
CREATE TABLE changes (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    ts_ms       INTEGER NOT NULL,
    object_kind TEXT NOT NULL,
    object_id   INTEGER NOT NULL,
    op          TEXT NOT NULL,
    asset_id    INTEGER
);
