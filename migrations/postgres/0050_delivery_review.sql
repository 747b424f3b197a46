-- Deliveries to declared destinations, recorded on the asset: what went where (files, names,
-- sizes, SHA-256), when, and how it was verified (`result`, from the delivery job).
CREATE TABLE deliveries (
    id           BIGSERIAL PRIMARY KEY,
    asset_id     BIGINT NOT NULL,
    destination  TEXT NOT NULL,
    kind         TEXT NOT NULL,
    state        TEXT NOT NULL,
    job_id       BIGINT,
    requested_by BIGINT,
    files        TEXT NOT NULL DEFAULT '[]',
    result       TEXT NOT NULL DEFAULT '',
    error        TEXT NOT NULL DEFAULT '',
    created_ms   BIGINT NOT NULL,
    finished_ms  BIGINT
);
CREATE INDEX deliveries_asset ON deliveries(asset_id, id);
CREATE UNIQUE INDEX deliveries_job ON deliveries(job_id);

-- Review and approval of an asset (file_id 0) or one rendition: the present state, and every
-- decision in order.
CREATE TABLE reviews (
    asset_id     BIGINT NOT NULL,
    file_id      BIGINT NOT NULL DEFAULT 0,
    state        TEXT NOT NULL,
    by_user      BIGINT,
    reason       TEXT NOT NULL DEFAULT '',
    updated_ms   BIGINT NOT NULL,
    PRIMARY KEY (asset_id, file_id)
);
CREATE TABLE review_history (
    id           BIGSERIAL PRIMARY KEY,
    asset_id     BIGINT NOT NULL,
    file_id      BIGINT NOT NULL DEFAULT 0,
    state        TEXT NOT NULL,
    by_user      BIGINT,
    reason       TEXT NOT NULL DEFAULT '',
    at_ms        BIGINT NOT NULL
);
CREATE INDEX review_history_asset ON review_history(asset_id, id);
-- Comments anchored at a timecode (and its frame count from the start of the programme).
CREATE TABLE review_comments (
    id           BIGSERIAL PRIMARY KEY,
    asset_id     BIGINT NOT NULL,
    file_id      BIGINT NOT NULL DEFAULT 0,
    user_id      BIGINT NOT NULL,
    timecode     TEXT NOT NULL,
    frame        BIGINT NOT NULL,
    body         TEXT NOT NULL,
    created_ms   BIGINT NOT NULL
);
CREATE INDEX review_comments_asset ON review_comments(asset_id, frame, id);
