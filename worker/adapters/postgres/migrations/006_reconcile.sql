-- Reconciliation with Salesforce: every `worker reconcile` run and what it found (the last one is what the
-- metrics export: a CronJob's process exits), and the requests for one (a retention cliff: changes that expired
-- before ingest read them), which the next `worker reconcile` without --since/--full honours.
CREATE TABLE reconcile_runs (
    id          bigserial   PRIMARY KEY,
    mode        text        NOT NULL CHECK (mode IN ('full', 'incremental')),
    since       timestamptz,
    started_at  timestamptz NOT NULL,
    finished_at timestamptz NOT NULL DEFAULT now(),
    compared    bigint      NOT NULL DEFAULT 0,
    found       jsonb       NOT NULL DEFAULT '{}'::jsonb,   -- drift by kind when compared
    remaining   jsonb       NOT NULL DEFAULT '{}'::jsonb,   -- drift by kind left at the end
    repaired    bigint      NOT NULL DEFAULT 0,
    outcome     text        NOT NULL CHECK (outcome IN ('converged', 'drift', 'reported', 'failed')),
    error       text
);

CREATE TABLE reconcile_requests (
    id           bigserial   PRIMARY KEY,
    since        timestamptz,            -- NULL: nothing known to start from, a full reconcile
    reason       text        NOT NULL,
    requested_at timestamptz NOT NULL DEFAULT now(),
    done_at      timestamptz,
    done_by_run  bigint      REFERENCES reconcile_runs (id)
);
CREATE INDEX reconcile_requests_pending ON reconcile_requests (requested_at) WHERE done_at IS NULL;
