-- Chat storage: the organization's language model and how far it trusts tool output, the
-- members' conversations, their turns (the chat state machine's state, saved compare-and-swap
-- on a version), the history of ended turns, and the stream of events a client resumes from.
-- Every table and column added here is listed in switchboard_store::SCHEMA as well.
--
-- Types follow 0001: UUID BLOBs, INTEGER milliseconds, JSON as TEXT, enums as their text,
-- STRICT tables.
--
-- Migrations are append-only: never edit this file once released; add a new one instead.

-- Existing organizations get the defaults of OrgSettings.
ALTER TABLE organizations ADD COLUMN untrusted_content TEXT NOT NULL DEFAULT 'strict';
-- A boolean: SQLite has none, so 0 or 1.
ALTER TABLE organizations ADD COLUMN sampling INTEGER NOT NULL DEFAULT 0 CHECK (sampling IN (0, 1));

-- The organization's language model, at most one.
CREATE TABLE chat_models (
    org_id     BLOB    NOT NULL PRIMARY KEY REFERENCES organizations (id) ON DELETE CASCADE,
    kind       TEXT    NOT NULL,
    base_url   TEXT    NOT NULL,
    model      TEXT    NOT NULL,
    -- The API key, sealed for chat_model_seal_context(org); NULL if the provider needs none.
    sealed_key TEXT,
    updated_at INTEGER NOT NULL
) STRICT;

-- A member's conversation. It belongs to the membership (which in turn belongs to the
-- organization and the user): removing the member from the organization removes their
-- conversations there.
CREATE TABLE conversations (
    id               BLOB    NOT NULL PRIMARY KEY,
    org_id           BLOB    NOT NULL,
    user_id          BLOB    NOT NULL,
    title            TEXT    NOT NULL,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    -- The last sequence numbers handed out to the conversation's messages and events. They are
    -- advanced in the transaction that appends, so numbers are contiguous and never reused.
    last_message_seq INTEGER NOT NULL DEFAULT 0,
    last_event_seq   INTEGER NOT NULL DEFAULT 0,
    FOREIGN KEY (org_id, user_id) REFERENCES memberships (org_id, user_id) ON DELETE CASCADE
) STRICT;
-- A member's list, most recently updated first; also serves the membership foreign key.
CREATE INDEX conversations_owner_idx ON conversations (org_id, user_id, updated_at);

-- The connectors whose functions the assistant may use in a conversation, in order. Deleting a
-- connector removes it from every conversation.
CREATE TABLE conversation_connectors (
    conversation_id BLOB    NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    connector_id    BLOB    NOT NULL REFERENCES connectors (id) ON DELETE CASCADE,
    position        INTEGER NOT NULL,
    PRIMARY KEY (conversation_id, connector_id)
) STRICT;
CREATE INDEX conversation_connectors_connector_idx ON conversation_connectors (connector_id);

-- One turn: a member's message and everything the assistant did to answer it.
CREATE TABLE chat_turns (
    id              BLOB    NOT NULL PRIMARY KEY,
    conversation_id BLOB    NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    -- The conversation's organization and member, copied so a turn read alone is scoped.
    org_id          BLOB    NOT NULL,
    user_id         BLOB    NOT NULL,
    status          TEXT    NOT NULL,
    -- The chat state machine's state, which the store keeps without reading it.
    state           TEXT    NOT NULL,
    -- Bumped by every save and claim: saves are compare-and-swap on it.
    version         INTEGER NOT NULL,
    -- Until when the process driving a running turn holds it.
    lease_until     INTEGER,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
) STRICT;
-- At most one turn per conversation that has not ended.
CREATE UNIQUE INDEX chat_turns_open_key ON chat_turns (conversation_id)
    WHERE status IN ('running', 'waiting');
CREATE INDEX chat_turns_conversation_idx ON chat_turns (conversation_id);
-- Finding running turns whose lease ran out.
CREATE INDEX chat_turns_stalled_idx ON chat_turns (status, lease_until);

-- The history: the messages of ended turns, numbered per conversation from 1.
CREATE TABLE chat_messages (
    conversation_id BLOB    NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    seq             INTEGER NOT NULL,
    turn_id         BLOB    NOT NULL REFERENCES chat_turns (id) ON DELETE CASCADE,
    body            TEXT    NOT NULL,
    created_at      INTEGER NOT NULL,
    PRIMARY KEY (conversation_id, seq)
) STRICT;
CREATE INDEX chat_messages_turn_idx ON chat_messages (turn_id);

-- The stream a client reads and resumes (the seq is the SSE event id), numbered per
-- conversation from 1.
CREATE TABLE chat_events (
    conversation_id BLOB    NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    seq             INTEGER NOT NULL,
    turn_id         BLOB    NOT NULL REFERENCES chat_turns (id) ON DELETE CASCADE,
    kind            TEXT    NOT NULL,
    data            TEXT    NOT NULL,
    created_at      INTEGER NOT NULL,
    PRIMARY KEY (conversation_id, seq)
) STRICT;
CREATE INDEX chat_events_turn_idx ON chat_events (turn_id);
