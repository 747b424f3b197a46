-- Live sources and the outputs attached to them (declared in antenne.toml or made over the
-- API): the kind, its settings as JSON, where it was declared (`config` or `api`) and whether
-- it should run, so that the service resumes it after a restart.
CREATE TABLE live_sources (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    name        TEXT NOT NULL UNIQUE,
    kind        TEXT NOT NULL,
    settings    TEXT NOT NULL,
    origin      TEXT NOT NULL,
    running     INTEGER NOT NULL DEFAULT 0,
    created_ms  INTEGER NOT NULL,
    updated_ms  INTEGER NOT NULL
);

CREATE TABLE live_outputs (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    name        TEXT NOT NULL UNIQUE,
    source_id   INTEGER NOT NULL REFERENCES live_sources(id),
    kind        TEXT NOT NULL,
    settings    TEXT NOT NULL,
    origin      TEXT NOT NULL,
    running     INTEGER NOT NULL DEFAULT 0,
    created_ms  INTEGER NOT NULL,
    updated_ms  INTEGER NOT NULL
);
CREATE INDEX live_outputs_source ON live_outputs(source_id);
