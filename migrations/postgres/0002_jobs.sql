-- Durable jobs (ingest, probe, QC, transcode, verify, deliver, purge, workflow steps) and the
-- watch-folder ledger that makes each file version taken exactly once.

CREATE TABLE jobs (
    id              BIGSERIAL PRIMARY KEY,
    kind            TEXT NOT NULL,
    state           TEXT NOT NULL,
    priority        BIGINT NOT NULL DEFAULT 0,
    attempts        BIGINT NOT NULL DEFAULT 0,
    max_attempts    BIGINT NOT NULL DEFAULT 3,
    run_after_ms    BIGINT NOT NULL,
    lease_until_ms  BIGINT,
    worker          TEXT NOT NULL DEFAULT '',
    asset_id        BIGINT,
    workflow        TEXT NOT NULL DEFAULT '',
    idempotency_key TEXT UNIQUE,
    params          TEXT NOT NULL DEFAULT '{}',
    result          TEXT NOT NULL DEFAULT '',
    error           TEXT NOT NULL DEFAULT '',
    progress        DOUBLE PRECISION NOT NULL DEFAULT 0,
    fps             DOUBLE PRECISION NOT NULL DEFAULT 0,
    speed           DOUBLE PRECISION NOT NULL DEFAULT 0,
    eta_s           DOUBLE PRECISION NOT NULL DEFAULT 0,
    created_ms      BIGINT NOT NULL,
    updated_ms      BIGINT NOT NULL,
    started_ms      BIGINT,
    finished_ms     BIGINT
);
CREATE INDEX jobs_ready ON jobs(state, priority, run_after_ms, id);
CREATE INDEX jobs_asset ON jobs(asset_id);

CREATE TABLE job_logs (
    id      BIGSERIAL PRIMARY KEY,
    job_id  BIGINT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    ts_ms   BIGINT NOT NULL,
    level   TEXT NOT NULL,
    message TEXT NOT NULL
);
CREATE INDEX job_logs_job ON job_logs(job_id, id);
