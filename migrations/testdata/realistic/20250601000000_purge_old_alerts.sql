-- migrate:up
DELETE FROM alerts WHERE raised_at < now() - interval '2 years';

-- migrate:down
-- no-way-down -- the deleted alerts are gone; only a restore point from before brings them back
