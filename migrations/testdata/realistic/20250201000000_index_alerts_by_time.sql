-- migrate:up
-- The service is stopped while this runs: a plain CREATE INDEX is faster
-- than CONCURRENTLY and stays inside the migration's transaction.
CREATE INDEX alerts_user_raised_idx ON alerts (user_id, raised_at DESC);

-- migrate:down
DROP INDEX alerts_user_raised_idx;
