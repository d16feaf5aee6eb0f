-- Feed numbers are given after commit instead of under a lock held through
-- every event-writing commit: writers append to consent_events_pending
-- (no lock, so their commits run in parallel and share WAL flushes); a
-- feed read first moves every committed pending event into consent_events
-- under a transaction-scoped advisory lock, which is the only place that
-- takes feed numbers, so numbers still appear in commit order and a reader
-- that sees number n sees every number below it.
CREATE TABLE consent_events_pending (
    id                BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id          TEXT NOT NULL,
    event_type        TEXT NOT NULL,
    client_id         TEXT NOT NULL,
    consent_id        TEXT NOT NULL,
    purpose           TEXT NOT NULL,
    client_consent_id TEXT,
    created_at_us     BIGINT NOT NULL
);
