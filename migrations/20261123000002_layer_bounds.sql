-- The extent of each layer version's data, [west, south, east, north] in degrees,
-- recorded at ingest for TileJSON.
ALTER TABLE layer_versions ADD COLUMN bounds jsonb;
