-- Dead letters. A task whose message went to the dead-letter queue records when
-- (`dead_at`) and why (`dead_reason`), and its failed attempts when they began
-- and last happened. `replays` counts the times `tilefarm dlq replay` put it back
-- to work; each message of the task carries the count, so a dead letter from
-- before a replay is known as stale.
ALTER TABLE tasks ADD COLUMN first_failed_at timestamptz;
ALTER TABLE tasks ADD COLUMN last_failed_at timestamptz;
ALTER TABLE tasks ADD COLUMN dead_at timestamptz;
ALTER TABLE tasks ADD COLUMN dead_reason text;
ALTER TABLE tasks ADD COLUMN replays integer NOT NULL DEFAULT 0 CHECK (replays >= 0);
CREATE INDEX tasks_dead ON tasks (job_id) WHERE dead_at IS NOT NULL;
