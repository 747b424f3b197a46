-- Playout channels (declared in antenne.toml or made over the API: settings as JSON, origin
-- `config` or `api`, whether it should air), each channel's rundown (its items as JSON, with a
-- version that increases with each change), and the as-run log (what aired, to the frame).
CREATE TABLE playout_channels (
    id          BIGSERIAL PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    settings    TEXT NOT NULL,
    origin      TEXT NOT NULL,
    running     BIGINT NOT NULL DEFAULT 0,
    created_ms  BIGINT NOT NULL,
    updated_ms  BIGINT NOT NULL
);

CREATE TABLE playout_schedules (
    channel_id  BIGINT PRIMARY KEY REFERENCES playout_channels(id) ON DELETE CASCADE,
    items       TEXT NOT NULL,
    version     BIGINT NOT NULL,
    updated_ms  BIGINT NOT NULL
);

CREATE TABLE playout_asrun (
    id                    BIGSERIAL PRIMARY KEY,
    channel_id            BIGINT NOT NULL REFERENCES playout_channels(id) ON DELETE CASCADE,
    item                  TEXT NOT NULL,
    kind                  TEXT NOT NULL,
    title                 TEXT NOT NULL,
    asset_id              BIGINT,
    house_id              TEXT NOT NULL,
    scheduled_start_frame BIGINT NOT NULL,
    scheduled_frames      BIGINT NOT NULL,
    actual_start_frame    BIGINT NOT NULL,
    actual_frames         BIGINT NOT NULL,
    substitution          TEXT,
    recorded_ms           BIGINT NOT NULL
);
CREATE INDEX playout_asrun_channel ON playout_asrun(channel_id, actual_start_frame);
