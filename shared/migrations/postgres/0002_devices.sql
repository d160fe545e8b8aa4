-- fitlink schema, version 2: each paired device's snapshot per participant-local day (All of
-- Us `device`), so a coordinator sees a battery running down before the data stops.
-- One row per device per day, replaced by a later sync the same day.
CREATE TABLE device (
    participant_id text NOT NULL,
    device_id      text NOT NULL,
    device_date    date NOT NULL,
    battery        text,
    battery_level  bigint,
    device_version text,
    device_type    text,
    last_sync_time timestamptz,
    provider       text NOT NULL,
    updated_at     timestamptz NOT NULL,
    PRIMARY KEY (participant_id, device_id, device_date)
);
ALTER TABLE withdrawals ADD COLUMN device_rows bigint NOT NULL DEFAULT 0;
