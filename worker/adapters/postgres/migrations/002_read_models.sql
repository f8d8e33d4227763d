-- Read models of the client projector. Each summary row keeps the version of the last applied event, so a
-- redelivered event is a no-op and a gap is detected.
CREATE TABLE client_summary (
    client_id            text        PRIMARY KEY,
    registered           boolean     NOT NULL DEFAULT false,
    name                 text,
    type                 text,
    status               text        NOT NULL DEFAULT 'unknown',
    industry             text,
    phone                text,
    website              text,
    billing_street       text,
    billing_city         text,
    billing_state        text,
    billing_postal_code  text,
    billing_country      text,
    billing_state_code   text,
    billing_country_code text,
    billing_latitude     double precision,
    billing_longitude    double precision,
    billing_geocode_accuracy text,
    owner_id             text,
    annual_revenue       double precision,
    employees            bigint,
    rating               text,
    account_source       text,
    parent_id            text,
    active               text,
    extra                jsonb       NOT NULL DEFAULT '{}'::jsonb,
    deleted              boolean     NOT NULL DEFAULT false,
    needs_resync         boolean     NOT NULL DEFAULT false,
    version              integer     NOT NULL,
    last_change_at       timestamptz,
    projected_at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX client_summary_status ON client_summary (status, client_id);
CREATE INDEX client_summary_type ON client_summary (type, client_id);
CREATE INDEX client_summary_industry ON client_summary (industry, client_id);
CREATE INDEX client_summary_country ON client_summary (billing_country, client_id);
CREATE INDEX client_summary_name ON client_summary (lower(name) text_pattern_ops, client_id);
CREATE INDEX client_summary_changed ON client_summary (last_change_at, client_id);

CREATE TABLE client_status_history (
    client_id   text        NOT NULL,
    version     integer     NOT NULL,
    old_status  text,
    new_status  text        NOT NULL,
    changed_at  timestamptz,
    event_id    text        NOT NULL,
    PRIMARY KEY (client_id, version)
);

CREATE VIEW client_status_counts AS
    SELECT status, count(*) AS clients
    FROM client_summary WHERE registered AND NOT deleted
    GROUP BY status;
