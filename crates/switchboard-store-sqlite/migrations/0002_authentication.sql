-- Authentication storage: who holds a connector's credential, what auth detection found, and
-- the OAuth state (client registrations, authorizations awaiting their callback, and grants).
-- Every table added here is listed in switchboard_store::SCHEMA as well.
--
-- Types follow 0001: UUID BLOBs, INTEGER milliseconds, JSON as TEXT, enums as their text,
-- STRICT tables. Sealed columns hold ciphertext from switchboard-seal, bound to the seal
-- contexts the domain crate defines, so a row copied elsewhere does not open.
--
-- Migrations are append-only: never edit this file once released; add a new one instead.

-- Existing connectors keep what they had: one credential shared by the organization.
ALTER TABLE connectors ADD COLUMN credential_scope TEXT NOT NULL DEFAULT 'shared';
-- Public documents only (the protected resource and authorization server metadata).
ALTER TABLE connectors ADD COLUMN auth_detail TEXT;

-- Switchboard's client identity at an authorization server, per connector: registrations are
-- not shared between connectors, so deleting one connector never breaks another.
CREATE TABLE oauth_clients (
    id           BLOB    NOT NULL PRIMARY KEY,
    connector_id BLOB    NOT NULL REFERENCES connectors (id) ON DELETE CASCADE,
    -- The authorization server's issuer identifier (RFC 8414).
    issuer       TEXT    NOT NULL,
    source       TEXT    NOT NULL,
    sealed       TEXT    NOT NULL,
    created_at   INTEGER NOT NULL
) STRICT;
CREATE UNIQUE INDEX oauth_clients_connector_issuer_key ON oauth_clients (connector_id, issuer);

-- The tokens one holder has for one connector.
CREATE TABLE oauth_grants (
    id           BLOB    NOT NULL PRIMARY KEY,
    connector_id BLOB    NOT NULL REFERENCES connectors (id) ON DELETE CASCADE,
    -- NULL for the organization's grant, else the member who holds it.
    user_id      BLOB    REFERENCES users (id) ON DELETE CASCADE,
    issuer       TEXT    NOT NULL,
    status       TEXT    NOT NULL,
    reason       TEXT,
    sealed       TEXT    NOT NULL,
    -- When the access token expires; NULL if the server did not say.
    expires_at   INTEGER,
    -- Goes up whenever new tokens are stored.
    version      INTEGER NOT NULL,
    -- The refresh lease: which process may spend the refresh token, and until when.
    lease_holder TEXT,
    lease_until  INTEGER,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL
) STRICT;
-- One grant per holder per connector. NULLs are distinct in a unique index, so the
-- organization's single grant needs its own partial index (as for connector_credentials).
CREATE UNIQUE INDEX oauth_grants_holder_key ON oauth_grants (connector_id, user_id);
CREATE UNIQUE INDEX oauth_grants_org_key ON oauth_grants (connector_id) WHERE user_id IS NULL;
CREATE INDEX oauth_grants_user_idx ON oauth_grants (user_id);

-- Authorizations between the redirect to the authorization server and the callback. They live
-- here rather than in memory because any replica may receive the callback.
CREATE TABLE oauth_pending (
    -- SHA-256 of the state parameter; the state itself is never stored.
    state_hash     TEXT    NOT NULL PRIMARY KEY,
    org_id         BLOB    NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    connector_id   BLOB    NOT NULL REFERENCES connectors (id) ON DELETE CASCADE,
    -- Who started it.
    user_id        BLOB    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    -- Who will hold the grant: NULL for the organization.
    holder_user_id BLOB    REFERENCES users (id) ON DELETE CASCADE,
    binding_hash   TEXT    NOT NULL,
    sealed         TEXT    NOT NULL,
    created_at     INTEGER NOT NULL,
    expires_at     INTEGER NOT NULL
) STRICT;
CREATE INDEX oauth_pending_expires_idx ON oauth_pending (expires_at);
CREATE INDEX oauth_pending_connector_idx ON oauth_pending (connector_id);
CREATE INDEX oauth_pending_user_idx ON oauth_pending (user_id);
CREATE INDEX oauth_pending_holder_idx ON oauth_pending (holder_user_id);
