-- Issue 21: each debt lookup's usage record says, per creditor, whether it
-- was asked live, and whether its data was served fresh, from stored data,
-- or not at all (a null loan) and why. A JSON array of
-- {"id", "name", "asked", "served": "answered"|"stored"|"missing",
--  "failure"?: "timeout"|"unreachable"|"server_error"|"status"|"malformed"|
--  "throttled"|"circuit_open"|"busy"}
-- (samtykke_core::creditor_lookup::CreditorUsage). NULL in records written
-- before this migration. Never a national identity number or loan data.
ALTER TABLE consent_usage ADD COLUMN creditor_report TEXT;
