-- The organization's policy generation: a counter the database advances on every write that
-- can change what a member's chat turn may do (connectors, functions and their floors and
-- review states, members' preferences, conversations' connector lists, the organization's
-- settings). A process keeps a turn's catalog in memory and saves the turn only while the
-- counter is where it read it (switchboard_store::ChatCatalog), so it never acts on a stale
-- policy, whichever process or tool changed it. Triggers keep the counter, so no write path
-- can forget to.
--
-- The table holds no data of its own: it is left out of switchboard_store::SCHEMA and of
-- `db copy`, and an organization without a row is at generation 0. It has no foreign key,
-- because the triggers run while an organization's rows are deleted with it.
--
-- Migrations are append-only: never edit this file once released; add a new one instead.

CREATE TABLE policy_generations (
    org_id     BLOB    NOT NULL PRIMARY KEY,
    generation INTEGER NOT NULL
) STRICT;

-- Connectors: any change of a row (status, auth method, credential scope, ...).
CREATE TRIGGER connectors_policy_insert AFTER INSERT ON connectors BEGIN
    INSERT INTO policy_generations (org_id, generation) VALUES (NEW.org_id, 1)
        ON CONFLICT (org_id) DO UPDATE SET generation = generation + 1;
END;
CREATE TRIGGER connectors_policy_update AFTER UPDATE ON connectors BEGIN
    INSERT INTO policy_generations (org_id, generation) VALUES (NEW.org_id, 1)
        ON CONFLICT (org_id) DO UPDATE SET generation = generation + 1;
END;
-- A connector deleted with its organization leaves no counter behind.
CREATE TRIGGER connectors_policy_delete AFTER DELETE ON connectors BEGIN
    INSERT INTO policy_generations (org_id, generation)
        SELECT o.id, 1 FROM organizations o WHERE o.id = OLD.org_id
        ON CONFLICT (org_id) DO UPDATE SET generation = generation + 1;
END;

-- Functions: definitions, review states, floors. A function deleted with its connector finds
-- no connector any more; the connector's own trigger counts that change.
CREATE TRIGGER functions_policy_insert AFTER INSERT ON functions BEGIN
    INSERT INTO policy_generations (org_id, generation)
        SELECT c.org_id, 1 FROM connectors c WHERE c.id = NEW.connector_id
        ON CONFLICT (org_id) DO UPDATE SET generation = generation + 1;
END;
CREATE TRIGGER functions_policy_update AFTER UPDATE ON functions BEGIN
    INSERT INTO policy_generations (org_id, generation)
        SELECT c.org_id, 1 FROM connectors c WHERE c.id = NEW.connector_id
        ON CONFLICT (org_id) DO UPDATE SET generation = generation + 1;
END;
CREATE TRIGGER functions_policy_delete AFTER DELETE ON functions BEGIN
    INSERT INTO policy_generations (org_id, generation)
        SELECT c.org_id, 1 FROM connectors c WHERE c.id = OLD.connector_id
        ON CONFLICT (org_id) DO UPDATE SET generation = generation + 1;
END;

-- Members' preferences.
CREATE TRIGGER member_preferences_policy_insert AFTER INSERT ON member_preferences BEGIN
    INSERT INTO policy_generations (org_id, generation)
        SELECT c.org_id, 1 FROM functions f JOIN connectors c ON c.id = f.connector_id
        WHERE f.id = NEW.function_id
        ON CONFLICT (org_id) DO UPDATE SET generation = generation + 1;
END;
CREATE TRIGGER member_preferences_policy_update AFTER UPDATE ON member_preferences BEGIN
    INSERT INTO policy_generations (org_id, generation)
        SELECT c.org_id, 1 FROM functions f JOIN connectors c ON c.id = f.connector_id
        WHERE f.id = NEW.function_id
        ON CONFLICT (org_id) DO UPDATE SET generation = generation + 1;
END;
CREATE TRIGGER member_preferences_policy_delete AFTER DELETE ON member_preferences BEGIN
    INSERT INTO policy_generations (org_id, generation)
        SELECT c.org_id, 1 FROM functions f JOIN connectors c ON c.id = f.connector_id
        WHERE f.id = OLD.function_id
        ON CONFLICT (org_id) DO UPDATE SET generation = generation + 1;
END;

-- Conversations' connector lists.
CREATE TRIGGER conversation_connectors_policy_insert AFTER INSERT ON conversation_connectors
BEGIN
    INSERT INTO policy_generations (org_id, generation)
        SELECT v.org_id, 1 FROM conversations v WHERE v.id = NEW.conversation_id
        ON CONFLICT (org_id) DO UPDATE SET generation = generation + 1;
END;
CREATE TRIGGER conversation_connectors_policy_delete AFTER DELETE ON conversation_connectors
BEGIN
    INSERT INTO policy_generations (org_id, generation)
        SELECT v.org_id, 1 FROM conversations v WHERE v.id = OLD.conversation_id
        ON CONFLICT (org_id) DO UPDATE SET generation = generation + 1;
END;

-- The organization's settings that turns read.
CREATE TRIGGER organizations_policy_settings AFTER UPDATE OF untrusted_content, sampling
    ON organizations BEGIN
    INSERT INTO policy_generations (org_id, generation) VALUES (NEW.id, 1)
        ON CONFLICT (org_id) DO UPDATE SET generation = generation + 1;
END;
CREATE TRIGGER organizations_policy_forget AFTER DELETE ON organizations BEGIN
    DELETE FROM policy_generations WHERE org_id = OLD.id;
END;
