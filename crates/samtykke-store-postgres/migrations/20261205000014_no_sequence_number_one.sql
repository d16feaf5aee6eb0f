-- Sequence number 1 is never given to a consent event: the first event is 2.
-- The published schema says endSequenceNr >= 1, also on an empty page, and
-- the feed answers an empty page from the start of the feed with
-- endSequenceNr = 1; as no event can ever be 1, a reader that goes on from
-- endSequenceNr + 1 skips nothing (docs/integrated-consent.md).
DO $$
DECLARE
    seq text := pg_get_serial_sequence('consent_events', 'sequence_nr');
    last bigint;
    called boolean;
BEGIN
    EXECUTE format('SELECT last_value, is_called FROM %s', seq) INTO last, called;
    IF NOT called OR last < 1 THEN
        PERFORM setval(seq, GREATEST(last, 1), true);
    END IF;
END
$$;
