-- fitlink schema, version 4: the completeness ledger (docs/coverage.md). The same table as
-- SQLite's 0006_coverage.sql.
CREATE TABLE coverage_daily (
    participant_id text NOT NULL,
    date           date NOT NULL,
    family         text NOT NULL,
    expected       bigint NOT NULL,
    received       bigint NOT NULL,
    worn_minutes   bigint,
    status         text NOT NULL,
    reason         text NOT NULL,
    dead_letter_id text,
    updated_at     timestamptz NOT NULL,
    PRIMARY KEY (participant_id, date, family)
);
CREATE INDEX coverage_daily_by_family_date ON coverage_daily (family, date);
