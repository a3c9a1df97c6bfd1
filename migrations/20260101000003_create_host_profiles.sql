-- migrate:up
-- How the scanner reaches a host. Added last and depends only on hosts, so a
-- package built without this file is a complete older release.
CREATE TABLE host_profiles (
    host_id     bigint  PRIMARY KEY REFERENCES hosts (id) ON DELETE CASCADE,
    protocol    text    NOT NULL CHECK (protocol IN ('ssh', 'winrm', 'snmp')),
    -- squawk-ignore prefer-bigint-over-int -- a port number (1-65535) fits in integer
    port        integer NOT NULL CHECK (port BETWEEN 1 AND 65535),
    username    text,
    options     jsonb   NOT NULL DEFAULT '{}'::jsonb
);

-- migrate:down
-- squawk-ignore ban-drop-table -- the down section drops only what the up section created
DROP TABLE host_profiles;
