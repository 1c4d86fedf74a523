-- libbus schema for MySQL 8.0+ and MariaDB 10.6+ (InnoDB, utf8mb4).
--
-- migration/mysql.sql is the steps in migration/mysql/ in order; apply it
-- with your own tool (mariadb mydb < migration/mysql.sql), or let
-- bus_migrate() apply what is missing. Every step may be applied again.
-- These are the tables of the default table prefix "bus_"; for another
-- prefix (?table-prefix= in the URL) use bus_migrate().

-- Step 1: jobs, paused queues, the schema version.

CREATE TABLE IF NOT EXISTS bus_schema_version (
	version INT NOT NULL,
	name VARCHAR(64) NOT NULL,
	applied_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
	PRIMARY KEY (version)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- Times are UTC. JSON documents are LONGTEXT checked with JSON_VALID (what
-- MariaDB's JSON is), so that MySQL hands them back byte for byte as they
-- were written. state is bus_job_state: 0 available, 1 scheduled,
-- 2 executing, 3 retryable, 4 completed, 5 cancelled, 6 discarded.
-- unique_key is NULL once the job has left its unique_states.
CREATE TABLE IF NOT EXISTS bus_jobs (
	id BIGINT NOT NULL AUTO_INCREMENT,
	kind VARCHAR(255) NOT NULL,
	handler VARCHAR(255) NOT NULL,
	queue VARCHAR(255) NOT NULL,
	priority SMALLINT NOT NULL,
	payload LONGTEXT NOT NULL CHECK (JSON_VALID(payload)),
	meta LONGTEXT NOT NULL CHECK (JSON_VALID(meta)),
	tags LONGTEXT NOT NULL CHECK (JSON_VALID(tags)),
	state TINYINT NOT NULL CHECK (state BETWEEN 0 AND 6),
	attempt INT NOT NULL DEFAULT 0,
	max_attempts INT NOT NULL,
	timeout_ms BIGINT NOT NULL DEFAULT 0,
	inserted_at DATETIME(6) NOT NULL,
	scheduled_at DATETIME(6) NOT NULL,
	attempted_at DATETIME(6) NULL,
	attempted_by VARCHAR(320) NULL,
	lease_until DATETIME(6) NULL,
	finished_at DATETIME(6) NULL,
	errors LONGTEXT NOT NULL CHECK (JSON_VALID(errors)),
	unique_key CHAR(64) CHARACTER SET ascii COLLATE ascii_bin NULL,
	unique_states SMALLINT NOT NULL DEFAULT 0,
	-- 1 for the states a claim takes from (available, scheduled,
	-- retryable): the claim is then one range of jobs_claim, read in the
	-- claim's order (priority, scheduled_at, id).
	pending TINYINT AS (state IN (0, 1, 3)) STORED,
	PRIMARY KEY (id),
	UNIQUE KEY jobs_unique (unique_key),
	KEY jobs_claim (queue, pending, priority, scheduled_at),
	-- lease_until is set only while executing, finished_at only once
	-- finished: the rescuer and the pruner read these in order. (Counts
	-- per queue and state read the table: an index of their own would
	-- cost every state change.)
	KEY jobs_lease (lease_until),
	KEY jobs_finished (finished_at)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE IF NOT EXISTS bus_queues (
	name VARCHAR(255) NOT NULL,
	paused TINYINT NOT NULL DEFAULT 0,
	PRIMARY KEY (name)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

INSERT IGNORE INTO bus_schema_version (version, name)
VALUES (1, '001_init');

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

-- Step 3: tokens that make a write readable after a lost connection, so
-- that the store never runs again a write whose COMMIT may have landed.
-- insert_token, insert_seq: the insert call that made the row (a random
-- token per call) and the row's place in that call's batch; claim_token:
-- the claim call that last took the job. Rows from before this step, and
-- outbox inserts, have none. (The ALTER runs only when the columns are
-- missing, so that the step may be applied again, on MySQL too, which has
-- no ADD COLUMN IF NOT EXISTS.)
SET @bus_step_ddl = IF((SELECT COUNT(*) FROM information_schema.columns
	WHERE table_schema = DATABASE() AND table_name = 'bus_jobs'
	AND column_name = 'claim_token') = 0,
	'ALTER TABLE `bus_jobs`
		ADD COLUMN insert_token CHAR(32) CHARACTER SET ascii COLLATE ascii_bin NULL,
		ADD COLUMN insert_seq INT NULL,
		ADD COLUMN claim_token CHAR(32) CHARACTER SET ascii COLLATE ascii_bin NULL,
		ADD UNIQUE KEY jobs_insert_token (insert_token, insert_seq)',
	'DO 0');
PREPARE bus_step FROM @bus_step_ddl;
EXECUTE bus_step;
DEALLOCATE PREPARE bus_step;

INSERT IGNORE INTO bus_schema_version (version, name)
VALUES (3, '003_tokens');

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
