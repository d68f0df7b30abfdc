-- The job store: layers and their versions, jobs, their tasks, and the outbox
-- that carries work to the queue.

-- A layer is what uploads and edits build. It is visible to map clients only
-- once a version of it has been published (fully rendered).
CREATE TABLE layers (
    id                uuid PRIMARY KEY,
    name              text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    min_zoom          smallint NOT NULL CHECK (min_zoom BETWEEN 0 AND 24),
    max_zoom          smallint NOT NULL CHECK (max_zoom BETWEEN min_zoom AND 24),
    style             jsonb NOT NULL,
    published_version integer,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now()
);

-- Each upload or edit makes a new version; the data itself is in object storage.
CREATE TABLE layer_versions (
    layer_id      uuid NOT NULL REFERENCES layers (id) ON DELETE CASCADE,
    version       integer NOT NULL CHECK (version >= 1),
    source_key    text NOT NULL,
    prepared_key  text,
    feature_count bigint,
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (layer_id, version)
);

-- A job turns one layer version into tiles. Progress counts tiles.
CREATE TABLE jobs (
    id            uuid PRIMARY KEY,
    layer_id      uuid NOT NULL REFERENCES layers (id) ON DELETE CASCADE,
    version       integer NOT NULL,
    kind          text NOT NULL CHECK (kind IN ('upload', 'edit', 'rerender')),
    state         text NOT NULL DEFAULT 'queued'
                  CHECK (state IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
    stage         text NOT NULL DEFAULT 'queued',
    tiles_total   bigint CHECK (tiles_total >= 0),
    tiles_done    bigint NOT NULL DEFAULT 0 CHECK (tiles_done >= 0),
    error_code    text,
    error_message text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    started_at    timestamptz,
    finished_at   timestamptz,
    updated_at    timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (layer_id, version) REFERENCES layer_versions (layer_id, version)
);
CREATE INDEX jobs_by_state ON jobs (state, created_at);
CREATE INDEX jobs_by_layer ON jobs (layer_id, created_at);

-- A task is one unit of work on the queue: ingest, plan, or render one metatile.
-- Completing a task is idempotent: only the first completion adds its tiles.
CREATE TABLE tasks (
    id         uuid PRIMARY KEY,
    job_id     uuid NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    kind       text NOT NULL CHECK (kind IN ('ingest', 'plan', 'render', 'edit')),
    z          smallint,
    x          integer,
    y          integer,
    n          integer,
    tiles      integer NOT NULL DEFAULT 0 CHECK (tiles >= 0),
    state      text NOT NULL DEFAULT 'pending'
               CHECK (state IN ('pending', 'done', 'failed', 'cancelled')),
    attempts   integer NOT NULL DEFAULT 0,
    last_error text,
    created_at timestamptz NOT NULL DEFAULT now(),
    done_at    timestamptz
);
CREATE INDEX tasks_by_job ON tasks (job_id, state);

-- Messages committed with the state they announce; a relay publishes them to
-- the broker and marks them, so a crash between commit and publish loses nothing.
CREATE TABLE outbox (
    id           bigserial PRIMARY KEY,
    queue        text NOT NULL,
    payload      jsonb NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    published_at timestamptz
);
CREATE INDEX outbox_unpublished ON outbox (id) WHERE published_at IS NULL;
