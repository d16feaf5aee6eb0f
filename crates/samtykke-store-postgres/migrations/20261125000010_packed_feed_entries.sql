-- A feed page reads each event as one value instead of seven. PostgreSQL
-- calls a send function for every value it returns, and the server decodes
-- every value; for a 100-event page that was about a tenth of PostgreSQL's
-- CPU (BENCHMARKS.md, stop 16). `packed` is computed by PostgreSQL from the event's own columns
-- whenever a row is written, so no writer has to keep it in step, and an
-- event never changes once it has its number. The fields are separated by
-- one space and none of them holds a space except the last, the client's
-- own consent id, which is absent when NULL and present (possibly empty)
-- otherwise:
--   sequence_nr event_id event_type consent_id purpose created_at_us[ client_consent_id]
-- Adding a stored column rewrites the table once, under its exclusive lock.
ALTER TABLE consent_events ADD COLUMN packed TEXT NOT NULL
    GENERATED ALWAYS AS (
        sequence_nr::text || ' ' || event_id || ' ' || event_type || ' ' || consent_id || ' '
            || purpose || ' ' || created_at_us::text || COALESCE(' ' || client_consent_id, '')
    ) STORED;
