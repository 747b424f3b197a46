-- Resumable uploads (tus 1.0): one row per upload until it completes into the catalog, is
-- terminated, or expires. The bytes received so far lie in media/incoming/.tus-<id>.part;
-- `received` is how many of them are durable (the part file was fsynced up to there first).
CREATE TABLE uploads (
    id               TEXT PRIMARY KEY,
    user_id          BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    -- The asset the file is added to; NULL = a new asset is made at completion.
    asset_id         BIGINT,
    length           BIGINT NOT NULL,
    received         BIGINT NOT NULL DEFAULT 0,
    filename         TEXT NOT NULL,
    role             TEXT NOT NULL,
    title            TEXT,
    kind             TEXT,
    allow_duplicate  BIGINT NOT NULL DEFAULT 0,
    -- The Upload-Metadata header as the client sent it, given back on HEAD.
    metadata         TEXT NOT NULL DEFAULT '',
    created_ms       BIGINT NOT NULL,
    updated_ms       BIGINT NOT NULL,
    expires_ms       BIGINT NOT NULL,
    -- Set once the upload is catalogued.
    done_asset_id    BIGINT,
    done_file_id     BIGINT
);
CREATE INDEX uploads_expires ON uploads(expires_ms);
