-- migrate:up
CREATE TABLE teams (
    id    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name  text NOT NULL UNIQUE
);
INSERT INTO teams (name) VALUES ('default');
ALTER TABLE users ADD COLUMN team_id bigint;
UPDATE users SET team_id = (SELECT id FROM teams WHERE name = 'default');
ALTER TABLE users ALTER COLUMN team_id SET NOT NULL;
ALTER TABLE users ADD CONSTRAINT users_team_id_fkey FOREIGN KEY (team_id) REFERENCES teams (id);
ALTER TABLE users ADD CONSTRAINT users_email_team_key UNIQUE (team_id, email);

-- migrate:down
ALTER TABLE users DROP COLUMN team_id;
DROP TABLE teams;
