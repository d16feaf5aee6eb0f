-- A usage record no longer carries a foreign key to its consent. On
-- PostgreSQL the key's check takes a FOR KEY SHARE lock on the consent's row
-- for every record written: a write (and WAL record) to the consents table
-- on every debt lookup, about 5% of the lookup's database time in the
-- benchmark (BENCHMARKS.md, stop 14). The lookup statement writes a record
-- only for a consent it has just read and judged, and consents are never
-- deleted (they end as consumed, expired or revoked), so the key guarded
-- nothing the statement does not. SQLite, where the check is a plain index
-- probe, keeps it.
ALTER TABLE consent_usage DROP CONSTRAINT consent_usage_consent_id_fkey;
