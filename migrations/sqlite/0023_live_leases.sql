-- Which appliance runs a live source or output when several share one catalog: the holder's
-- name and when its lease ends unless renewed. A row without a live lease is free to take.
CREATE TABLE live_leases (
    object      TEXT NOT NULL,
    object_id   BIGINT NOT NULL,
    owner       TEXT NOT NULL,
    expires_ms  BIGINT NOT NULL,
    PRIMARY KEY (object, object_id)
);
CREATE INDEX live_leases_owner ON live_leases(owner);
