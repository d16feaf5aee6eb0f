-- Request objects (RFC 9101): a client's public keys (an inline JWK set or
-- a jwks_uri), the request_uri values it may send (newline-separated, exact
-- match), and whether it may send unsigned (alg=none) request objects.
ALTER TABLE clients ADD COLUMN jwks TEXT;
ALTER TABLE clients ADD COLUMN jwks_uri TEXT;
ALTER TABLE clients ADD COLUMN request_uris TEXT NOT NULL DEFAULT '';
ALTER TABLE clients ADD COLUMN allow_unsigned_request_objects INTEGER NOT NULL DEFAULT 0;
