-- Edits and replacements (see the PostgreSQL migration of the same name): tasks
-- gain `dirty`, `replaces`, `claimed_at` and `changed`, and the kind `invalidate`. SQLite cannot change a
-- CHECK constraint, so the table is rebuilt.
CREATE TABLE tasks_new (
    id         blob PRIMARY KEY,
    job_id     blob NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    kind       text NOT NULL CHECK (kind IN ('ingest', 'plan', 'render', 'edit', 'invalidate')),
    z          integer,
    x          integer,
    y          integer,
    n          integer,
    tiles      integer NOT NULL DEFAULT 0 CHECK (tiles >= 0),
    state      text NOT NULL DEFAULT 'pending'
               CHECK (state IN ('pending', 'done', 'failed', 'cancelled')),
    attempts   integer NOT NULL DEFAULT 0,
    last_error text,
    created_at text NOT NULL,
    done_at    text,
    dirty      blob,
    replaces   integer NOT NULL DEFAULT 0,
    claimed_at text,
    changed    blob
);
INSERT INTO tasks_new (id, job_id, kind, z, x, y, n, tiles, state, attempts, last_error,
                       created_at, done_at)
    SELECT id, job_id, kind, z, x, y, n, tiles, state, attempts, last_error, created_at, done_at
    FROM tasks;
DROP TABLE tasks;
ALTER TABLE tasks_new RENAME TO tasks;
CREATE INDEX tasks_by_job ON tasks (job_id, state);
CREATE INDEX jobs_live_by_layer ON jobs (layer_id, version) WHERE state IN ('queued', 'running');
