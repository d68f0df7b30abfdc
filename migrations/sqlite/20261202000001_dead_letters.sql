-- Dead letters (see the PostgreSQL migration of the same name).
ALTER TABLE tasks ADD COLUMN first_failed_at text;
ALTER TABLE tasks ADD COLUMN last_failed_at text;
ALTER TABLE tasks ADD COLUMN dead_at text;
ALTER TABLE tasks ADD COLUMN dead_reason text;
ALTER TABLE tasks ADD COLUMN replays integer NOT NULL DEFAULT 0 CHECK (replays >= 0);
