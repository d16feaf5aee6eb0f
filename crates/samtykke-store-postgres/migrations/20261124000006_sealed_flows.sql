-- The authorization flow's state travels sealed with the browser (see
-- samtykke_core::flow); the database keeps only which flows have finished,
-- until they would have expired, so that each is decided once. Flows in
-- progress during the upgrade must start again.
DROP TABLE authorization_flows;

CREATE TABLE finished_flows (
    id         TEXT PRIMARY KEY,
    expires_at BIGINT NOT NULL
);
CREATE INDEX finished_flows_by_expiry ON finished_flows(expires_at);
