
-- Step 4: the start of an attempt. started_at is set, while the job is
-- executing, once its worker is about to run the handler (store op start),
-- and cleared by the next claim, so that the rescue of a job whose worker
-- died can tell one whose handler may have run (its attempt is spent)
-- from one that only waited in the worker's prefetch (its attempt is
-- refunded). (The ALTER runs only when the column is missing, as in 003.)
SET @bus_step_ddl = IF((SELECT COUNT(*) FROM information_schema.columns
	WHERE table_schema = DATABASE() AND table_name = 'bus_jobs'
	AND column_name = 'started_at') = 0,
	'ALTER TABLE `bus_jobs` ADD COLUMN started_at DATETIME(6) NULL',
	'DO 0');
PREPARE bus_step FROM @bus_step_ddl;
EXECUTE bus_step;
DEALLOCATE PREPARE bus_step;

INSERT IGNORE INTO bus_schema_version (version, name)
VALUES (4, '004_started');
