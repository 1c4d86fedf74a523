
-- Step 2: a cancel of an executing job is a request.
--
-- bus_job_cancel of a running job sets cancel_requested_at and leaves it
-- executing (holding its unique key) until its worker has stopped the
-- handler and recorded it cancelled, or the rescue of its expired lease
-- does (see include/bus/backend.h). The column is set only while a job is
-- executing. Applied again, the ALTER fails with a duplicate column, which
-- bus_migrate() takes as done.

ALTER TABLE bus_jobs ADD COLUMN cancel_requested_at DATETIME(6) NULL;

INSERT IGNORE INTO bus_schema_version (version, name)
VALUES (2, '002_cancel_request');
