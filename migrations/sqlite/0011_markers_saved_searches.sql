-- Markers and sub-clips on an asset: a timecode in (and out, for a sub-clip) at the asset's
-- frame rate, kept as printed and as a frame count (for ordering), with a label, a colour and
-- a comment.
CREATE TABLE markers (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    asset_id    INTEGER NOT NULL REFERENCES assets(id) ON DELETE CASCADE,
    tc_in       TEXT NOT NULL,
    tc_out      TEXT,
    in_frame    INTEGER NOT NULL,
    out_frame   INTEGER,
    rate        TEXT NOT NULL,
    label       TEXT NOT NULL DEFAULT '',
    colour      TEXT NOT NULL DEFAULT '',
    comment     TEXT NOT NULL DEFAULT '',
    created_by  INTEGER,
    created_ms  INTEGER NOT NULL,
    updated_ms  INTEGER NOT NULL
);
CREATE INDEX markers_asset ON markers(asset_id, in_frame, id);

-- A user's saved searches: the query parameters of GET /v1/search, as JSON.
CREATE TABLE saved_searches (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id     INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    name        TEXT NOT NULL,
    query       TEXT NOT NULL,
    created_ms  INTEGER NOT NULL,
    updated_ms  INTEGER NOT NULL,
    UNIQUE (user_id, name)
);
