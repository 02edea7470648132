-- The organization's policy generation: a counter the database advances on every write that
-- can change what a member's chat turn may do (connectors, functions and their floors and
-- review states, members' preferences, conversations' connector lists, the organization's
-- settings). A process keeps a turn's catalog in memory and saves the turn only while the
-- counter is where it read it (switchboard_store::ChatCatalog), so it never acts on a stale
-- policy, whichever process or tool changed it. Triggers keep the counter, so no write path
-- can forget to.
--
-- The triggers are deferred to the commit: the counter's row is then the last lock any
-- transaction takes, so it cannot take part in a deadlock.
--
-- The table holds no data of its own: it is left out of switchboard_store::SCHEMA and of
-- `db copy`, and an organization without a row is at generation 0. It has no foreign key;
-- an organization that is gone gets no counter.
--
-- Migrations are append-only: never edit this file once released; add a new one instead.

CREATE TABLE policy_generations (
    org_id     UUID   PRIMARY KEY,
    generation BIGINT NOT NULL
);

CREATE FUNCTION bump_policy_generation(org UUID) RETURNS void LANGUAGE sql AS $$
    INSERT INTO policy_generations (org_id, generation)
        SELECT o.id, 1 FROM organizations o WHERE o.id = org
    ON CONFLICT (org_id) DO UPDATE SET generation = policy_generations.generation + 1
$$;

CREATE FUNCTION connectors_policy_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM bump_policy_generation(OLD.org_id);
    ELSE
        PERFORM bump_policy_generation(NEW.org_id);
    END IF;
    RETURN NULL;
END
$$;

-- A function deleted with its connector finds no connector any more; the connector's own
-- trigger counts that change.
CREATE FUNCTION functions_policy_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM bump_policy_generation(c.org_id) FROM connectors c
        WHERE c.id = CASE WHEN TG_OP = 'DELETE' THEN OLD.connector_id ELSE NEW.connector_id END;
    RETURN NULL;
END
$$;

CREATE FUNCTION member_preferences_policy_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM bump_policy_generation(c.org_id)
        FROM functions f JOIN connectors c ON c.id = f.connector_id
        WHERE f.id = CASE WHEN TG_OP = 'DELETE' THEN OLD.function_id ELSE NEW.function_id END;
    RETURN NULL;
END
$$;

CREATE FUNCTION conversation_connectors_policy_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM bump_policy_generation(v.org_id) FROM conversations v
        WHERE v.id = CASE WHEN TG_OP = 'DELETE' THEN OLD.conversation_id
                          ELSE NEW.conversation_id END;
    RETURN NULL;
END
$$;

CREATE FUNCTION organizations_policy_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM bump_policy_generation(NEW.id);
    RETURN NULL;
END
$$;

CREATE CONSTRAINT TRIGGER connectors_policy AFTER INSERT OR UPDATE OR DELETE ON connectors
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION connectors_policy_changed();
CREATE CONSTRAINT TRIGGER functions_policy AFTER INSERT OR UPDATE OR DELETE ON functions
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION functions_policy_changed();
CREATE CONSTRAINT TRIGGER member_preferences_policy
    AFTER INSERT OR UPDATE OR DELETE ON member_preferences
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
    EXECUTE FUNCTION member_preferences_policy_changed();
CREATE CONSTRAINT TRIGGER conversation_connectors_policy
    AFTER INSERT OR DELETE ON conversation_connectors
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
    EXECUTE FUNCTION conversation_connectors_policy_changed();
CREATE CONSTRAINT TRIGGER organizations_policy
    AFTER UPDATE OF untrusted_content, sampling ON organizations
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION organizations_policy_changed();

-- The counter of an organization that is deleted goes with it.
CREATE FUNCTION organizations_policy_forget() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM policy_generations WHERE org_id = OLD.id;
    RETURN NULL;
END
$$;
CREATE TRIGGER organizations_policy_forget AFTER DELETE ON organizations
    FOR EACH ROW EXECUTE FUNCTION organizations_policy_forget();
