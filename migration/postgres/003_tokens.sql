
-- Step 3: tokens that make a write readable after a lost connection, so
-- that the store never runs again a write whose COMMIT may have landed.
-- insert_token, insert_seq: the insert call that made the row (a random
-- token per call) and the row's place in that call's batch; claim_token:
-- the claim call that last took the job. Rows from before this step, and
-- outbox inserts, have none.

ALTER TABLE bus_jobs
	ADD COLUMN IF NOT EXISTS insert_token text COLLATE "C",
	ADD COLUMN IF NOT EXISTS insert_seq integer,
	ADD COLUMN IF NOT EXISTS claim_token text COLLATE "C";
CREATE UNIQUE INDEX IF NOT EXISTS bus_jobs_insert_token
	ON bus_jobs (insert_token, insert_seq) WHERE insert_token IS NOT NULL;

INSERT INTO bus_schema_version (version, name) VALUES (3, '003_tokens')
	ON CONFLICT (version) DO NOTHING;
