-- Verdicts travel on a topic of their own; ordering against the run's events is by offset of the
-- run's events partition (consumers/_runstate.py): the offset of each rank's latest event and
-- latest progress, and the watchdog's `judged_through` of the verdict that set the status.
ALTER TABLE runs ADD COLUMN verdict_offset bigint;
ALTER TABLE run_ranks ADD COLUMN heard_offset bigint;
ALTER TABLE run_ranks ADD COLUMN progress_offset bigint;
