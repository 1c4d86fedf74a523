
-- Step 2: a cancel of an executing job is a request.
--
-- bus_job_cancel of a running job sets cancel_requested_at and leaves it
-- executing (holding its unique key) until its worker has stopped the
-- handler and recorded it cancelled, or the rescue of its expired lease
-- does (see include/bus/backend.h). The column is set only while a job is
-- executing. MySQL has no ADD COLUMN IF NOT EXISTS, so the ALTER runs only
-- when the column is missing: the step may be applied again, by hand too.
-- (A table name inside the statement's string is written in backticks:
-- bus_migrate puts the prefix's name in as it stands there, and a prefix
-- such as 1e1 needs the quotes.)

SET @bus_step_002 = IF(EXISTS (SELECT 1 FROM information_schema.COLUMNS
	WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'bus_jobs'
	AND COLUMN_NAME = 'cancel_requested_at'), 'DO 0',
	'ALTER TABLE `bus_jobs` ADD COLUMN cancel_requested_at DATETIME(6) NULL');
PREPARE bus_step_002 FROM @bus_step_002;
EXECUTE bus_step_002;
DEALLOCATE PREPARE bus_step_002;

INSERT IGNORE INTO bus_schema_version (version, name)
VALUES (2, '002_cancel_request');
