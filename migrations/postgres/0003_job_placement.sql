-- Where a job can run: gpu_only = 1 when every encode it makes can go to a GPU, so that it may
-- be claimed while the CPU encode slots are all busy; placed = where it ran last (a GPU id or
-- `cpu`), kept for the job list and for reporting devices that fail.
ALTER TABLE jobs ADD COLUMN gpu_only INTEGER NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN placed TEXT NOT NULL DEFAULT '';
