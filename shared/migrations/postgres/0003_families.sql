-- fitlink schema, version 3: sleep and the nightly and daily metrics (All of Us
-- `sleep_daily_summary`, `sleep_level`, and one table per metric), and which families a
-- participant did not permit.
--
-- A sleep session belongs to the local date on which it ends. It is keyed by the provider's
-- session id, so an edited or merged session replaces the old one; its levels are replaced with
-- it, in the same transaction.
CREATE TABLE sleep_daily_summary (
    participant_id           text NOT NULL,
    provider                 text NOT NULL,
    session_id               text NOT NULL,
    sleep_date               date NOT NULL,
    is_main_sleep            boolean NOT NULL,
    start_datetime           timestamptz NOT NULL,
    start_utc_offset_seconds bigint NOT NULL,
    end_datetime             timestamptz NOT NULL,
    end_utc_offset_seconds   bigint NOT NULL,
    minute_in_bed            bigint,
    minute_asleep            bigint,
    minute_after_wakeup      bigint,
    minute_awake             bigint,
    minute_restless          bigint,
    minute_deep              bigint,
    minute_light             bigint,
    minute_rem               bigint,
    minute_wake              bigint,
    updated_at               timestamptz NOT NULL,
    PRIMARY KEY (participant_id, provider, session_id)
);
CREATE INDEX sleep_daily_summary_by_date ON sleep_daily_summary (participant_id, sleep_date);

CREATE TABLE sleep_level (
    participant_id     text NOT NULL,
    provider           text NOT NULL,
    session_id         text NOT NULL,
    sleep_date         date NOT NULL,
    is_main_sleep      boolean NOT NULL,
    level              text NOT NULL,
    start_datetime     timestamptz NOT NULL,
    utc_offset_seconds bigint NOT NULL,
    duration_in_min    double precision NOT NULL,
    PRIMARY KEY (participant_id, provider, session_id, start_datetime)
);

CREATE TABLE heart_rate_variability_daily (
    participant_id text NOT NULL,
    date           date NOT NULL,
    daily_rmssd    double precision,
    deep_rmssd     double precision,
    provider       text NOT NULL,
    updated_at     timestamptz NOT NULL,
    PRIMARY KEY (participant_id, date)
);

CREATE TABLE oxygen_saturation_daily (
    participant_id text NOT NULL,
    date           date NOT NULL,
    average        double precision,
    lower_bound    double precision,
    upper_bound    double precision,
    provider       text NOT NULL,
    updated_at     timestamptz NOT NULL,
    PRIMARY KEY (participant_id, date)
);

CREATE TABLE breathing_rate_daily (
    participant_id text NOT NULL,
    date           date NOT NULL,
    breathing_rate double precision NOT NULL,
    provider       text NOT NULL,
    updated_at     timestamptz NOT NULL,
    PRIMARY KEY (participant_id, date)
);

CREATE TABLE skin_temperature_daily (
    participant_id   text NOT NULL,
    date             date NOT NULL,
    nightly_relative double precision NOT NULL,
    provider         text NOT NULL,
    updated_at       timestamptz NOT NULL,
    PRIMARY KEY (participant_id, date)
);

CREATE TABLE active_zone_minutes_daily (
    participant_id text NOT NULL,
    date           date NOT NULL,
    fat_burn       bigint NOT NULL,
    cardio         bigint NOT NULL,
    peak           bigint NOT NULL,
    total          bigint NOT NULL,
    provider       text NOT NULL,
    updated_at     timestamptz NOT NULL,
    PRIMARY KEY (participant_id, date)
);

-- A family the provider refused for a participant (its scope was not granted), with the
-- provider's reason; removed once a sync reads the family again.
CREATE TABLE family_permissions (
    participant_id text NOT NULL,
    family         text NOT NULL,
    reason         text NOT NULL,
    since          timestamptz NOT NULL,
    PRIMARY KEY (participant_id, family)
);

ALTER TABLE withdrawals ADD COLUMN sleep_daily_summary_rows bigint NOT NULL DEFAULT 0;
ALTER TABLE withdrawals ADD COLUMN sleep_level_rows bigint NOT NULL DEFAULT 0;
ALTER TABLE withdrawals ADD COLUMN heart_rate_variability_daily_rows bigint NOT NULL DEFAULT 0;
ALTER TABLE withdrawals ADD COLUMN oxygen_saturation_daily_rows bigint NOT NULL DEFAULT 0;
ALTER TABLE withdrawals ADD COLUMN breathing_rate_daily_rows bigint NOT NULL DEFAULT 0;
ALTER TABLE withdrawals ADD COLUMN skin_temperature_daily_rows bigint NOT NULL DEFAULT 0;
ALTER TABLE withdrawals ADD COLUMN active_zone_minutes_daily_rows bigint NOT NULL DEFAULT 0;
ALTER TABLE withdrawals ADD COLUMN family_permissions_rows bigint NOT NULL DEFAULT 0;
