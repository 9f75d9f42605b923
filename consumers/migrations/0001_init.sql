-- runstream schema, version 1. Every event-derived row carries the event identity
-- (producer_id, seq[, idx]) inside its unique key, so redelivery and spool replay insert nothing twice.

CREATE TABLE experiments (
    name        text PRIMARY KEY,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE runs (
    run_id             text PRIMARY KEY,
    experiment         text NOT NULL,
    name               text,
    status             text NOT NULL DEFAULT 'running'
                       CHECK (status IN ('running', 'completed', 'failed', 'canceled', 'stalled', 'lost')),
    status_reason      text,
    started_at         timestamptz,
    ended_at           timestamptz,
    world_size         integer NOT NULL DEFAULT 1,
    params             jsonb NOT NULL DEFAULT '{}',
    tags               jsonb NOT NULL DEFAULT '{}',
    host               text,
    pid                integer,
    command            text,
    git_commit         text,
    last_heartbeat_at  timestamptz,
    last_progress_at   timestamptz,
    last_step          bigint,
    expect_next_in     double precision,
    error              text,
    exit_code          integer,
    updated_at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX runs_experiment_started ON runs (experiment, started_at DESC);
CREATE INDEX runs_live ON runs (status) WHERE status IN ('running', 'stalled', 'lost');

CREATE TABLE run_ranks (
    run_id             text NOT NULL,
    rank               integer NOT NULL,
    status             text NOT NULL DEFAULT 'running',
    host               text,
    pid                integer,
    last_heartbeat_at  timestamptz,
    last_progress_at   timestamptz,
    last_step          bigint,
    expect_next_in     double precision,
    straggling         boolean NOT NULL DEFAULT false,
    finished_at        timestamptz,
    exit_code          integer,
    reason             text,
    PRIMARY KEY (run_id, rank)
);

-- One row per logged scalar. The key leads with (run_id, name, step): one run's curve is one
-- index range scan, and the trailing identity makes replays idempotent while two genuine logs of
-- the same name at the same step both stay.
CREATE TABLE metrics (
    run_id       text NOT NULL,
    name         text NOT NULL,
    step         bigint NOT NULL,
    rank         integer NOT NULL,
    time         timestamptz NOT NULL,
    value        double precision NOT NULL,
    producer_id  uuid NOT NULL,
    seq          bigint NOT NULL,
    idx          integer NOT NULL,
    PRIMARY KEY (run_id, name, step, producer_id, seq, idx)
);

-- Last value of each (run, rank, metric), kept by persist: the exporter's rebuild and summaries.
CREATE TABLE metric_latest (
    run_id  text NOT NULL,
    name    text NOT NULL,
    rank    integer NOT NULL,
    step    bigint NOT NULL,
    time    timestamptz NOT NULL,
    value   double precision NOT NULL,
    count   bigint NOT NULL DEFAULT 0,
    min     double precision,
    max     double precision,
    PRIMARY KEY (run_id, name, rank)
);

CREATE TABLE text_metrics (
    run_id       text NOT NULL,
    name         text NOT NULL,
    step         bigint NOT NULL,
    rank         integer NOT NULL,
    time         timestamptz NOT NULL,
    value        text NOT NULL,
    producer_id  uuid NOT NULL,
    seq          bigint NOT NULL,
    PRIMARY KEY (run_id, name, step, producer_id, seq)
);

CREATE TABLE table_rows (
    run_id       text NOT NULL,
    table_name   text NOT NULL,
    rank         integer NOT NULL,
    time         timestamptz NOT NULL,
    row_data     jsonb NOT NULL,
    producer_id  uuid NOT NULL,
    seq          bigint NOT NULL,
    PRIMARY KEY (run_id, table_name, producer_id, seq)
);

CREATE TABLE files (
    run_id       text NOT NULL,
    name         text NOT NULL,
    rank         integer NOT NULL,
    step         bigint,
    time         timestamptz NOT NULL,
    media_type   text NOT NULL,
    size         integer NOT NULL,
    data         bytea NOT NULL,
    producer_id  uuid NOT NULL,
    seq          bigint NOT NULL,
    PRIMARY KEY (run_id, name, producer_id, seq)
);

CREATE TABLE log_records (
    run_id       text NOT NULL,
    rank         integer NOT NULL,
    time         timestamptz NOT NULL,
    level        text NOT NULL,
    logger       text NOT NULL,
    message      text NOT NULL,
    producer_id  uuid NOT NULL,
    seq          bigint NOT NULL,
    PRIMARY KEY (run_id, time, producer_id, seq)
);

-- Every status change, from the run itself or from the watchdog.
CREATE TABLE status_events (
    run_id       text NOT NULL,
    rank         integer NOT NULL,
    time         timestamptz NOT NULL,
    state        text NOT NULL,
    reason       text,
    exit_code    integer,
    source       text NOT NULL,
    producer_id  uuid NOT NULL,
    seq          bigint NOT NULL,
    PRIMARY KEY (run_id, time, producer_id, seq)
);

-- Grafana and CLI reads use the read-only role (created by the deployment, e.g. `runstream stack`).
-- Where it exists it may read every table, including those later migrations create.
DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'runstream_reader') THEN
        EXECUTE format('GRANT SELECT ON ALL TABLES IN SCHEMA %I TO runstream_reader',
                       current_schema());
        EXECUTE format('ALTER DEFAULT PRIVILEGES IN SCHEMA %I GRANT SELECT ON TABLES TO runstream_reader',
                       current_schema());
    END IF;
END
$$;
