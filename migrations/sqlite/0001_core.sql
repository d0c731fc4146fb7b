-- Accounts, sessions, API tokens, publishers, plugins and versions.
-- Times are Unix seconds (INTEGER) so both engines share one representation.

CREATE TABLE users (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    username      TEXT    NOT NULL,
    email         TEXT    NOT NULL,
    password_hash TEXT    NOT NULL,
    role          TEXT    NOT NULL CHECK (role IN ('developer', 'reviewer', 'admin')),
    created_at    INTEGER NOT NULL,
    disabled_at   INTEGER,
    deleted_at    INTEGER
);
CREATE UNIQUE INDEX users_username_key ON users (lower(username));
CREATE UNIQUE INDEX users_email_key ON users (lower(email));

CREATE TABLE refresh_tokens (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    family_id   TEXT    NOT NULL,
    user_id     INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    token_hash  TEXT    NOT NULL UNIQUE,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    used_at     INTEGER,
    revoked_at  INTEGER
);
CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);

CREATE TABLE publishers (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    name         TEXT    NOT NULL UNIQUE,
    display_name TEXT    NOT NULL,
    created_at   INTEGER NOT NULL
);

CREATE TABLE publisher_members (
    publisher_id INTEGER NOT NULL REFERENCES publishers (id) ON DELETE CASCADE,
    user_id      INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role         TEXT    NOT NULL CHECK (role IN ('owner', 'maintainer')),
    added_at     INTEGER NOT NULL,
    PRIMARY KEY (publisher_id, user_id)
);
CREATE INDEX publisher_members_user ON publisher_members (user_id);

CREATE TABLE plugins (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    publisher_id INTEGER NOT NULL REFERENCES publishers (id),
    name         TEXT    NOT NULL,
    description  TEXT    NOT NULL DEFAULT '',
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL,
    UNIQUE (publisher_id, name)
);

CREATE TABLE plugin_versions (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    plugin_id      INTEGER NOT NULL REFERENCES plugins (id),
    version        TEXT    NOT NULL,
    state          TEXT    NOT NULL CHECK (state IN ('uploaded', 'scanning', 'published', 'pending_review', 'rejected', 'yanked', 'blocked')),
    package_digest TEXT    NOT NULL,
    package_size   INTEGER NOT NULL,
    created_at     INTEGER NOT NULL,
    UNIQUE (plugin_id, version)
);

CREATE TABLE api_tokens (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id      INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name         TEXT    NOT NULL,
    token_hash   TEXT    NOT NULL UNIQUE,
    scopes       TEXT    NOT NULL,
    publisher_id INTEGER REFERENCES publishers (id) ON DELETE CASCADE,
    plugin_name  TEXT,
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL,
    last_used_at INTEGER,
    revoked_at   INTEGER
);
CREATE INDEX api_tokens_user ON api_tokens (user_id);
