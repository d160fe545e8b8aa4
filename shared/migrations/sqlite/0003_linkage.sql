-- fitlink schema, version 3: linkage and the credential lifecycle (invitations, consent,
-- provider webhooks, withdrawal).

-- What the participant granted at their last consent (space-separated scopes), when, and until
-- when the grant works if the provider said (Google testing-mode grants expire after 7 days).
ALTER TABLE participants ADD COLUMN granted_scopes TEXT;
ALTER TABLE participants ADD COLUMN consented_at TEXT;
ALTER TABLE participants ADD COLUMN refresh_token_expires_at TEXT;
-- The last time the provider accepted the participant's refresh token (a completed job or a
-- keep-alive touch): an idle grant expires after ~6 months without use, so the dispatcher
-- touches it well before.
ALTER TABLE participants ADD COLUMN credential_used_at TEXT;
-- Webhook notifications that arrived while a job was in flight: when that job finishes, one
-- follow-up job covers them (from the earliest notified start if before the cursor).
ALTER TABLE participants ADD COLUMN notified_from TEXT;
ALTER TABLE participants ADD COLUMN notified_at TEXT;
CREATE INDEX participants_health_user ON participants (health_user_id);
CREATE INDEX participants_fitbit_user ON participants (fitbit_user_id);

-- Every consent invitation issued, and what became of it. An invitation is used at most once.
CREATE TABLE invitations (
    invitation_id  TEXT PRIMARY KEY NOT NULL,
    participant_id TEXT NOT NULL,
    provider       TEXT NOT NULL,
    -- Unknown (NULL) while only a consent problem has been recorded for an invitation whose
    -- RecordInvitation has not arrived (lost, or issued through another path).
    issued_at      TEXT,
    expires_at     TEXT,
    used_at        TEXT,
    -- The consent (its request id) that used the invitation, and whether it created the
    -- participant: a redelivered consent is recognised and answered the same way again.
    used_by_request      TEXT,
    used_new_participant INTEGER,
    -- The last way a flow with this invitation ended without a grant (declined, scope missing).
    last_problem    TEXT,
    last_problem_at TEXT
);
CREATE INDEX invitations_participant ON invitations (participant_id, issued_at);

-- Digests of provider notifications already acted on (duplicates create no work). Kept a week,
-- the providers' redelivery horizon.
CREATE TABLE provider_notifications (
    notification_id TEXT PRIMARY KEY NOT NULL,
    participant_id  TEXT NOT NULL,
    received_at     TEXT NOT NULL
);
CREATE INDEX provider_notifications_received ON provider_notifications (received_at);

-- Audit of provider DELETE notifications: what the provider removed and how many stored rows
-- went with it.
CREATE TABLE provider_deletions (
    notification_id TEXT NOT NULL,
    participant_id  TEXT NOT NULL,
    provider        TEXT NOT NULL,
    data_type       TEXT NOT NULL,
    interval_start  TEXT NOT NULL,
    interval_end    TEXT NOT NULL,
    rows_deleted    INTEGER NOT NULL,
    received_at     TEXT NOT NULL,
    PRIMARY KEY (notification_id, interval_start, interval_end)
);

-- Audit of withdrawals: who, when, whether the data was purged and how many rows per table.
-- Never holds a token.
CREATE TABLE withdrawals (
    participant_id              TEXT NOT NULL,
    withdrawn_at                TEXT NOT NULL,
    withdrawn_by                TEXT NOT NULL,
    purged                      INTEGER NOT NULL,
    provider_revocation         TEXT NOT NULL,
    activity_summary_rows       INTEGER NOT NULL DEFAULT 0,
    heart_rate_summary_rows     INTEGER NOT NULL DEFAULT 0,
    resting_heart_rate_rows     INTEGER NOT NULL DEFAULT 0,
    heart_rate_intraday_rows    INTEGER NOT NULL DEFAULT 0,
    steps_intraday_rows         INTEGER NOT NULL DEFAULT 0,
    sync_slices_rows            INTEGER NOT NULL DEFAULT 0,
    provider_notifications_rows INTEGER NOT NULL DEFAULT 0,
    -- The withdrawal command's request id: a redelivered command is answered from this row.
    request_id                  TEXT,
    PRIMARY KEY (participant_id, withdrawn_at)
);
