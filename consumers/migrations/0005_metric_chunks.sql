-- Metric values stored in chunks: one row holds a run of values of one series (run, metric,
-- rank) from one producer session, as arrays in log order, so a value costs its own bytes
-- (step, time, value, seq, idx) and not a row header and index entry of its own. A chunk also
-- holds its extremes (the lowest and highest value, each with its step: PostgreSQL's order, NaN
-- highest), so a downsampled read uses a chunk whole when it lies inside one step bucket.
--
-- Chunks are partitioned by month of their first value's time (`time_lo`, UTC), so retention
-- drops whole partitions. Rows big enough to be toasted (about 60 values and more) are
-- compressed with lz4; persist's small per-batch chunks are merged by compaction.
--
-- Exactly-once stays by event identity: every chunk of a run is written under that run's row
-- lock (persist locks the batch's runs first), `metric_marks` holds the highest Metrics seq
-- stored per (run, producer session), and an event at or below its mark is looked up among the
-- stored chunks before anything of it is written. Every key leads with run_id (Citus: distribute
-- every table by run_id; `experiments` a reference table).
--
-- `metrics` stays, as a view with the columns of the table it replaces.

CREATE TABLE metric_chunks (
    run_id       text COLLATE "C" NOT NULL,
    name         text COLLATE "C" NOT NULL,
    rank         integer NOT NULL,
    producer_id  uuid NOT NULL,
    time_lo      timestamptz NOT NULL,
    step_lo      bigint NOT NULL,
    step_hi      bigint NOT NULL,
    seq_lo       bigint NOT NULL,
    seq_hi       bigint NOT NULL,
    n            integer NOT NULL CHECK (n > 0),
    lo           double precision NOT NULL,
    lo_step      bigint NOT NULL,
    hi           double precision NOT NULL,
    hi_step      bigint NOT NULL,
    steps        bigint[] NOT NULL,
    times        timestamptz[] NOT NULL,
    vals         double precision[] NOT NULL,
    seqs         bigint[] NOT NULL,
    idxs         integer[] NOT NULL
) PARTITION BY RANGE (time_lo);
CREATE INDEX metric_chunks_curve ON metric_chunks (run_id, name, rank, step_lo);
CREATE INDEX metric_chunks_identity ON metric_chunks (run_id, producer_id, seq_hi);

CREATE TABLE metric_marks (
    run_id       text COLLATE "C" NOT NULL,
    producer_id  uuid NOT NULL,
    seq_hi       bigint NOT NULL,
    PRIMARY KEY (run_id, producer_id)
);

-- The partition of `metric_chunks` for the month holding `at` (UTC), created when missing;
-- returns its name. Persist calls it before writing a month it has not seen.
CREATE FUNCTION metric_chunks_partition(at timestamptz) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    first timestamptz := date_trunc('month', at, 'UTC');
    part text := 'metric_chunks_' || to_char(first AT TIME ZONE 'UTC', 'YYYYMM');
BEGIN
    IF to_regclass(part) IS NULL THEN
        EXECUTE format(
            'CREATE TABLE IF NOT EXISTS %I PARTITION OF metric_chunks '
            'FOR VALUES FROM (%L) TO (%L) WITH (toast_tuple_target = 256)',
            part, first, first + interval '1 month');
        EXECUTE format(
            'ALTER TABLE %I ALTER steps SET COMPRESSION lz4, ALTER times SET COMPRESSION lz4, '
            'ALTER vals SET COMPRESSION lz4, ALTER seqs SET COMPRESSION lz4, '
            'ALTER idxs SET COMPRESSION lz4', part);
    END IF;
    RETURN part;
END
$$;

SELECT metric_chunks_partition(m)
FROM (SELECT DISTINCT date_trunc('month', time, 'UTC') AS m FROM metrics) months;

INSERT INTO metric_chunks
SELECT run_id, name, rank, producer_id, min(time), min(step), max(step), min(seq), max(seq),
       count(*), (min(ARRAY[value, step::float8]))[1], (min(ARRAY[value, step::float8]))[2],
       (max(ARRAY[value, step::float8]))[1], (max(ARRAY[value, step::float8]))[2],
       array_agg(step ORDER BY seq, idx), array_agg(time ORDER BY seq, idx),
       array_agg(value ORDER BY seq, idx), array_agg(seq ORDER BY seq, idx),
       array_agg(idx ORDER BY seq, idx)
FROM (
    SELECT *, (row_number() OVER (PARTITION BY run_id, name, rank, producer_id
                                  ORDER BY seq, idx) - 1) / 1000 AS part
    FROM metrics
) numbered
GROUP BY run_id, name, rank, producer_id, part;

INSERT INTO metric_marks SELECT run_id, producer_id, max(seq) FROM metrics GROUP BY 1, 2;

DROP TABLE metrics;

CREATE VIEW metrics AS
SELECT c.run_id, c.name, v.step, c.rank, v.time, v.value, c.producer_id, v.seq, v.idx
FROM metric_chunks c, unnest(c.steps, c.times, c.vals, c.seqs, c.idxs)
     AS v(step, time, value, seq, idx);

DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'runstream_reader') THEN
        GRANT SELECT ON metric_chunks, metric_marks, metrics TO runstream_reader;
    END IF;
END
$$;
