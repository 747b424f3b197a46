-- Resumable uploads (tus 1.0): one row per upload until it completes into the catalog, is
-- terminated, or expires. The bytes received so far lie in media/incoming/.tus-<id>.part;
-- `received` is how many of them are durable (the part file was fsynced up to there first).
CREATE TABLE uploads (
    id               TEXT PRIMARY KEY,
    user_id          INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    -- The asset the file is added to; NULL = a new asset is made at completion.
    asset_id         INTEGER,
    length           INTEGER NOT NULL,
    received         INTEGER NOT NULL DEFAULT 0,
    filename         TEXT NOT NULL,
    role             TEXT NOT NULL,
    title            TEXT,
    kind             TEXT,
    allow_duplicate  INTEGER NOT NULL DEFAULT 0,
    -- The Upload-Metadata header as the client sent it, given back on HEAD.
    metadata         TEXT NOT NULL DEFAULT '',
    created_ms       INTEGER NOT NULL,
    updated_ms       INTEGER NOT NULL,
    expires_ms       INTEGER NOT NULL,
    -- Set once the upload is catalogued.
    done_asset_id    INTEGER,
    done_file_id     INTEGER
);
CREATE INDEX uploads_expires ON uploads(expires_ms);
