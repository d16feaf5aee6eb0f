-- Clients, access tokens, signing keys and the sandbox client.
CREATE TABLE clients (
    id                    TEXT PRIMARY KEY,
    secret_hash           BYTEA NOT NULL,
    name                  TEXT NOT NULL,
    org_number            TEXT NOT NULL,
    redirect_uris         TEXT NOT NULL,
    purposes              TEXT NOT NULL,
    may_create_agreements BOOLEAN NOT NULL,
    may_read_events       BOOLEAN NOT NULL,
    disabled              BOOLEAN NOT NULL DEFAULT FALSE,
    created_at            BIGINT NOT NULL
);

CREATE TABLE access_tokens (
    hash       BYTEA PRIMARY KEY,
    client_id  TEXT NOT NULL REFERENCES clients(id) ON DELETE CASCADE,
    audience   TEXT NOT NULL,
    scopes     TEXT NOT NULL,
    issued_at  BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    revoked    BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE INDEX access_tokens_by_client ON access_tokens(client_id);
CREATE INDEX access_tokens_by_expiry ON access_tokens(expires_at);

CREATE TABLE signing_keys (
    seq             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kid             TEXT NOT NULL UNIQUE,
    private_key_pem TEXT NOT NULL,
    created_at      BIGINT NOT NULL
);

CREATE TABLE sandbox (
    singleton     INTEGER PRIMARY KEY CHECK (singleton = 1),
    client_id     TEXT NOT NULL REFERENCES clients(id) ON DELETE CASCADE,
    client_secret TEXT NOT NULL
);
