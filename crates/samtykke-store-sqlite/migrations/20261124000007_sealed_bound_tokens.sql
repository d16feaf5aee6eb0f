-- Authorization-code access tokens are sealed as well (see
-- samtykke_core::token): what revokes the tokens bound to a consent (the
-- consent revoked, its code replayed) is this mark on the consent.
ALTER TABLE consents ADD COLUMN tokens_revoked INTEGER NOT NULL DEFAULT 0;
UPDATE consents SET tokens_revoked = 1 WHERE status = 'revoked';
