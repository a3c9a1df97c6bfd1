-- migrate:up
CREATE TABLE alerts (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id     bigint      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    severity    text        NOT NULL CHECK (severity IN ('info', 'warning', 'critical')),
    message     text        NOT NULL,
    raised_at   timestamptz NOT NULL DEFAULT now()
);

-- migrate:down
DROP TABLE alerts;
