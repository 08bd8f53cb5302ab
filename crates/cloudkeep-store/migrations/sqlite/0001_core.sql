-- The platform core: organisations, users, sessions, API tokens, data keys,
-- connections and their subscriptions, and the audit log.
-- Every table but login_directory is keyed by organisation first.

CREATE TABLE organisations (
    org_id      TEXT    NOT NULL PRIMARY KEY,
    name        TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    -- Head of the audit hash chain; updated in every audited transaction,
    -- which also serialises appends per organisation.
    audit_seq   INTEGER NOT NULL DEFAULT 0,
    audit_head  TEXT    NOT NULL DEFAULT ''
);

-- Routes a login (an email, unique in the installation) to its organisation.
-- The one table not keyed by organisation: a directory, like a Citus
-- reference table, holding no organisation data but the route.
CREATE TABLE login_directory (
    email    TEXT NOT NULL PRIMARY KEY,
    org_id   TEXT NOT NULL REFERENCES organisations (org_id),
    user_id  TEXT NOT NULL
);

CREATE TABLE users (
    org_id        TEXT    NOT NULL REFERENCES organisations (org_id),
    user_id       TEXT    NOT NULL,
    email         TEXT    NOT NULL,
    name          TEXT    NOT NULL,
    role          TEXT    NOT NULL,
    password_hash TEXT,
    created_at    INTEGER NOT NULL,
    disabled_at   INTEGER,
    PRIMARY KEY (org_id, user_id)
);
CREATE UNIQUE INDEX users_email ON users (org_id, email);

CREATE TABLE sessions (
    org_id        TEXT    NOT NULL REFERENCES organisations (org_id),
    session_hash  TEXT    NOT NULL,
    user_id       TEXT    NOT NULL,
    csrf_token    TEXT    NOT NULL,
    created_at    INTEGER NOT NULL,
    expires_at    INTEGER NOT NULL,
    PRIMARY KEY (org_id, session_hash)
);

CREATE TABLE api_tokens (
    org_id      TEXT    NOT NULL REFERENCES organisations (org_id),
    token_id    TEXT    NOT NULL,
    user_id     TEXT    NOT NULL,
    name        TEXT    NOT NULL,
    token_hash  TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER,
    revoked_at  INTEGER,
    PRIMARY KEY (org_id, token_id)
);
CREATE UNIQUE INDEX api_tokens_hash ON api_tokens (org_id, token_hash);

-- Each organisation's data key, wrapped by a master key. During a data key
-- rotation two versions exist; credentials name the version they use.
CREATE TABLE data_keys (
    org_id         TEXT    NOT NULL REFERENCES organisations (org_id),
    version        INTEGER NOT NULL,
    master_key_id  TEXT    NOT NULL,
    wrapped_key    BLOB    NOT NULL,
    created_at     INTEGER NOT NULL,
    PRIMARY KEY (org_id, version)
);

CREATE TABLE connections (
    org_id            TEXT    NOT NULL REFERENCES organisations (org_id),
    connection_id     TEXT    NOT NULL,
    name              TEXT    NOT NULL,
    tenant_id         TEXT    NOT NULL,
    client_id         TEXT    NOT NULL,
    auth_method       TEXT    NOT NULL,
    credential        BLOB,
    data_key_version  INTEGER,
    principal_id      TEXT    NOT NULL,
    status            TEXT    NOT NULL,
    status_detail     TEXT,
    cadence_secs      INTEGER NOT NULL,
    stale_after_secs  INTEGER NOT NULL,
    created_at        INTEGER NOT NULL,
    created_by        TEXT    NOT NULL,
    deleted_at        INTEGER,
    last_sync_at      INTEGER,
    next_sync_at      INTEGER,
    PRIMARY KEY (org_id, connection_id)
);

CREATE TABLE subscriptions (
    org_id           TEXT    NOT NULL REFERENCES organisations (org_id),
    subscription_id  TEXT    NOT NULL,
    connection_id    TEXT    NOT NULL,
    azure_id         TEXT    NOT NULL,
    display_name     TEXT    NOT NULL,
    sync_level       TEXT    NOT NULL,
    permissions      TEXT    NOT NULL,
    created_at       INTEGER NOT NULL,
    PRIMARY KEY (org_id, subscription_id),
    FOREIGN KEY (org_id, connection_id) REFERENCES connections (org_id, connection_id)
);
CREATE UNIQUE INDEX subscriptions_azure ON subscriptions (org_id, connection_id, azure_id);

CREATE TABLE audit_events (
    org_id     TEXT    NOT NULL REFERENCES organisations (org_id),
    seq        INTEGER NOT NULL,
    event_id   TEXT    NOT NULL,
    at         INTEGER NOT NULL,
    actor      TEXT    NOT NULL,
    action     TEXT    NOT NULL,
    target     TEXT    NOT NULL,
    details    TEXT    NOT NULL,
    prev_hash  TEXT    NOT NULL,
    hash       TEXT    NOT NULL,
    PRIMARY KEY (org_id, seq)
);

-- The audit log is append-only, in the database too.
CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
BEGIN
    SELECT RAISE(ABORT, 'audit events are append-only');
END;
CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
BEGIN
    SELECT RAISE(ABORT, 'audit events are append-only');
END;
