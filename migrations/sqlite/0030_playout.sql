-- Playout channels (declared in antenne.toml or made over the API: settings as JSON, origin
-- `config` or `api`, whether it should air), each channel's rundown (its items as JSON, with a
-- version that increases with each change), and the as-run log (what aired, to the frame).
CREATE TABLE playout_channels (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    name        TEXT NOT NULL UNIQUE,
    settings    TEXT NOT NULL,
    origin      TEXT NOT NULL,
    running     INTEGER NOT NULL DEFAULT 0,
    created_ms  INTEGER NOT NULL,
    updated_ms  INTEGER NOT NULL
);

CREATE TABLE playout_schedules (
    channel_id  INTEGER PRIMARY KEY REFERENCES playout_channels(id) ON DELETE CASCADE,
    items       TEXT NOT NULL,
    version     INTEGER NOT NULL,
    updated_ms  INTEGER NOT NULL
);

CREATE TABLE playout_asrun (
    id                    INTEGER PRIMARY KEY AUTOINCREMENT,
    channel_id            INTEGER NOT NULL REFERENCES playout_channels(id) ON DELETE CASCADE,
    item                  TEXT NOT NULL,
    kind                  TEXT NOT NULL,
    title                 TEXT NOT NULL,
    asset_id              INTEGER,
    house_id              TEXT NOT NULL,
    scheduled_start_frame INTEGER NOT NULL,
    scheduled_frames      INTEGER NOT NULL,
    actual_start_frame    INTEGER NOT NULL,
    actual_frames         INTEGER NOT NULL,
    substitution          TEXT,
    recorded_ms           INTEGER NOT NULL
);
CREATE INDEX playout_asrun_channel ON playout_asrun(channel_id, actual_start_frame);
