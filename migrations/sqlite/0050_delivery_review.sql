-- Deliveries to declared destinations, recorded on the asset: what went where (files, names,
-- sizes, SHA-256), when, and how it was verified (`result`, from the delivery job).
CREATE TABLE deliveries (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    asset_id     INTEGER NOT NULL,
    destination  TEXT NOT NULL,
    kind         TEXT NOT NULL,
    state        TEXT NOT NULL,
    job_id       INTEGER,
    requested_by INTEGER,
    files        TEXT NOT NULL DEFAULT '[]',
    result       TEXT NOT NULL DEFAULT '',
    error        TEXT NOT NULL DEFAULT '',
    created_ms   INTEGER NOT NULL,
    finished_ms  INTEGER
);
CREATE INDEX deliveries_asset ON deliveries(asset_id, id);
CREATE UNIQUE INDEX deliveries_job ON deliveries(job_id);

-- Review and approval of an asset (file_id 0) or one rendition: the present state, and every
-- decision in order.
CREATE TABLE reviews (
    asset_id     INTEGER NOT NULL,
    file_id      INTEGER NOT NULL DEFAULT 0,
    state        TEXT NOT NULL,
    by_user      INTEGER,
    reason       TEXT NOT NULL DEFAULT '',
    updated_ms   INTEGER NOT NULL,
    PRIMARY KEY (asset_id, file_id)
);
CREATE TABLE review_history (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    asset_id     INTEGER NOT NULL,
    file_id      INTEGER NOT NULL DEFAULT 0,
    state        TEXT NOT NULL,
    by_user      INTEGER,
    reason       TEXT NOT NULL DEFAULT '',
    at_ms        INTEGER NOT NULL
);
CREATE INDEX review_history_asset ON review_history(asset_id, id);
-- Comments anchored at a timecode (and its frame count from the start of the programme).
CREATE TABLE review_comments (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    asset_id     INTEGER NOT NULL,
    file_id      INTEGER NOT NULL DEFAULT 0,
    user_id      INTEGER NOT NULL,
    timecode     TEXT NOT NULL,
    frame        INTEGER NOT NULL,
    body         TEXT NOT NULL,
    created_ms   INTEGER NOT NULL
);
CREATE INDEX review_comments_asset ON review_comments(asset_id, frame, id);
