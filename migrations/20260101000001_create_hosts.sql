-- migrate:up
CREATE TABLE hosts (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    hostname    text        NOT NULL,
    address     inet        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT hosts_hostname_key UNIQUE (hostname)
);

-- migrate:down
-- squawk-ignore ban-drop-table -- the down section drops only what the up section created
DROP TABLE hosts;
