-- The initial schema: every table listed in switchboard_store::SCHEMA, and nothing else.
--
-- Types: ids are 16-byte UUID BLOBs, times are INTEGER milliseconds since the Unix epoch, JSON
-- documents are TEXT, enums are their `as_str()` text. Tables are STRICT so that a value of the
-- wrong type is refused instead of silently stored.
--
-- Children reference their parents with ON DELETE CASCADE, so deleting a user, an organization
-- or a connector takes everything that hangs off it. audit_events has no foreign keys on
-- purpose: the log outlives the users, organizations and connectors it describes.
--
-- Migrations are append-only: never edit this file once released; add a new one instead.

CREATE TABLE instance_settings (
    key   TEXT NOT NULL PRIMARY KEY,
    value TEXT NOT NULL
) STRICT;

CREATE TABLE users (
    id            BLOB    NOT NULL PRIMARY KEY,
    email         TEXT    NOT NULL,
    display_name  TEXT    NOT NULL,
    password_hash TEXT,
    created_at    INTEGER NOT NULL
) STRICT;
-- Emails are stored normalized (trimmed, lowercased) by the domain's Email type, so a plain
-- unique index is a case-insensitive rule.
CREATE UNIQUE INDEX users_email_key ON users (email);

CREATE TABLE organizations (
    id            BLOB    NOT NULL PRIMARY KEY,
    slug          TEXT    NOT NULL,
    name          TEXT    NOT NULL,
    new_functions TEXT    NOT NULL,
    created_at    INTEGER NOT NULL
) STRICT;
CREATE UNIQUE INDEX organizations_slug_key ON organizations (slug);

CREATE TABLE memberships (
    org_id     BLOB    NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    user_id    BLOB    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role       TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (org_id, user_id)
) STRICT;
CREATE INDEX memberships_user_idx ON memberships (user_id);

CREATE TABLE sessions (
    token_hash TEXT    NOT NULL PRIMARY KEY,
    user_id    BLOB    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    csrf_token TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
) STRICT;
CREATE INDEX sessions_user_idx ON sessions (user_id);
CREATE INDEX sessions_expires_idx ON sessions (expires_at);

CREATE TABLE api_tokens (
    id           BLOB    NOT NULL PRIMARY KEY,
    user_id      BLOB    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name         TEXT    NOT NULL,
    token_hash   TEXT    NOT NULL,
    prefix       TEXT    NOT NULL,
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL,
    last_used_at INTEGER,
    revoked_at   INTEGER
) STRICT;
CREATE UNIQUE INDEX api_tokens_token_hash_key ON api_tokens (token_hash);
CREATE INDEX api_tokens_user_idx ON api_tokens (user_id);

CREATE TABLE connectors (
    id               BLOB    NOT NULL PRIMARY KEY,
    org_id           BLOB    NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    name             TEXT    NOT NULL,
    -- The name lowercased (ConnectorName::folded): names are unique ignoring case.
    name_folded      TEXT    NOT NULL,
    url              TEXT    NOT NULL,
    description      TEXT,
    status           TEXT    NOT NULL,
    last_error       TEXT,
    auth_method      TEXT    NOT NULL,
    transport        TEXT,
    protocol_version TEXT,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL
) STRICT;
CREATE UNIQUE INDEX connectors_org_name_key ON connectors (org_id, name_folded);

CREATE TABLE connector_credentials (
    id           BLOB    NOT NULL PRIMARY KEY,
    connector_id BLOB    NOT NULL REFERENCES connectors (id) ON DELETE CASCADE,
    -- NULL for the organization's shared credential, else the member who holds it.
    user_id      BLOB    REFERENCES users (id) ON DELETE CASCADE,
    kind         TEXT    NOT NULL,
    sealed       TEXT    NOT NULL,
    updated_at   INTEGER NOT NULL
) STRICT;
-- One credential per member per connector. NULLs are distinct in a unique index, so the
-- organization's single shared credential needs its own partial index.
CREATE UNIQUE INDEX connector_credentials_holder_key ON connector_credentials (connector_id, user_id);
CREATE UNIQUE INDEX connector_credentials_org_key ON connector_credentials (connector_id)
    WHERE user_id IS NULL;
CREATE INDEX connector_credentials_user_idx ON connector_credentials (user_id);

CREATE TABLE functions (
    id              BLOB    NOT NULL PRIMARY KEY,
    connector_id    BLOB    NOT NULL REFERENCES connectors (id) ON DELETE CASCADE,
    name            TEXT    NOT NULL,
    definition      TEXT    NOT NULL,
    definition_hash TEXT    NOT NULL,
    approved_hash   TEXT,
    review_state    TEXT    NOT NULL,
    floor           TEXT    NOT NULL,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
) STRICT;
CREATE UNIQUE INDEX functions_connector_name_key ON functions (connector_id, name);

CREATE TABLE function_versions (
    function_id   BLOB    NOT NULL REFERENCES functions (id) ON DELETE CASCADE,
    hash          TEXT    NOT NULL,
    definition    TEXT    NOT NULL,
    first_seen_at INTEGER NOT NULL,
    PRIMARY KEY (function_id, hash)
) STRICT;

CREATE TABLE member_preferences (
    function_id BLOB    NOT NULL REFERENCES functions (id) ON DELETE CASCADE,
    user_id     BLOB    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    preference  TEXT    NOT NULL,
    updated_at  INTEGER NOT NULL,
    PRIMARY KEY (function_id, user_id)
) STRICT;
CREATE INDEX member_preferences_user_idx ON member_preferences (user_id);

CREATE TABLE audit_events (
    id         BLOB    NOT NULL PRIMARY KEY,
    org_id     BLOB,
    actor_id   BLOB,
    action     TEXT    NOT NULL,
    target     TEXT,
    detail     TEXT    NOT NULL,
    created_at INTEGER NOT NULL
) STRICT;
-- Listing is by organization (or, for sign-ins, by actor) in id order.
CREATE INDEX audit_events_org_idx ON audit_events (org_id, id);
CREATE INDEX audit_events_actor_idx ON audit_events (actor_id, id);
