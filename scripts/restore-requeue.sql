-- After a restore (docs/operations.md, "Backup and restore"): puts the work of
-- the jobs that were under way when the database was dumped back on its way to
-- the broker.
--
-- A task's message is written to the outbox in the transaction that creates
-- the task, and the outbox relay marks it published once RabbitMQ has it. The
-- dump keeps those marks, but a restored farm's broker holds none of the old
-- messages: without this, a job that was queued or running at the dump would
-- wait for ever. This marks the latest message of every pending task of such a
-- job unpublished again, so the first relay to start (every `tilefarm serve`
-- and `tilefarm worker` runs one) publishes it to the new broker.
--
-- Safe to run more than once and with the farm running: a task delivered twice
-- is done once (its tiles count once, and a render compares each tile with the
-- one stored). A job waiting behind another job of its layer (stage `waiting`)
-- has no message yet, and gets one when the job before it ends.
--
-- Run it on the restored database, before the farm starts on it:
--   psql -X -v ON_ERROR_STOP=1 -d "$TILEFARM_DATABASE_URL" -f scripts/restore-requeue.sql
-- It prints how many tasks it put back.

WITH latest AS (
    SELECT max(o.id) AS id
    FROM outbox o
    JOIN tasks t ON t.id = (o.payload ->> 'task')::uuid
    JOIN jobs j ON j.id = t.job_id
    WHERE t.state = 'pending'
      AND j.state IN ('queued', 'running')
    GROUP BY t.id
),
requeued AS (
    UPDATE outbox o
    SET published_at = NULL
    FROM latest
    WHERE o.id = latest.id
      AND o.published_at IS NOT NULL
    RETURNING o.id
)
SELECT count(*) AS tasks_requeued FROM requeued;
