-- fitlink schema, version 6: the completeness ledger (docs/coverage.md).
--
-- One row per participant, local day and data family since `sync_from`, kept by the writer in
-- the transaction that changes what it counts: how much the day is due (`expected`), how much
-- is stored (`received`), the day's wear (minutes with heart-rate samples), and, for a day that
-- is not complete, the one reason why.
CREATE TABLE coverage_daily (
    participant_id TEXT NOT NULL,
    date           TEXT NOT NULL,
    family         TEXT NOT NULL,
    -- Minutes of the local day since sync_from (intraday families), else 1.
    expected       INTEGER NOT NULL,
    -- Minutes with a stored point (intraday), sessions (sleep), else 1 when the day has a value.
    received       INTEGER NOT NULL,
    -- Minutes of the day with a stored heart-rate sample; NULL once purged.
    worn_minutes   INTEGER,
    -- complete | partial | missing
    status         TEXT NOT NULL,
    -- ok | not_worn | device_not_synced | not_fetched | provider_error | not_permitted | withdrawn
    reason         TEXT NOT NULL,
    -- For provider_error: the dead-lettered job (`fitlink dlq list` names it).
    dead_letter_id TEXT,
    updated_at     TEXT NOT NULL,
    PRIMARY KEY (participant_id, date, family)
);
-- Cohort compliance reads one family over the last days of every participant.
CREATE INDEX coverage_daily_by_family_date ON coverage_daily (family, date);
