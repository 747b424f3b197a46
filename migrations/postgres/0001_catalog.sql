-- The catalog in PostgreSQL: the same model as migrations/sqlite/0001_catalog.sql.
-- Times are Unix milliseconds (UTC).

CREATE TABLE users (
    id            BIGSERIAL PRIMARY KEY,
    username      TEXT NOT NULL UNIQUE,
    display_name  TEXT NOT NULL DEFAULT '',
    role          TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    disabled      BIGINT NOT NULL DEFAULT 0,
    created_ms    BIGINT NOT NULL,
    updated_ms    BIGINT NOT NULL
);

CREATE TABLE groups (
    id          BIGSERIAL PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    description TEXT NOT NULL DEFAULT '',
    created_ms  BIGINT NOT NULL
);

CREATE TABLE group_members (
    group_id BIGINT NOT NULL REFERENCES groups(id) ON DELETE CASCADE,
    user_id  BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    PRIMARY KEY (group_id, user_id)
);
CREATE INDEX group_members_user ON group_members(user_id);

CREATE TABLE tokens (
    id           BIGSERIAL PRIMARY KEY,
    user_id      BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    kind         TEXT NOT NULL,
    name         TEXT NOT NULL DEFAULT '',
    hash         TEXT NOT NULL UNIQUE,
    created_ms   BIGINT NOT NULL,
    expires_ms   BIGINT NOT NULL,
    revoked_ms   BIGINT,
    last_used_ms BIGINT
);
CREATE INDEX tokens_user ON tokens(user_id);

CREATE TABLE naming_seq (
    scope TEXT PRIMARY KEY,
    next  BIGINT NOT NULL
);

CREATE TABLE assets (
    id          BIGSERIAL PRIMARY KEY,
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
    owner_id    BIGINT REFERENCES users(id) ON DELETE SET NULL,
    created_ms  BIGINT NOT NULL,
    updated_ms  BIGINT NOT NULL,
    version     BIGINT NOT NULL DEFAULT 1,
    search      TSVECTOR NOT NULL DEFAULT ''::tsvector
);
CREATE INDEX assets_status ON assets(status, id);
CREATE INDEX assets_kind ON assets(kind, id);
CREATE INDEX assets_created ON assets(created_ms);
CREATE INDEX assets_owner ON assets(owner_id);
CREATE INDEX assets_search ON assets USING GIN (search);

CREATE TABLE asset_tags (
    asset_id BIGINT NOT NULL REFERENCES assets(id) ON DELETE CASCADE,
    tag      TEXT NOT NULL,
    PRIMARY KEY (asset_id, tag)
);
CREATE INDEX asset_tags_tag ON asset_tags(tag, asset_id);

CREATE TABLE collections (
    id          BIGSERIAL PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    description TEXT NOT NULL DEFAULT '',
    owner_id    BIGINT REFERENCES users(id) ON DELETE SET NULL,
    created_ms  BIGINT NOT NULL
);

CREATE TABLE collection_assets (
    collection_id BIGINT NOT NULL REFERENCES collections(id) ON DELETE CASCADE,
    asset_id      BIGINT NOT NULL REFERENCES assets(id) ON DELETE CASCADE,
    PRIMARY KEY (collection_id, asset_id)
);
CREATE INDEX collection_assets_asset ON collection_assets(asset_id);

CREATE TABLE acl (
    object_kind    TEXT NOT NULL,
    object_id      BIGINT NOT NULL,
    principal_kind TEXT NOT NULL,
    principal_id   BIGINT NOT NULL,
    perms          BIGINT NOT NULL,
    PRIMARY KEY (object_kind, object_id, principal_kind, principal_id)
);
CREATE INDEX acl_principal ON acl(principal_kind, principal_id, object_kind);

CREATE TABLE files (
    id         BIGSERIAL PRIMARY KEY,
    asset_id   BIGINT NOT NULL REFERENCES assets(id) ON DELETE CASCADE,
    role       TEXT NOT NULL,
    path       TEXT NOT NULL,
    storage    TEXT NOT NULL,
    size       BIGINT NOT NULL,
    sha256     TEXT NOT NULL,
    container  TEXT NOT NULL DEFAULT '',
    video_codec TEXT NOT NULL DEFAULT '',
    width      BIGINT NOT NULL DEFAULT 0,
    height     BIGINT NOT NULL DEFAULT 0,
    duration_s DOUBLE PRECISION NOT NULL DEFAULT 0,
    technical  TEXT NOT NULL DEFAULT '{}',
    profile    TEXT NOT NULL DEFAULT '',
    verification TEXT NOT NULL DEFAULT '',
    created_ms BIGINT NOT NULL
);
CREATE INDEX files_asset ON files(asset_id);
CREATE INDEX files_sha256 ON files(sha256);
CREATE INDEX files_codec ON files(video_codec, height);

CREATE TABLE rights_windows (
    id           BIGSERIAL PRIMARY KEY,
    asset_id     BIGINT NOT NULL REFERENCES assets(id) ON DELETE CASCADE,
    licensed_from_ms  BIGINT,
    licensed_until_ms BIGINT,
    territories  TEXT NOT NULL DEFAULT '',
    platforms    TEXT NOT NULL DEFAULT '',
    note         TEXT NOT NULL DEFAULT ''
);
CREATE INDEX rights_windows_asset ON rights_windows(asset_id);

CREATE TABLE audit (
    seq         BIGSERIAL PRIMARY KEY,
    ts_ms       BIGINT NOT NULL,
    actor_id    BIGINT,
    actor       TEXT NOT NULL,
    action      TEXT NOT NULL,
    object      TEXT NOT NULL,
    result      TEXT NOT NULL,
    detail      TEXT NOT NULL DEFAULT '',
    prev_hash   TEXT NOT NULL,
    hash        TEXT NOT NULL
);
CREATE FUNCTION audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the audit log is append-only';
END;
$$;
CREATE TRIGGER audit_no_change BEFORE UPDATE OR DELETE ON audit
    FOR EACH ROW EXECUTE FUNCTION audit_append_only();

CREATE TABLE changes (
    seq         BIGSERIAL PRIMARY KEY,
    ts_ms       BIGINT NOT NULL,
    object_kind TEXT NOT NULL,
    object_id   BIGINT NOT NULL,
    op          TEXT NOT NULL,
    asset_id    BIGINT
);
