-- Sweeping what ended jobs leave behind (see the PostgreSQL migration of the
-- same name).
ALTER TABLE layer_versions ADD COLUMN swept_at text;
ALTER TABLE layer_versions ADD COLUMN tiles_swept_at text;
