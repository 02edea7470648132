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

DROP TRIGGER conversation_connectors_policy ON conversation_connectors;
DROP FUNCTION conversation_connectors_policy_changed();

CREATE FUNCTION chat_models_policy_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM bump_policy_generation(CASE WHEN TG_OP = 'DELETE' THEN OLD.org_id
                                        ELSE NEW.org_id END);
    RETURN NULL;
END
$$;
CREATE CONSTRAINT TRIGGER chat_models_policy
    AFTER INSERT OR UPDATE OR DELETE ON chat_models
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION chat_models_policy_changed();
