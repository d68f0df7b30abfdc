-- Deliveries of a task's current message that never settled (see the
-- PostgreSQL migration of the same name).
ALTER TABLE tasks ADD COLUMN deliveries integer NOT NULL DEFAULT 0 CHECK (deliveries >= 0);
