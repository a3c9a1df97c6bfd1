-- migrate:up
ALTER TABLE users RENAME COLUMN name TO display_name;
ALTER TABLE users ADD CONSTRAINT users_display_name_check CHECK (display_name <> '');

-- migrate:down
ALTER TABLE users DROP CONSTRAINT users_display_name_check;
ALTER TABLE users RENAME COLUMN display_name TO name;
