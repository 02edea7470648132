-- Chat storage: the organization's language model and how far it trusts tool output, the
-- members' conversations, their turns (the chat state machine's state, saved compare-and-swap
-- on a version), the history of ended turns, and the stream of events a client resumes from.
-- Tables and columns follow switchboard_store::SCHEMA exactly, as in 0001: UUID ids, BIGINT
-- milliseconds, JSONB, enums as text without CHECK constraints, named unique constraints.
--
-- Migrations are append-only: never edit this file once released; add a new one instead.

-- Existing organizations get the defaults of OrgSettings. Constant defaults make this a
-- catalog-only change, with no table rewrite.
ALTER TABLE organizations
    ADD COLUMN untrusted_content TEXT    NOT NULL DEFAULT 'strict',
    ADD COLUMN sampling          BOOLEAN NOT NULL DEFAULT false;

-- The organization's language model, at most one.
CREATE TABLE chat_models (
    org_id     UUID   PRIMARY KEY REFERENCES organizations (id) ON DELETE CASCADE,
    kind       TEXT   NOT NULL,
    base_url   TEXT   NOT NULL,
    model      TEXT   NOT NULL,
    -- The API key, sealed for chat_model_seal_context(org); NULL if the provider needs none.
    sealed_key TEXT,
    updated_at BIGINT NOT NULL
);

-- A member's conversation. It belongs to the membership (which in turn belongs to the
-- organization and the user): removing the member from the organization removes their
-- conversations there.
CREATE TABLE conversations (
    id               UUID   PRIMARY KEY,
    org_id           UUID   NOT NULL,
    user_id          UUID   NOT NULL,
    title            TEXT   NOT NULL,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL,
    -- The last sequence numbers handed out to the conversation's messages and events. They are
    -- advanced in the transaction that appends, under this row's lock, so numbers are
    -- contiguous and never reused.
    last_message_seq BIGINT NOT NULL DEFAULT 0,
    last_event_seq   BIGINT NOT NULL DEFAULT 0,
    CONSTRAINT conversations_membership_fkey FOREIGN KEY (org_id, user_id)
        REFERENCES memberships (org_id, user_id) ON DELETE CASCADE
);
-- A member's list, most recently updated first; also serves the membership foreign key.
CREATE INDEX conversations_owner_idx ON conversations (org_id, user_id, updated_at);

-- The connectors whose functions the assistant may use in a conversation, in order. Deleting a
-- connector removes it from every conversation.
CREATE TABLE conversation_connectors (
    conversation_id UUID   NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    connector_id    UUID   NOT NULL REFERENCES connectors (id) ON DELETE CASCADE,
    position        BIGINT NOT NULL,
    CONSTRAINT conversation_connectors_pkey PRIMARY KEY (conversation_id, connector_id)
);
CREATE INDEX conversation_connectors_connector_id_idx ON conversation_connectors (connector_id);

-- One turn: a member's message and everything the assistant did to answer it.
CREATE TABLE chat_turns (
    id              UUID   PRIMARY KEY,
    conversation_id UUID   NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    -- The conversation's organization and member, copied so a turn read alone is scoped.
    org_id          UUID   NOT NULL,
    user_id         UUID   NOT NULL,
    status          TEXT   NOT NULL,
    -- The chat state machine's state, which the store keeps without reading it.
    state           JSONB  NOT NULL,
    -- Bumped by every save and claim: saves are compare-and-swap on it.
    version         BIGINT NOT NULL,
    -- Until when the process driving a running turn holds it.
    lease_until     BIGINT,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL
);
-- At most one turn per conversation that has not ended.
CREATE UNIQUE INDEX chat_turns_open_key ON chat_turns (conversation_id)
    WHERE status IN ('running', 'waiting');
CREATE INDEX chat_turns_conversation_id_idx ON chat_turns (conversation_id);
-- Finding running turns whose lease ran out.
CREATE INDEX chat_turns_stalled_idx ON chat_turns (status, lease_until);

-- The history: the messages of ended turns, numbered per conversation from 1.
CREATE TABLE chat_messages (
    conversation_id UUID   NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    seq             BIGINT NOT NULL,
    turn_id         UUID   NOT NULL REFERENCES chat_turns (id) ON DELETE CASCADE,
    body            JSONB  NOT NULL,
    created_at      BIGINT NOT NULL,
    CONSTRAINT chat_messages_pkey PRIMARY KEY (conversation_id, seq)
);
CREATE INDEX chat_messages_turn_id_idx ON chat_messages (turn_id);

-- The stream a client reads and resumes (the seq is the SSE event id), numbered per
-- conversation from 1.
CREATE TABLE chat_events (
    conversation_id UUID   NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    seq             BIGINT NOT NULL,
    turn_id         UUID   NOT NULL REFERENCES chat_turns (id) ON DELETE CASCADE,
    kind            TEXT   NOT NULL,
    data            JSONB  NOT NULL,
    created_at      BIGINT NOT NULL,
    CONSTRAINT chat_events_pkey PRIMARY KEY (conversation_id, seq)
);
CREATE INDEX chat_events_turn_id_idx ON chat_events (turn_id);
