-- fitlink schema, version 6: waiting out a provider's rate limit.
--
-- A rate-limited participant's claim is released with `retry_at` set to the reset the
-- provider gave; the dispatcher looks every second for resets that have passed. Few rows have
-- `retry_at` at any time, so a partial index keeps that look cheap at 100,000 participants.
CREATE INDEX participants_retry_at ON participants (retry_at) WHERE retry_at IS NOT NULL;
