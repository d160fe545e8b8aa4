-- fitlink schema, version 5: the console's audit of what people did (who, when, what). The same
-- table as SQLite's 0007_operator_actions.sql.
CREATE TABLE operator_actions (
    action_id      text PRIMARY KEY,
    at             timestamptz NOT NULL,
    actor          text NOT NULL,
    role           text NOT NULL,
    action         text NOT NULL,
    participant_id text,
    detail         text NOT NULL
);
CREATE INDEX operator_actions_at ON operator_actions (at);
CREATE INDEX operator_actions_participant ON operator_actions (participant_id, at);

-- The console's "newest failures" reads the latest errors first.
CREATE INDEX participants_last_error_at ON participants (last_error_at);
