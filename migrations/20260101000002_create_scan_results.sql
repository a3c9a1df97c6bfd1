-- migrate:up
CREATE TABLE scan_results (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    host_id     bigint      NOT NULL REFERENCES hosts (id) ON DELETE CASCADE,
    scanned_at  timestamptz NOT NULL DEFAULT now(),
    status      text        NOT NULL CHECK (status IN ('ok', 'warning', 'critical', 'unknown')),
    findings    jsonb       NOT NULL DEFAULT '{}'::jsonb
);

CREATE INDEX scan_results_host_scanned_idx ON scan_results (host_id, scanned_at DESC);
CREATE INDEX scan_results_findings_idx ON scan_results USING gin (findings jsonb_path_ops);

-- migrate:down
-- squawk-ignore ban-drop-table -- the down section drops only what the up section created
DROP TABLE scan_results;
