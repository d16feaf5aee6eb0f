-- Consents, their event feed and usage log, the debt registry, and the
-- binding of access tokens to a consent.
CREATE TABLE consents (
    id                TEXT PRIMARY KEY,
    client_id         TEXT NOT NULL REFERENCES clients(id) ON DELETE CASCADE,
    nin               TEXT NOT NULL,
    purpose           TEXT NOT NULL,
    kind              TEXT NOT NULL,
    duration_days     BIGINT NOT NULL,
    client_consent_id TEXT,
    created_at        BIGINT NOT NULL,
    expires_at        BIGINT NOT NULL,
    status            TEXT NOT NULL,
    revoked_by        TEXT,
    ended_at          BIGINT
);
CREATE UNIQUE INDEX consents_by_client_consent_id ON consents(client_id, client_consent_id)
    WHERE client_consent_id IS NOT NULL;
CREATE INDEX consents_active_by_expiry ON consents(expires_at) WHERE status = 'active';
CREATE INDEX consents_by_nin ON consents(nin);

CREATE TABLE consent_events (
    sequence_nr       BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id          TEXT NOT NULL,
    event_type        TEXT NOT NULL,
    client_id         TEXT NOT NULL,
    consent_id        TEXT NOT NULL,
    purpose           TEXT NOT NULL,
    client_consent_id TEXT,
    created_at_us     BIGINT NOT NULL
);
CREATE INDEX consent_events_by_client ON consent_events(client_id, sequence_nr);
CREATE INDEX consent_events_by_time ON consent_events(created_at_us);

CREATE TABLE consent_usage (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    consent_id  TEXT NOT NULL REFERENCES consents(id) ON DELETE CASCADE,
    client_id   TEXT NOT NULL,
    used_at_us  BIGINT NOT NULL,
    purpose     TEXT NOT NULL,
    trace_id    TEXT NOT NULL
);
CREATE INDEX consent_usage_by_consent ON consent_usage(consent_id);

CREATE TABLE debt_loans (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    nin           TEXT NOT NULL,
    creditor_org  TEXT NOT NULL,
    creditor_name TEXT NOT NULL,
    provider_id   TEXT NOT NULL,
    account_id    TEXT NOT NULL,
    loan_json     TEXT NOT NULL
);
CREATE INDEX debt_loans_by_nin ON debt_loans(nin);
CREATE INDEX debt_loans_by_creditor ON debt_loans(creditor_org);

ALTER TABLE access_tokens ADD COLUMN consent_id TEXT;
CREATE INDEX access_tokens_by_consent ON access_tokens(consent_id) WHERE consent_id IS NOT NULL;
