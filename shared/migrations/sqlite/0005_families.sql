-- fitlink schema, version 5: sleep and the nightly and daily metrics (All of Us
-- `sleep_daily_summary`, `sleep_level`, and one table per metric), and which families a
-- participant did not permit.
--
-- A sleep session belongs to the local date on which it ends. It is keyed by the provider's
-- session id, so an edited or merged session replaces the old one; its levels are replaced with
-- it, in the same transaction.
CREATE TABLE sleep_daily_summary (
    participant_id           TEXT NOT NULL,
    provider                 TEXT NOT NULL,
    session_id               TEXT NOT NULL,
    sleep_date               TEXT NOT NULL,
    is_main_sleep            INTEGER NOT NULL,
    start_datetime           TEXT NOT NULL,
    start_utc_offset_seconds INTEGER NOT NULL,
    end_datetime             TEXT NOT NULL,
    end_utc_offset_seconds   INTEGER NOT NULL,
    minute_in_bed            INTEGER,
    minute_asleep            INTEGER,
    minute_after_wakeup      INTEGER,
    minute_awake             INTEGER,
    minute_restless          INTEGER,
    minute_deep              INTEGER,
    minute_light             INTEGER,
    minute_rem               INTEGER,
    minute_wake              INTEGER,
    updated_at               TEXT NOT NULL,
    PRIMARY KEY (participant_id, provider, session_id)
);
CREATE INDEX sleep_daily_summary_by_date ON sleep_daily_summary (participant_id, sleep_date);

CREATE TABLE sleep_level (
    participant_id     TEXT NOT NULL,
    provider           TEXT NOT NULL,
    session_id         TEXT NOT NULL,
    sleep_date         TEXT NOT NULL,
    is_main_sleep      INTEGER NOT NULL,
    level              TEXT NOT NULL,
    start_datetime     TEXT NOT NULL,
    utc_offset_seconds INTEGER NOT NULL,
    duration_in_min    REAL NOT NULL,
    PRIMARY KEY (participant_id, provider, session_id, start_datetime)
);

CREATE TABLE heart_rate_variability_daily (
    participant_id TEXT NOT NULL,
    date           TEXT NOT NULL,
    daily_rmssd    REAL,
    deep_rmssd     REAL,
    provider       TEXT NOT NULL,
    updated_at     TEXT NOT NULL,
    PRIMARY KEY (participant_id, date)
);

CREATE TABLE oxygen_saturation_daily (
    participant_id TEXT NOT NULL,
    date           TEXT NOT NULL,
    average        REAL,
    lower_bound    REAL,
    upper_bound    REAL,
    provider       TEXT NOT NULL,
    updated_at     TEXT NOT NULL,
    PRIMARY KEY (participant_id, date)
);

CREATE TABLE breathing_rate_daily (
    participant_id TEXT NOT NULL,
    date           TEXT NOT NULL,
    breathing_rate REAL NOT NULL,
    provider       TEXT NOT NULL,
    updated_at     TEXT NOT NULL,
    PRIMARY KEY (participant_id, date)
);

CREATE TABLE skin_temperature_daily (
    participant_id   TEXT NOT NULL,
    date             TEXT NOT NULL,
    nightly_relative REAL NOT NULL,
    provider         TEXT NOT NULL,
    updated_at       TEXT NOT NULL,
    PRIMARY KEY (participant_id, date)
);

CREATE TABLE active_zone_minutes_daily (
    participant_id TEXT NOT NULL,
    date           TEXT NOT NULL,
    fat_burn       INTEGER NOT NULL,
    cardio         INTEGER NOT NULL,
    peak           INTEGER NOT NULL,
    total          INTEGER NOT NULL,
    provider       TEXT NOT NULL,
    updated_at     TEXT NOT NULL,
    PRIMARY KEY (participant_id, date)
);

-- A family the provider refused for a participant (its scope was not granted), with the
-- provider's reason; removed once a sync reads the family again.
CREATE TABLE family_permissions (
    participant_id TEXT NOT NULL,
    family         TEXT NOT NULL,
    reason         TEXT NOT NULL,
    since          TEXT NOT NULL,
    PRIMARY KEY (participant_id, family)
);

ALTER TABLE withdrawals ADD COLUMN sleep_daily_summary_rows INTEGER NOT NULL DEFAULT 0;
ALTER TABLE withdrawals ADD COLUMN sleep_level_rows INTEGER NOT NULL DEFAULT 0;
ALTER TABLE withdrawals ADD COLUMN heart_rate_variability_daily_rows INTEGER NOT NULL DEFAULT 0;
ALTER TABLE withdrawals ADD COLUMN oxygen_saturation_daily_rows INTEGER NOT NULL DEFAULT 0;
ALTER TABLE withdrawals ADD COLUMN breathing_rate_daily_rows INTEGER NOT NULL DEFAULT 0;
ALTER TABLE withdrawals ADD COLUMN skin_temperature_daily_rows INTEGER NOT NULL DEFAULT 0;
ALTER TABLE withdrawals ADD COLUMN active_zone_minutes_daily_rows INTEGER NOT NULL DEFAULT 0;
ALTER TABLE withdrawals ADD COLUMN family_permissions_rows INTEGER NOT NULL DEFAULT 0;
