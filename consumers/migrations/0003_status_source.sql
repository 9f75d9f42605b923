-- Who set a run's current status: run (RunStarted), ranks (RankFinished), launcher, watchdog.
-- A launcher's final verdict is not overridden by a rank's late RankFinished.
ALTER TABLE runs ADD COLUMN status_source text;
