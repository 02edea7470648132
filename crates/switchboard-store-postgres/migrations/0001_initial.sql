-- The initial schema. Tables and columns follow switchboard_store::SCHEMA exactly, so that
-- `db copy` can move every row between this backend and SQLite. Times are milliseconds since
-- the epoch (BIGINT), enums are stored as their text names, JSON as JSONB.
--
-- Unique constraints carry explicit names because the store maps a violation to the input
-- field that clashed by constraint name. Enum columns have no CHECK constraints on purpose:
-- the store reads unknown values back as `Corrupt`, and a new enum value then needs no
-- migration.

CREATE TABLE instance_settings (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE users (
    id            UUID   PRIMARY KEY,
    email         TEXT   NOT NULL CONSTRAINT users_email_key UNIQUE,
    display_name  TEXT   NOT NULL,
    password_hash TEXT,
    created_at    BIGINT NOT NULL
);

CREATE TABLE organizations (
    id            UUID   PRIMARY KEY,
    slug          TEXT   NOT NULL CONSTRAINT organizations_slug_key UNIQUE,
    name          TEXT   NOT NULL,
    new_functions TEXT   NOT NULL,
    created_at    BIGINT NOT NULL
);

CREATE TABLE memberships (
    org_id     UUID   NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    user_id    UUID   NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role       TEXT   NOT NULL,
    created_at BIGINT NOT NULL,
    CONSTRAINT memberships_pkey PRIMARY KEY (org_id, user_id)
);
CREATE INDEX memberships_user_id_idx ON memberships (user_id);

CREATE TABLE sessions (
    token_hash TEXT   PRIMARY KEY,
    user_id    UUID   NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    csrf_token TEXT   NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX sessions_user_id_idx ON sessions (user_id);
CREATE INDEX sessions_expires_at_idx ON sessions (expires_at);

CREATE TABLE api_tokens (
    id           UUID   PRIMARY KEY,
    user_id      UUID   NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name         TEXT   NOT NULL,
    token_hash   TEXT   NOT NULL CONSTRAINT api_tokens_token_hash_key UNIQUE,
    prefix       TEXT   NOT NULL,
    created_at   BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL,
    last_used_at BIGINT,
    revoked_at   BIGINT
);
CREATE INDEX api_tokens_user_id_idx ON api_tokens (user_id);

CREATE TABLE connectors (
    id               UUID   PRIMARY KEY,
    org_id           UUID   NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    name             TEXT   NOT NULL,
    name_folded      TEXT   NOT NULL,
    url              TEXT   NOT NULL,
    description      TEXT,
    status           TEXT   NOT NULL,
    last_error       TEXT,
    auth_method      TEXT   NOT NULL,
    transport        TEXT,
    protocol_version TEXT,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL,
    CONSTRAINT connectors_org_id_name_folded_key UNIQUE (org_id, name_folded)
);

-- One credential per connector and holder: the organization's (user_id NULL) or a member's.
-- Two partial indexes rather than UNIQUE NULLS NOT DISTINCT, which needs PostgreSQL 15.
CREATE TABLE connector_credentials (
    id           UUID   PRIMARY KEY,
    connector_id UUID   NOT NULL REFERENCES connectors (id) ON DELETE CASCADE,
    user_id      UUID   REFERENCES users (id) ON DELETE CASCADE,
    kind         TEXT   NOT NULL,
    sealed       TEXT   NOT NULL,
    updated_at   BIGINT NOT NULL
);
CREATE UNIQUE INDEX connector_credentials_org_key
    ON connector_credentials (connector_id) WHERE user_id IS NULL;
CREATE UNIQUE INDEX connector_credentials_member_key
    ON connector_credentials (connector_id, user_id) WHERE user_id IS NOT NULL;
CREATE INDEX connector_credentials_user_id_idx ON connector_credentials (user_id);

CREATE TABLE functions (
    id              UUID   PRIMARY KEY,
    connector_id    UUID   NOT NULL REFERENCES connectors (id) ON DELETE CASCADE,
    name            TEXT   NOT NULL,
    definition      JSONB  NOT NULL,
    definition_hash TEXT   NOT NULL,
    approved_hash   TEXT,
    review_state    TEXT   NOT NULL,
    floor           TEXT   NOT NULL DEFAULT 'allowed',
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    CONSTRAINT functions_connector_id_name_key UNIQUE (connector_id, name)
);

CREATE TABLE function_versions (
    function_id   UUID   NOT NULL REFERENCES functions (id) ON DELETE CASCADE,
    hash          TEXT   NOT NULL,
    definition    JSONB  NOT NULL,
    first_seen_at BIGINT NOT NULL,
    CONSTRAINT function_versions_pkey PRIMARY KEY (function_id, hash)
);

CREATE TABLE member_preferences (
    function_id UUID   NOT NULL REFERENCES functions (id) ON DELETE CASCADE,
    user_id     UUID   NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    preference  TEXT   NOT NULL,
    updated_at  BIGINT NOT NULL,
    CONSTRAINT member_preferences_pkey PRIMARY KEY (function_id, user_id)
);
CREATE INDEX member_preferences_user_id_idx ON member_preferences (user_id);

-- No foreign keys: the log outlives what it talks about (a deleted connector, a removed
-- member), and sign-in events belong to no organization.
CREATE TABLE audit_events (
    id         UUID   PRIMARY KEY,
    org_id     UUID,
    actor_id   UUID,
    action     TEXT   NOT NULL,
    target     TEXT,
    detail     JSONB  NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX audit_events_org_id_idx ON audit_events (org_id, id);
CREATE INDEX audit_events_actor_id_idx ON audit_events (actor_id, id);
