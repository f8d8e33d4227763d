-- Every `worker dlq replay` of a dead letter: who, when, what, and how it ended. Append-only.
CREATE TABLE dlq_replays (
    id              bigserial   PRIMARY KEY,
    replayed_at     timestamptz NOT NULL DEFAULT now(),
    operator        text        NOT NULL,
    note            text,
    dlq_topic       text        NOT NULL,
    dlq_partition   integer     NOT NULL,
    dlq_offset      bigint      NOT NULL,
    target_topic    text,
    target_partition integer,
    original_offset bigint,
    error_class     text        NOT NULL,
    replay_count    integer     NOT NULL,
    result          text        NOT NULL CHECK (result IN ('published', 'refused', 'failed')),
    detail          text
);

CREATE INDEX dlq_replays_record ON dlq_replays (dlq_topic, dlq_partition, dlq_offset);
