-- Authentication storage: who holds a connector's credential, what auth detection found, and
-- the OAuth state (client registrations, authorizations awaiting their callback, and grants).
-- Tables and columns follow switchboard_store::SCHEMA exactly, as in 0001: UUID ids, BIGINT
-- milliseconds, JSONB, enums as text without CHECK constraints, named unique constraints.
-- Sealed columns hold ciphertext from switchboard-seal, bound to the seal contexts the domain
-- crate defines, so a row copied elsewhere does not open.
--
-- Migrations are append-only: never edit this file once released; add a new one instead.

-- Existing connectors keep what they had: one credential shared by the organization. A
-- constant default makes this a catalog-only change, with no table rewrite.
ALTER TABLE connectors
    ADD COLUMN credential_scope TEXT NOT NULL DEFAULT 'shared',
    -- Public documents only (the protected resource and authorization server metadata).
    ADD COLUMN auth_detail JSONB;

-- Switchboard's client identity at an authorization server, per connector: registrations are
-- not shared between connectors, so deleting one connector never breaks another.
CREATE TABLE oauth_clients (
    id           UUID   PRIMARY KEY,
    connector_id UUID   NOT NULL REFERENCES connectors (id) ON DELETE CASCADE,
    -- The authorization server's issuer identifier (RFC 8414).
    issuer       TEXT   NOT NULL,
    source       TEXT   NOT NULL,
    sealed       TEXT   NOT NULL,
    created_at   BIGINT NOT NULL,
    CONSTRAINT oauth_clients_connector_id_issuer_key UNIQUE (connector_id, issuer)
);

-- The tokens one holder has for one connector: the organization's (user_id NULL) or a
-- member's. One per holder, with two partial indexes as for connector_credentials.
CREATE TABLE oauth_grants (
    id           UUID   PRIMARY KEY,
    connector_id UUID   NOT NULL REFERENCES connectors (id) ON DELETE CASCADE,
    user_id      UUID   REFERENCES users (id) ON DELETE CASCADE,
    issuer       TEXT   NOT NULL,
    status       TEXT   NOT NULL,
    reason       TEXT,
    sealed       TEXT   NOT NULL,
    -- When the access token expires; NULL if the server did not say.
    expires_at   BIGINT,
    -- Goes up whenever new tokens are stored.
    version      BIGINT NOT NULL,
    -- The refresh lease: which process may spend the refresh token, and until when.
    lease_holder TEXT,
    lease_until  BIGINT,
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL
);
CREATE UNIQUE INDEX oauth_grants_org_key
    ON oauth_grants (connector_id) WHERE user_id IS NULL;
CREATE UNIQUE INDEX oauth_grants_member_key
    ON oauth_grants (connector_id, user_id) WHERE user_id IS NOT NULL;
CREATE INDEX oauth_grants_user_id_idx ON oauth_grants (user_id);

-- Authorizations between the redirect to the authorization server and the callback. They live
-- here rather than in memory because any replica may receive the callback.
CREATE TABLE oauth_pending (
    -- SHA-256 of the state parameter; the state itself is never stored.
    state_hash     TEXT   PRIMARY KEY,
    org_id         UUID   NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    connector_id   UUID   NOT NULL REFERENCES connectors (id) ON DELETE CASCADE,
    -- Who started it.
    user_id        UUID   NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    -- Who will hold the grant: NULL for the organization.
    holder_user_id UUID   REFERENCES users (id) ON DELETE CASCADE,
    binding_hash   TEXT   NOT NULL,
    sealed         TEXT   NOT NULL,
    created_at     BIGINT NOT NULL,
    expires_at     BIGINT NOT NULL
);
CREATE INDEX oauth_pending_expires_at_idx ON oauth_pending (expires_at);
CREATE INDEX oauth_pending_connector_id_idx ON oauth_pending (connector_id);
CREATE INDEX oauth_pending_user_id_idx ON oauth_pending (user_id);
CREATE INDEX oauth_pending_holder_user_id_idx ON oauth_pending (holder_user_id);
