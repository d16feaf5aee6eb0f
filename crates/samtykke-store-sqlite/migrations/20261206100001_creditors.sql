-- Live creditors (issue 21): the registry of financial institutions whose
-- getDataForSSN / getalldata endpoints Samtykke calls, with the state of
-- their daily getalldata; when each institution's stored loans were
-- delivered; and the staging table of a streamed getalldata, swapped into
-- debt_loans in one transaction when the whole delivery has been read.

CREATE TABLE creditors (
    id                   TEXT PRIMARY KEY,
    name                 TEXT NOT NULL,
    endpoint             TEXT NOT NULL,
    timeout_ms           INTEGER NOT NULL,
    max_concurrent       INTEGER,
    certificate_org      TEXT,
    always_ask           INTEGER NOT NULL,
    enabled              INTEGER NOT NULL,
    page_size            INTEGER,
    created_at_us        INTEGER NOT NULL,
    last_attempt_at_us   INTEGER,
    last_success_at_us   INTEGER,
    last_outcome         TEXT,
    last_size            INTEGER,
    last_error           TEXT,
    consecutive_failures INTEGER NOT NULL DEFAULT 0,
    claimed_day          TEXT
);
CREATE INDEX creditors_by_certificate_org ON creditors(certificate_org);

CREATE TABLE debt_deliveries (
    creditor_org TEXT PRIMARY KEY,
    stored_at_us INTEGER NOT NULL
);

CREATE TABLE creditor_sync_loans (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    sync_id       TEXT NOT NULL,
    nin           TEXT NOT NULL,
    creditor_org  TEXT NOT NULL,
    creditor_name TEXT NOT NULL,
    provider_id   TEXT NOT NULL,
    account_id    TEXT NOT NULL,
    loan_json     TEXT NOT NULL
);
CREATE INDEX creditor_sync_loans_by_sync ON creditor_sync_loans(sync_id);
CREATE INDEX debt_loans_by_nin_creditor ON debt_loans(nin, creditor_org);
