-- The browser's login session travels sealed in a cookie (see
-- samtykke_core::flow::LoginSession); the database keeps only when each
-- browser's logged-out session began, until any session it ended would have expired.
-- Sessions live at the upgrade end: those individuals log in again.
DROP TABLE login_sessions;

CREATE TABLE ended_logins (
    browser_hash BYTEA PRIMARY KEY,
    -- When the logged-out session began (Unix microseconds): the
    -- browser's sessions begun up to then are ended.
    ended_at_us  BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL
);
CREATE INDEX ended_logins_by_expiry ON ended_logins(expires_at);
