-- When a consent was consumed or revoked, to the microsecond (Unix
-- microseconds), as the debt API tells a client about its own ended
-- consent (SPEC §7: "Consent revoked at 2021-02-26T09:31:07.265053Z") and
-- as the feed's SAMTYKKE_ARKIVERT event of that end is timed. `ended_at`
-- keeps whole seconds. Rows that ended before this migration keep NULL
-- here (no rewrite of the table): their end is told to the second.
ALTER TABLE consents ADD COLUMN ended_at_us BIGINT;
