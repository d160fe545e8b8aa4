-- fitlink schema, version 4: each paired device's snapshot per participant-local day (All of
-- Us `device`), so a coordinator sees a battery running down before the data stops.
-- One row per device per day, replaced by a later sync the same day.
CREATE TABLE device (
    participant_id TEXT NOT NULL,
    device_id      TEXT NOT NULL,
    device_date    TEXT NOT NULL,
    battery        TEXT,
    battery_level  INTEGER,
    device_version TEXT,
    device_type    TEXT,
    last_sync_time TEXT,
    provider       TEXT NOT NULL,
    updated_at     TEXT NOT NULL,
    PRIMARY KEY (participant_id, device_id, device_date)
);
ALTER TABLE withdrawals ADD COLUMN device_rows INTEGER NOT NULL DEFAULT 0;
