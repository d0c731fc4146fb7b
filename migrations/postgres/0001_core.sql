-- Accounts, sessions, API tokens, publishers, plugins and versions.
-- Times are Unix seconds (INTEGER) so both engines share one representation.

CREATE TABLE users (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    username      TEXT    NOT NULL,
    email         TEXT    NOT NULL,
    password_hash TEXT    NOT NULL,
    role          TEXT    NOT NULL CHECK (role IN ('developer', 'reviewer', 'admin')),
    created_at    BIGINT  NOT NULL,
    disabled_at   BIGINT,
    deleted_at    BIGINT
);
CREATE UNIQUE INDEX users_username_key ON users (lower(username));
CREATE UNIQUE INDEX users_email_key ON users (lower(email));

CREATE TABLE refresh_tokens (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    family_id   TEXT    NOT NULL,
    user_id     BIGINT  NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    token_hash  TEXT    NOT NULL UNIQUE,
    created_at  BIGINT  NOT NULL,
    expires_at  BIGINT  NOT NULL,
    used_at     BIGINT,
    revoked_at  BIGINT
);
CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);

CREATE TABLE publishers (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name         TEXT    NOT NULL UNIQUE,
    display_name TEXT    NOT NULL,
    created_at   BIGINT  NOT NULL
);

CREATE TABLE publisher_members (
    publisher_id BIGINT  NOT NULL REFERENCES publishers (id) ON DELETE CASCADE,
    user_id      BIGINT  NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role         TEXT    NOT NULL CHECK (role IN ('owner', 'maintainer')),
    added_at     BIGINT  NOT NULL,
    PRIMARY KEY (publisher_id, user_id)
);
CREATE INDEX publisher_members_user ON publisher_members (user_id);

CREATE TABLE plugins (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    publisher_id BIGINT  NOT NULL REFERENCES publishers (id),
    name         TEXT    NOT NULL,
    description  TEXT    NOT NULL DEFAULT '',
    created_at   BIGINT  NOT NULL,
    updated_at   BIGINT  NOT NULL,
    UNIQUE (publisher_id, name)
);

CREATE TABLE plugin_versions (
    id             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    plugin_id      BIGINT  NOT NULL REFERENCES plugins (id),
    version        TEXT    NOT NULL,
    state          TEXT    NOT NULL CHECK (state IN ('uploaded', 'scanning', 'published', 'pending_review', 'rejected', 'yanked', 'blocked')),
    package_digest TEXT    NOT NULL,
    package_size   BIGINT  NOT NULL,
    created_at     BIGINT  NOT NULL,
    UNIQUE (plugin_id, version)
);

CREATE TABLE api_tokens (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id      BIGINT  NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name         TEXT    NOT NULL,
    token_hash   TEXT    NOT NULL UNIQUE,
    scopes       TEXT    NOT NULL,
    publisher_id BIGINT  REFERENCES publishers (id) ON DELETE CASCADE,
    plugin_name  TEXT,
    created_at   BIGINT  NOT NULL,
    expires_at   BIGINT  NOT NULL,
    last_used_at BIGINT,
    revoked_at   BIGINT
);
CREATE INDEX api_tokens_user ON api_tokens (user_id);
