-- The check that keeps an escaped NUL out of a stored payload (migration 007) ran its regular expression over
-- every payload: a fifth of what PostgreSQL spent on each COPYed event (6.3 against 4.9 us a row without it). The
-- same check now looks for the six characters `\u0000` first (strpos, a plain substring search) and runs the
-- expression only on a payload that holds them: the same payloads pass and fail (5.2 us a row). NOT VALID, then
-- VALIDATE: the events already stored are checked without blocking writers.
ALTER TABLE events DROP CONSTRAINT events_payload_without_nul;
ALTER TABLE events ADD CONSTRAINT events_payload_without_nul
    CHECK (strpos(payload::text, '\u0000') = 0 OR payload::text !~ '(^|[^\\])(\\\\)*\\u0000') NOT VALID;
ALTER TABLE events VALIDATE CONSTRAINT events_payload_without_nul;
