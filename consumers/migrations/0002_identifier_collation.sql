-- Identifiers (run ids, experiments, metric and table names) compare byte by byte ("C" collation):
-- the same order everywhere, and much cheaper to compare in the wide keys every batch inserts into
-- and in the sort that keeps metric_latest (measured: a 20,000-row batch went from ~525 ms to
-- ~230 ms on the 2-core dev machine). Changing a column's collation rebuilds the indexes on it.

ALTER TABLE experiments   ALTER COLUMN name       TYPE text COLLATE "C";
ALTER TABLE runs          ALTER COLUMN run_id     TYPE text COLLATE "C",
                          ALTER COLUMN experiment TYPE text COLLATE "C";
ALTER TABLE run_ranks     ALTER COLUMN run_id     TYPE text COLLATE "C";
ALTER TABLE metrics       ALTER COLUMN run_id     TYPE text COLLATE "C",
                          ALTER COLUMN name       TYPE text COLLATE "C";
ALTER TABLE metric_latest ALTER COLUMN run_id     TYPE text COLLATE "C",
                          ALTER COLUMN name       TYPE text COLLATE "C";
ALTER TABLE text_metrics  ALTER COLUMN run_id     TYPE text COLLATE "C",
                          ALTER COLUMN name       TYPE text COLLATE "C";
ALTER TABLE table_rows    ALTER COLUMN run_id     TYPE text COLLATE "C",
                          ALTER COLUMN table_name TYPE text COLLATE "C";
ALTER TABLE files         ALTER COLUMN run_id     TYPE text COLLATE "C",
                          ALTER COLUMN name       TYPE text COLLATE "C";
ALTER TABLE log_records   ALTER COLUMN run_id     TYPE text COLLATE "C";
ALTER TABLE status_events ALTER COLUMN run_id     TYPE text COLLATE "C";
