-- fitlink schema on PostgreSQL, version 1: the same contract as the SQLite schema
-- (migrations/sqlite, versions 1–3), in PostgreSQL's own types.
-- Table and column names follow the All of Us research tables so analysts recognise them; they
-- are a contract read by other tools. Instants are `timestamptz` (UTC), local days `date`,
-- sealed refresh tokens `bytea`. Every data row records its participant and its provider.
-- The intraday tables are range-partitioned by month on the UTC instant; the writer creates
-- each month's partition before the first row that needs it (partitions are named
-- `<table>_pYYYYMM`), so old months can be detached or dropped whole.

CREATE TABLE participants (
    participant_id      text PRIMARY KEY,
    provider            text NOT NULL,
    -- Why the participant is or is not syncing (see ParticipantState) and the detail behind it.
    state               text NOT NULL DEFAULT 'active',
    state_reason        text,
    -- First instant the program wants; the cursor starts here.
    sync_from           timestamptz NOT NULL,
    -- Every point in [sync_from, sync_cursor) is stored. Moves only forward, only contiguously,
    -- and only in the transaction that stores the data it covers.
    sync_cursor         timestamptz NOT NULL,
    time_zone           text,
    latest_device_sync  timestamptz,
    last_success_at     timestamptz,
    last_error          text,
    last_error_at       timestamptz,
    -- The one job in flight, if any (invariant: never two).
    in_flight_job_id    text,
    in_flight_since     timestamptz,
    -- A rate-limited or retrying participant waits until here.
    retry_at            timestamptz,
    created_at          timestamptz NOT NULL,
    updated_at          timestamptz NOT NULL,
    -- The provider's own ids for the participant's account (legacy Fitbit user id; Google
    -- Health's healthUserId and the legacy id it reports).
    fitbit_user_id      text,
    health_user_id      text,
    legacy_user_id      text,
    -- What the participant granted at their last consent, when, and until when the grant works.
    granted_scopes      text,
    consented_at        timestamptz,
    refresh_token_expires_at timestamptz,
    -- The last time the provider accepted the participant's refresh token.
    credential_used_at  timestamptz,
    -- Webhook notifications that arrived while a job was in flight.
    notified_from       timestamptz,
    notified_at         timestamptz
);
CREATE INDEX participants_state ON participants (state);
CREATE INDEX participants_health_user ON participants (health_user_id);
CREATE INDEX participants_fitbit_user ON participants (fitbit_user_id);

CREATE TABLE credentials (
    participant_id       text PRIMARY KEY REFERENCES participants (participant_id),
    provider             text NOT NULL,
    -- XChaCha20-Poly1305 sealed refresh token (nonce ‖ ciphertext ‖ tag), participant id as
    -- associated data.
    sealed_refresh_token bytea NOT NULL,
    updated_at           timestamptz NOT NULL
);

-- The job ledger: every granted job and how it ended.
CREATE TABLE sync_jobs (
    job_id         text PRIMARY KEY,
    participant_id text NOT NULL,
    requested_by   text NOT NULL,
    granted_at     timestamptz NOT NULL,
    finished_at    timestamptz,
    outcome        text,
    detail         text,
    slices_stored  bigint NOT NULL DEFAULT 0,
    rows_stored    bigint NOT NULL DEFAULT 0
);
CREATE INDEX sync_jobs_participant ON sync_jobs (participant_id, granted_at);

-- Slices stored ahead of the cursor (arrived out of order).
CREATE TABLE sync_slices (
    participant_id text NOT NULL,
    slice_start    timestamptz NOT NULL,
    slice_end      timestamptz NOT NULL,
    job_id         text NOT NULL,
    PRIMARY KEY (participant_id, slice_start, slice_end)
);

-- One audit row per imported file.
CREATE TABLE imports (
    import_id     text PRIMARY KEY,
    source        text NOT NULL,
    participants  bigint NOT NULL,
    imported_at   timestamptz NOT NULL
);

CREATE TABLE activity_summary (
    participant_id         text NOT NULL,
    date                   date NOT NULL,
    steps                  bigint,
    distance               double precision,   -- kilometres
    floors                 bigint,
    elevation              double precision,   -- metres
    calories_out           double precision,
    activity_calories      double precision,
    sedentary_minutes      double precision,
    lightly_active_minutes double precision,
    fairly_active_minutes  double precision,
    very_active_minutes    double precision,
    provider               text NOT NULL,
    updated_at             timestamptz NOT NULL,
    PRIMARY KEY (participant_id, date)
);

CREATE TABLE heart_rate_summary (
    participant_id text NOT NULL,
    date           date NOT NULL,
    zone_name      text NOT NULL,
    min_heart_rate bigint,
    max_heart_rate bigint,
    minute_in_zone bigint,
    calorie_count  double precision,
    provider       text NOT NULL,
    updated_at     timestamptz NOT NULL,
    PRIMARY KEY (participant_id, date, zone_name)
);

-- The day's resting heart rate, beside heart_rate_summary (which has one row per zone).
CREATE TABLE resting_heart_rate (
    participant_id     text NOT NULL,
    date               date NOT NULL,
    resting_heart_rate bigint NOT NULL,
    provider           text NOT NULL,
    updated_at         timestamptz NOT NULL,
    PRIMARY KEY (participant_id, date)
);

CREATE TABLE heart_rate_intraday (
    participant_id     text NOT NULL,
    datetime           timestamptz NOT NULL,
    utc_offset_seconds integer NOT NULL,
    heart_rate_value   integer NOT NULL,
    provider           text NOT NULL,
    PRIMARY KEY (participant_id, datetime)
) PARTITION BY RANGE (datetime);

CREATE TABLE steps_intraday (
    participant_id     text NOT NULL,
    datetime           timestamptz NOT NULL,  -- the minute's start
    utc_offset_seconds integer NOT NULL,
    steps              integer NOT NULL,
    provider           text NOT NULL,
    PRIMARY KEY (participant_id, datetime)
) PARTITION BY RANGE (datetime);

-- Every consent invitation issued, and what became of it. An invitation is used at most once.
CREATE TABLE invitations (
    invitation_id  text PRIMARY KEY,
    participant_id text NOT NULL,
    provider       text NOT NULL,
    -- Unknown (NULL) while only a consent problem has been recorded for it.
    issued_at      timestamptz,
    expires_at     timestamptz,
    used_at        timestamptz,
    -- The consent (its request id) that used the invitation, and whether it created the
    -- participant: a redelivered consent is recognised and answered the same way again.
    used_by_request      text,
    used_new_participant boolean,
    -- The last way a flow with this invitation ended without a grant.
    last_problem    text,
    last_problem_at timestamptz
);
CREATE INDEX invitations_participant ON invitations (participant_id, issued_at);

-- Digests of provider notifications already acted on. Kept a week.
CREATE TABLE provider_notifications (
    notification_id text PRIMARY KEY,
    participant_id  text NOT NULL,
    received_at     timestamptz NOT NULL
);
CREATE INDEX provider_notifications_received ON provider_notifications (received_at);

-- Audit of provider DELETE notifications.
CREATE TABLE provider_deletions (
    notification_id text NOT NULL,
    participant_id  text NOT NULL,
    provider        text NOT NULL,
    data_type       text NOT NULL,
    interval_start  timestamptz NOT NULL,
    interval_end    timestamptz NOT NULL,
    rows_deleted    bigint NOT NULL,
    received_at     timestamptz NOT NULL,
    PRIMARY KEY (notification_id, interval_start, interval_end)
);

-- Audit of withdrawals: who, when, whether the data was purged and how many rows per table.
-- Never holds a token.
CREATE TABLE withdrawals (
    participant_id              text NOT NULL,
    withdrawn_at                timestamptz NOT NULL,
    withdrawn_by                text NOT NULL,
    purged                      boolean NOT NULL,
    provider_revocation         text NOT NULL,
    activity_summary_rows       bigint NOT NULL DEFAULT 0,
    heart_rate_summary_rows     bigint NOT NULL DEFAULT 0,
    resting_heart_rate_rows     bigint NOT NULL DEFAULT 0,
    heart_rate_intraday_rows    bigint NOT NULL DEFAULT 0,
    steps_intraday_rows         bigint NOT NULL DEFAULT 0,
    sync_slices_rows            bigint NOT NULL DEFAULT 0,
    provider_notifications_rows bigint NOT NULL DEFAULT 0,
    request_id                  text,
    PRIMARY KEY (participant_id, withdrawn_at)
);
