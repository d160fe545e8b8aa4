-- fitlink schema, version 2: provider identities, for moving participants from the legacy
-- Fitbit Web API to Google Health without losing who they are.

-- The provider's own id for the participant's account: the legacy Fitbit encoded user id
-- (from the token response's user_id) while linked through Fitbit.
ALTER TABLE participants ADD COLUMN fitbit_user_id TEXT;
-- From Google Health's users/me/identity when linked through Google.
ALTER TABLE participants ADD COLUMN health_user_id TEXT;
ALTER TABLE participants ADD COLUMN legacy_user_id TEXT;
