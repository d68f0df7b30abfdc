-- The embedded job store (SQLite): the same tables as the PostgreSQL schema in
-- the folder above, for `tilefarm serve` with no database configured. UUIDs are
-- 16-byte blobs, times RFC 3339 text, JSON text.

CREATE TABLE layers (
    id                blob PRIMARY KEY,
    name              text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    min_zoom          integer NOT NULL CHECK (min_zoom BETWEEN 0 AND 24),
    max_zoom          integer NOT NULL CHECK (max_zoom BETWEEN min_zoom AND 24),
    style             text NOT NULL,
    published_version integer,
    created_at        text NOT NULL,
    updated_at        text NOT NULL
);

CREATE TABLE layer_versions (
    layer_id      blob NOT NULL REFERENCES layers (id) ON DELETE CASCADE,
    version       integer NOT NULL CHECK (version >= 1),
    source_key    text NOT NULL,
    prepared_key  text,
    feature_count integer,
    bounds        text,
    created_at    text NOT NULL,
    PRIMARY KEY (layer_id, version)
);

CREATE TABLE jobs (
    id            blob PRIMARY KEY,
    layer_id      blob NOT NULL REFERENCES layers (id) ON DELETE CASCADE,
    version       integer NOT NULL,
    kind          text NOT NULL CHECK (kind IN ('upload', 'edit', 'rerender')),
    state         text NOT NULL DEFAULT 'queued'
                  CHECK (state IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
    stage         text NOT NULL DEFAULT 'queued',
    tiles_total   integer CHECK (tiles_total >= 0),
    tiles_done    integer NOT NULL DEFAULT 0 CHECK (tiles_done >= 0),
    error_code    text,
    error_message text,
    created_at    text NOT NULL,
    started_at    text,
    finished_at   text,
    updated_at    text NOT NULL,
    FOREIGN KEY (layer_id, version) REFERENCES layer_versions (layer_id, version)
);
CREATE INDEX jobs_by_state ON jobs (state, created_at);

CREATE TABLE tasks (
    id         blob PRIMARY KEY,
    job_id     blob NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    kind       text NOT NULL CHECK (kind IN ('ingest', 'plan', 'render', 'edit')),
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
    done_at    text
);
CREATE INDEX tasks_by_job ON tasks (job_id, state);

CREATE TABLE outbox (
    id           integer PRIMARY KEY AUTOINCREMENT,
    queue        text NOT NULL,
    payload      text NOT NULL,
    created_at   text NOT NULL,
    published_at text
);
CREATE INDEX outbox_unpublished ON outbox (id) WHERE published_at IS NULL;
