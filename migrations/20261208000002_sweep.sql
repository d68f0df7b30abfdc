-- Sweeping what ended jobs leave behind: a version whose job failed or was
-- cancelled keeps its uploaded data and prepared features until the sweep
-- removes them (`swept_at`); a layer never published loses the tiles its
-- cancelled or failed job wrote (`tiles_swept_at`, when that began: the
-- layer's next job waits a lease after it, so no tile it writes is deleted).
ALTER TABLE layer_versions ADD COLUMN swept_at timestamptz;
ALTER TABLE layer_versions ADD COLUMN tiles_swept_at timestamptz;
