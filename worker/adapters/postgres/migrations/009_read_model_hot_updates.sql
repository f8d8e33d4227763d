-- The projector updates a client's summary row for every event, and every event moves last_change_at. With an
-- index on last_change_at no such update could be HOT (PostgreSQL 15 adds an entry to EVERY index of the table
-- when any indexed column changes): each event wrote the row and seven index entries. The index now covers the
-- UTC day of the last change instead, a column PostgreSQL derives from last_change_at on every write (so every
-- writer keeps it right, a projector of an earlier version too). It moves at most once a day per client: an
-- update that changes no indexed value (most of them: a phone, an address, the version and the two timestamps)
-- is HOT, one heap write. The day narrows `--changed-since` and the freshness query; last_change_at answers them.
ALTER TABLE client_summary
    ADD COLUMN last_change_day date GENERATED ALWAYS AS ((last_change_at AT TIME ZONE 'UTC')::date) STORED;
CREATE INDEX client_summary_changed_day ON client_summary (last_change_day, client_id);
DROP INDEX client_summary_changed;
