-- Sequence number 1 is never given to a consent event: the first event is 2.
-- The published schema says endSequenceNr >= 1, also on an empty page, and
-- the feed answers an empty page from the start of the feed with
-- endSequenceNr = 1; as no event can ever be 1, a reader that goes on from
-- endSequenceNr + 1 skips nothing (docs/integrated-consent.md).
INSERT INTO sqlite_sequence (name, seq)
SELECT 'consent_events', 1
WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'consent_events');
UPDATE sqlite_sequence SET seq = 1 WHERE name = 'consent_events' AND seq < 1;
