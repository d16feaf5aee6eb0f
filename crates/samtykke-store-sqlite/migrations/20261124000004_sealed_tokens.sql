-- Client-credentials tokens are sealed (self-contained) and not stored: a
-- revoked one gets a row in access_tokens, and each carries its client's
-- token generation, which disabling the client moves on, so that every
-- earlier token ends and stays ended after the client is enabled again.
ALTER TABLE clients ADD COLUMN token_generation BIGINT NOT NULL DEFAULT 0;
