-- A running sync run's last sign of life: a run whose process died stops
-- beating, and the next start of its connection marks it interrupted.
ALTER TABLE sync_runs ADD COLUMN heartbeat_at INTEGER;
