-- Event store: one row per domain event; (stream_id, version) is the optimistic-concurrency guard.
CREATE TABLE events (
    global_position bigserial   NOT NULL UNIQUE,
    stream_id       text        NOT NULL,
    version         integer     NOT NULL CHECK (version > 0),
    event_id        uuid        NOT NULL UNIQUE,
    event_type      text        NOT NULL,
    schema_version  integer     NOT NULL,
    payload         jsonb       NOT NULL,
    metadata        jsonb       NOT NULL,
    recorded_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (stream_id, version)
);

CREATE TABLE snapshots (
    stream_id      text        NOT NULL,
    version        integer     NOT NULL,
    schema_version integer     NOT NULL,
    state          jsonb       NOT NULL,
    taken_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (stream_id, version)
);

-- Transactional outbox, written in the same transaction as the events. The relay publishes unpublished rows
-- in position order and marks them; it never tails by "position > last seen".
CREATE TABLE outbox (
    position       bigserial   PRIMARY KEY,
    event_id       uuid        NOT NULL UNIQUE,
    stream_id      text        NOT NULL,
    version        integer     NOT NULL,
    event_type     text        NOT NULL,
    schema_version integer     NOT NULL,
    payload        jsonb       NOT NULL,
    metadata       jsonb       NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    published_at   timestamptz
);
CREATE INDEX outbox_unpublished ON outbox (position) WHERE published_at IS NULL;

-- Clients waiting for a fetch from Salesforce (gap events, unknown clients, dead-lettered changes).
CREATE TABLE resync_requests (
    client_id    text        PRIMARY KEY,
    reason       text        NOT NULL,
    requested_at timestamptz NOT NULL DEFAULT now(),
    attempts     integer     NOT NULL DEFAULT 0,
    last_error   text
);

-- Overflow events and wildcard ids: re-read every Account.
CREATE TABLE full_resync_requests (
    id           bigserial   PRIMARY KEY,
    reason       text        NOT NULL,
    requested_at timestamptz NOT NULL DEFAULT now(),
    completed_at timestamptz,
    attempts     integer     NOT NULL DEFAULT 0,
    last_error   text
);
