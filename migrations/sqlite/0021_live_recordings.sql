-- Recordings of live sources: one row per piece (a recording cut at segment_s makes several),
-- each with its asset and file. `recording` while it grows (the service closes such a piece
-- when it starts again), then `done` or `failed` (the written part kept as an asset).
CREATE TABLE live_recordings (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    source_id   INTEGER NOT NULL,
    source_name TEXT NOT NULL,
    session     TEXT NOT NULL,
    piece       INTEGER NOT NULL,
    asset_id    INTEGER NOT NULL,
    file_id     INTEGER NOT NULL,
    path        TEXT NOT NULL,
    state       TEXT NOT NULL,
    bytes       INTEGER NOT NULL DEFAULT 0,
    duration_s  REAL NOT NULL DEFAULT 0,
    error       TEXT NOT NULL DEFAULT '',
    workflow    TEXT NOT NULL DEFAULT '',
    started_ms  INTEGER NOT NULL,
    updated_ms  INTEGER NOT NULL,
    ended_ms    INTEGER
);
CREATE INDEX live_recordings_source ON live_recordings(source_id, id);
CREATE INDEX live_recordings_state ON live_recordings(state);
