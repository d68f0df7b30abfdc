-- Edits and replacements re-render a published layer in place. A render task
-- may rewrite only some tiles of its metatile (`dirty`: one bit per tile, row by
-- row, lowest bit first; NULL for all of them), and a task that `replaces`
-- tiles deletes those that became empty. The last step of such a job tells the
-- CDN which tiles changed (an `invalidate` task).
ALTER TABLE tasks ADD COLUMN dirty bytea;
ALTER TABLE tasks ADD COLUMN replaces boolean NOT NULL DEFAULT false;
-- The tiles a task that replaces tiles found different and rewrote or deleted
-- (a mask like `dirty`): what the job reports to caches.
ALTER TABLE tasks ADD COLUMN changed bytea;
-- When a worker took the task. A render task of a job that ended while a worker
-- held it may still be writing tiles: the layer's next job waits for it (its
-- `done_at`) or for a lease to run out.
ALTER TABLE tasks ADD COLUMN claimed_at timestamptz;
ALTER TABLE tasks DROP CONSTRAINT tasks_kind_check;
ALTER TABLE tasks ADD CONSTRAINT tasks_kind_check
    CHECK (kind IN ('ingest', 'plan', 'render', 'edit', 'invalidate'));
-- Jobs of one layer run one at a time, in version order; the next waits with
-- stage 'waiting' until the one before it ends.
CREATE INDEX jobs_live_by_layer ON jobs (layer_id, version) WHERE state IN ('queued', 'running');
