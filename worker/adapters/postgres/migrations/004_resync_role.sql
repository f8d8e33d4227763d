-- The resync role: requests are claimed by one worker for a lease (FOR UPDATE SKIP LOCKED), retried with
-- backoff up to a cap, then shown as failing; a renewed request gets a new generation, and completing an
-- older generation leaves it queued.
CREATE SEQUENCE resync_generation;
ALTER TABLE resync_requests
    ADD COLUMN generation      bigint      NOT NULL DEFAULT nextval('resync_generation'),
    ADD COLUMN next_attempt_at timestamptz NOT NULL DEFAULT now(),
    ADD COLUMN claimed_by      text,
    ADD COLUMN claimed_until   timestamptz;
CREATE INDEX resync_requests_due ON resync_requests (next_attempt_at, requested_at);

-- A full resync reads every Account through one Bulk API query job, page by page; each page's events, its
-- cursor and the ids it saw commit together, so a restarted worker resumes after the last page. The same
-- overflow delivered twice (source_key) queues one request; a pending one absorbs the next.
ALTER TABLE full_resync_requests
    ADD COLUMN source_key      text UNIQUE,
    ADD COLUMN phase           text        NOT NULL DEFAULT 'pending'
        CHECK (phase IN ('pending', 'scanning', 'sweeping', 'done')),
    ADD COLUMN scan_id         text,
    ADD COLUMN cursor          text,
    ADD COLUMN started_at      timestamptz,
    ADD COLUMN pages           integer     NOT NULL DEFAULT 0,
    ADD COLUMN records         bigint      NOT NULL DEFAULT 0,
    ADD COLUMN next_attempt_at timestamptz NOT NULL DEFAULT now(),
    ADD COLUMN claimed_by      text,
    ADD COLUMN claimed_until   timestamptz;

CREATE TABLE full_resync_seen (
    request_id bigint NOT NULL REFERENCES full_resync_requests (id) ON DELETE CASCADE,
    client_id  text   NOT NULL,
    PRIMARY KEY (request_id, client_id)
);
