-- Upkeep of metric chunks at high rates (consumers/_maintenance.py, docs/DESIGN.md "Storage").

-- Compaction merges a series' small chunks by joining their arrays whole rather than by opening
-- them value by value: an aggregate that concatenates one-dimensional arrays in the order given.
CREATE AGGREGATE chunk_concat(anycompatiblearray) (SFUNC = array_cat, STYPE = anycompatiblearray);

-- No statistics on the value arrays: nothing filters on their elements, and ANALYZE opening
-- 30,000 sampled chunks of hundreds of values each (most-common elements of five arrays) took a
-- core for twenty seconds every minute of a busy month. Existing partitions take it from the
-- parent; new ones are given it where they are made.
ALTER TABLE metric_chunks
    ALTER steps SET STATISTICS 0, ALTER times SET STATISTICS 0, ALTER vals SET STATISTICS 0,
    ALTER seqs SET STATISTICS 0, ALTER idxs SET STATISTICS 0;

CREATE OR REPLACE FUNCTION metric_chunks_partition(at timestamptz) RETURNS text
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
            'ALTER idxs SET COMPRESSION lz4, ALTER steps SET STATISTICS 0, '
            'ALTER times SET STATISTICS 0, ALTER vals SET STATISTICS 0, '
            'ALTER seqs SET STATISTICS 0, ALTER idxs SET STATISTICS 0', part);
    END IF;
    RETURN part;
END
$$;
