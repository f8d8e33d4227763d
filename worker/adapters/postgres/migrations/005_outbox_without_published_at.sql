-- The relay deletes a row once the broker acknowledged it (the outbox is a queue; the events table is the
-- record), so no row is ever "published": the column and its partial index only cost writes.
DROP INDEX IF EXISTS outbox_unpublished;
ALTER TABLE outbox DROP COLUMN IF EXISTS published_at;
