-- Recordings of live sources: one row per piece (a recording cut at segment_s makes several),
-- each with its asset and file. `recording` while it grows (the service closes such a piece
-- when it starts again), then `done` or `failed` (the written part kept as an asset).
CREATE TABLE live_recordings (
    id          BIGSERIAL PRIMARY KEY,
    source_id   BIGINT NOT NULL,
    source_name TEXT NOT NULL,
    session     TEXT NOT NULL,
    piece       BIGINT NOT NULL,
    asset_id    BIGINT NOT NULL,
    file_id     BIGINT NOT NULL,
    path        TEXT NOT NULL,
    state       TEXT NOT NULL,
    bytes       BIGINT NOT NULL DEFAULT 0,
    duration_s  DOUBLE PRECISION NOT NULL DEFAULT 0,
    error       TEXT NOT NULL DEFAULT '',
    workflow    TEXT NOT NULL DEFAULT '',
    started_ms  BIGINT NOT NULL,
    updated_ms  BIGINT NOT NULL,
    ended_ms    BIGINT
);
CREATE INDEX live_recordings_source ON live_recordings(source_id, id);
CREATE INDEX live_recordings_state ON live_recordings(state);
