-- fitlink schema, version 7: the console's audit of what people did (who, when, what).
--
-- One row per action, written by the writer from the console's `RecordOperatorAction`, which
-- is published before the action itself: a row says the action was asked for. Kept for the
-- study's life (a withdrawal does not purge it: it holds no health data and no token).
CREATE TABLE operator_actions (
    action_id      TEXT PRIMARY KEY,
    at             TEXT NOT NULL,
    actor          TEXT NOT NULL,
    role           TEXT NOT NULL,
    -- sync_now | consent_link | consent_links_needing | dead_letters_retry | dead_letters_discard
    action         TEXT NOT NULL,
    participant_id TEXT,
    -- JSON: what was asked (job ids, a dead-letter group, a discard reason).
    detail         TEXT NOT NULL
);
CREATE INDEX operator_actions_at ON operator_actions (at);
CREATE INDEX operator_actions_participant ON operator_actions (participant_id, at);

-- The console's "newest failures" reads the latest errors first.
CREATE INDEX participants_last_error_at ON participants (last_error_at);
