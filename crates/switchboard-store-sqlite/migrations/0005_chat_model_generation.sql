-- Two changes to what moves the policy generation (see 0004):
--
-- * The organization's model now moves it, so a process can keep the model with a member's
--   catalog and still never start a request on one an admin has replaced or removed.
-- * A conversation's connector list no longer moves it. The list is the member's own choice
--   of what a conversation offers, not a policy: a turn keeps the list it began with, and a
--   change applies from the next turn. Moving the whole organization's generation for it made
--   every new conversation throw away every member's catalog.
--
-- Migrations are append-only: never edit this file once released; add a new one instead.

DROP TRIGGER conversation_connectors_policy_insert;
DROP TRIGGER conversation_connectors_policy_delete;

CREATE TRIGGER chat_models_policy_insert AFTER INSERT ON chat_models BEGIN
    INSERT INTO policy_generations (org_id, generation) VALUES (NEW.org_id, 1)
        ON CONFLICT (org_id) DO UPDATE SET generation = generation + 1;
END;
CREATE TRIGGER chat_models_policy_update AFTER UPDATE ON chat_models BEGIN
    INSERT INTO policy_generations (org_id, generation) VALUES (NEW.org_id, 1)
        ON CONFLICT (org_id) DO UPDATE SET generation = generation + 1;
END;
-- A model deleted with its organization leaves no counter behind.
CREATE TRIGGER chat_models_policy_delete AFTER DELETE ON chat_models BEGIN
    INSERT INTO policy_generations (org_id, generation)
        SELECT o.id, 1 FROM organizations o WHERE o.id = OLD.org_id
        ON CONFLICT (org_id) DO UPDATE SET generation = generation + 1;
END;
