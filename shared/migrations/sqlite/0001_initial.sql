-- fitlink schema, version 1.
-- Table and column names follow the All of Us research tables so analysts recognise them; they
-- are a contract read by other tools. Instants are UTC text `YYYY-MM-DDTHH:MM:SSZ` (one canonical
-- form, so text order is time order and one instant is one key); dates are the participant's
-- local `YYYY-MM-DD`. Every data row records its participant and the provider it came from.

CREATE TABLE participants (
    participant_id      TEXT PRIMARY KEY NOT NULL,
    provider            TEXT NOT NULL,
    -- Why the participant is or is not syncing (see ParticipantState) and the detail behind it.
    state               TEXT NOT NULL DEFAULT 'active',
    state_reason        TEXT,
    -- First instant the program wants; the cursor starts here.
    sync_from           TEXT NOT NULL,
    -- Every point in [sync_from, sync_cursor) is stored. Moves only forward, only contiguously,
    -- and only in the transaction that stores the data it covers.
    sync_cursor         TEXT NOT NULL,
    time_zone           TEXT,
    latest_device_sync  TEXT,
    last_success_at     TEXT,
    last_error          TEXT,
    last_error_at       TEXT,
    -- The one job in flight, if any (invariant: never two).
    in_flight_job_id    TEXT,
    in_flight_since     TEXT,
    -- A rate-limited or retrying participant waits until here.
    retry_at            TEXT,
    created_at          TEXT NOT NULL,
    updated_at          TEXT NOT NULL
);
CREATE INDEX participants_state ON participants (state);

CREATE TABLE credentials (
    participant_id       TEXT PRIMARY KEY NOT NULL REFERENCES participants (participant_id),
    provider             TEXT NOT NULL,
    -- XChaCha20-Poly1305 sealed refresh token (base64), participant id as associated data.
    sealed_refresh_token TEXT NOT NULL,
    updated_at           TEXT NOT NULL
);

-- The job ledger: every granted job and how it ended.
CREATE TABLE sync_jobs (
    job_id        TEXT PRIMARY KEY NOT NULL,
    participant_id TEXT NOT NULL,
    requested_by  TEXT NOT NULL,
    granted_at    TEXT NOT NULL,
    finished_at   TEXT,
    outcome       TEXT,
    detail        TEXT,
    slices_stored INTEGER NOT NULL DEFAULT 0,
    rows_stored   INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX sync_jobs_participant ON sync_jobs (participant_id, granted_at);

-- Slices stored ahead of the cursor (arrived out of order). Slices the cursor has passed are
-- removed in the transaction that passes them.
CREATE TABLE sync_slices (
    participant_id TEXT NOT NULL,
    slice_start    TEXT NOT NULL,
    slice_end      TEXT NOT NULL,
    job_id         TEXT NOT NULL,
    PRIMARY KEY (participant_id, slice_start, slice_end)
);

-- One audit row per imported file.
CREATE TABLE imports (
    import_id     TEXT PRIMARY KEY NOT NULL,
    source        TEXT NOT NULL,
    participants  INTEGER NOT NULL,
    imported_at   TEXT NOT NULL
);

CREATE TABLE activity_summary (
    participant_id         TEXT NOT NULL,
    date                   TEXT NOT NULL,
    steps                  INTEGER,
    distance               REAL,   -- kilometres
    floors                 INTEGER,
    elevation              REAL,   -- metres
    calories_out           REAL,
    activity_calories      REAL,
    sedentary_minutes      REAL,
    lightly_active_minutes REAL,
    fairly_active_minutes  REAL,
    very_active_minutes    REAL,
    provider               TEXT NOT NULL,
    updated_at             TEXT NOT NULL,
    PRIMARY KEY (participant_id, date)
);

CREATE TABLE heart_rate_summary (
    participant_id TEXT NOT NULL,
    date           TEXT NOT NULL,
    zone_name      TEXT NOT NULL,
    min_heart_rate INTEGER,
    max_heart_rate INTEGER,
    minute_in_zone INTEGER,
    calorie_count  REAL,
    provider       TEXT NOT NULL,
    updated_at     TEXT NOT NULL,
    PRIMARY KEY (participant_id, date, zone_name)
);

-- The day's resting heart rate, beside heart_rate_summary (which has one row per zone).
CREATE TABLE resting_heart_rate (
    participant_id     TEXT NOT NULL,
    date               TEXT NOT NULL,
    resting_heart_rate INTEGER NOT NULL,
    provider           TEXT NOT NULL,
    updated_at         TEXT NOT NULL,
    PRIMARY KEY (participant_id, date)
);

CREATE TABLE heart_rate_intraday (
    participant_id     TEXT NOT NULL,
    datetime           TEXT NOT NULL,  -- UTC instant, ends in Z
    utc_offset_seconds INTEGER NOT NULL,
    heart_rate_value   INTEGER NOT NULL,
    provider           TEXT NOT NULL,
    PRIMARY KEY (participant_id, datetime)
) WITHOUT ROWID;

CREATE TABLE steps_intraday (
    participant_id     TEXT NOT NULL,
    datetime           TEXT NOT NULL,  -- UTC instant of the minute's start, ends in Z
    utc_offset_seconds INTEGER NOT NULL,
    steps              INTEGER NOT NULL,
    provider           TEXT NOT NULL,
    PRIMARY KEY (participant_id, datetime)
) WITHOUT ROWID;
