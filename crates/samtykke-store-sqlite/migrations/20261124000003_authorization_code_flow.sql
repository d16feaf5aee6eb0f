-- The authorization-code flow: per-client PKCE requirement, flow state
-- between the pages, login sessions, authorization codes, and named server
-- secrets (the pairwise-subject salt).
ALTER TABLE clients ADD COLUMN require_pkce INTEGER NOT NULL DEFAULT 0;

CREATE TABLE authorization_flows (
    id             TEXT PRIMARY KEY,
    browser_hash   BLOB NOT NULL,
    client_id      TEXT NOT NULL REFERENCES clients(id) ON DELETE CASCADE,
    redirect_uri   TEXT NOT NULL,
    purpose        TEXT NOT NULL,
    duration_days  INTEGER NOT NULL,
    openid         INTEGER NOT NULL,
    state          TEXT NOT NULL,
    nonce          TEXT,
    code_challenge TEXT,
    locale         TEXT NOT NULL,
    stage          TEXT NOT NULL,
    nin            TEXT,
    created_at     INTEGER NOT NULL,
    expires_at     INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX authorization_flows_by_expiry ON authorization_flows(expires_at);

CREATE TABLE login_sessions (
    browser_hash BLOB PRIMARY KEY,
    nin          TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX login_sessions_by_expiry ON login_sessions(expires_at);

CREATE TABLE authorization_codes (
    hash           BLOB PRIMARY KEY,
    client_id      TEXT NOT NULL REFERENCES clients(id) ON DELETE CASCADE,
    redirect_uri   TEXT NOT NULL,
    consent_id     TEXT NOT NULL REFERENCES consents(id) ON DELETE CASCADE,
    scopes         TEXT NOT NULL,
    nonce          TEXT,
    code_challenge TEXT,
    issued_at      INTEGER NOT NULL,
    expires_at     INTEGER NOT NULL,
    used_at        INTEGER
) WITHOUT ROWID;
CREATE INDEX authorization_codes_by_expiry ON authorization_codes(expires_at);

CREATE TABLE server_secrets (
    name  TEXT PRIMARY KEY,
    value BLOB NOT NULL
);
