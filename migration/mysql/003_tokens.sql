
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
