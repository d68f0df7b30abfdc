-- Deliveries of a task's current message that never settled (the process
-- running it stopped or crashed each time). The embedded queue keeps this
-- count across restarts, as RabbitMQ's quorum queues keep theirs, so a task
-- that crashes its process is dead-lettered past the delivery limit instead of
-- crashing every restart. A settled attempt or a replay starts it again.
ALTER TABLE tasks ADD COLUMN deliveries integer NOT NULL DEFAULT 0 CHECK (deliveries >= 0);
