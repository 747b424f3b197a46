-- Durable jobs (ingest, probe, QC, transcode, verify, deliver, purge, workflow steps) and the
-- watch-folder ledger that makes each file version taken exactly once.

CREATE TABLE jobs (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    kind            TEXT NOT NULL,
    state           TEXT NOT NULL,
    priority        INTEGER NOT NULL DEFAULT 0,
    attempts        INTEGER NOT NULL DEFAULT 0,
    max_attempts    INTEGER NOT NULL DEFAULT 3,
    run_after_ms    INTEGER NOT NULL,
    lease_until_ms  INTEGER,
    worker          TEXT NOT NULL DEFAULT '',
    asset_id        INTEGER,
    workflow        TEXT NOT NULL DEFAULT '',
    idempotency_key TEXT UNIQUE,
    params          TEXT NOT NULL DEFAULT '{}',
    result          TEXT NOT NULL DEFAULT '',
    error           TEXT NOT NULL DEFAULT '',
    progress        REAL NOT NULL DEFAULT 0,
    fps             REAL NOT NULL DEFAULT 0,
    speed           REAL NOT NULL DEFAULT 0,
    eta_s           REAL NOT NULL DEFAULT 0,
    created_ms      INTEGER NOT NULL,
    updated_ms      INTEGER NOT NULL,
    started_ms      INTEGER,
    finished_ms     INTEGER
);
CREATE INDEX jobs_ready ON jobs(state, priority, run_after_ms, id);
CREATE INDEX jobs_asset ON jobs(asset_id);

CREATE TABLE job_logs (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id  INTEGER NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    ts_ms   INTEGER NOT NULL,
    level   TEXT NOT NULL,
    message TEXT NOT NULL
);
CREATE INDEX job_logs_job ON job_logs(job_id, id);
