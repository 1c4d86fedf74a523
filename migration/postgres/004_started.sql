
-- Step 4: the start of an attempt.
--
-- started_at is set, while the job is executing, once its worker is about
-- to run the handler (store op start), and cleared by the next claim, so
-- that the rescue of a job whose worker died can tell one whose handler
-- may have run (its attempt is spent) from one that only waited in the
-- worker's prefetch (its attempt is refunded).

ALTER TABLE bus_jobs ADD COLUMN IF NOT EXISTS started_at timestamptz;

INSERT INTO bus_schema_version (version, name) VALUES (4, '004_started')
	ON CONFLICT (version) DO NOTHING;
