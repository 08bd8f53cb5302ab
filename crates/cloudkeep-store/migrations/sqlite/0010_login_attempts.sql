-- Failed sign-ins per key: an email tried (hashed, whether or not an
-- account has it) or a client address. Read before anyone is
-- authenticated, so it belongs to no organisation and holds no
-- organisation data.
CREATE TABLE login_attempts (
    attempt_key     TEXT    PRIMARY KEY,
    failures        INTEGER NOT NULL,
    last_failure_at INTEGER NOT NULL,
    locked_until    INTEGER
);
CREATE INDEX sessions_expiry ON sessions (expires_at);
