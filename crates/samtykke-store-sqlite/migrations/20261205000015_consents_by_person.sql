-- The individual's portal lists a person's consents newest first, a page at
-- a time, and each consent's uses newest first.
CREATE INDEX consents_by_nin_newest ON consents(nin, created_at DESC, id DESC);
CREATE INDEX consent_usage_by_consent_newest ON consent_usage(consent_id, id DESC);
-- Both replace an index that was a prefix of them.
DROP INDEX IF EXISTS consents_by_nin;
DROP INDEX IF EXISTS consent_usage_by_consent;
