-- A notification says when a change moved a job's progress alone (status and message
-- as they were): '<id> <status> progress'. Waiters that show neither, such as the
-- status route's long-polls, are then not woken by it (store/changes.py).
CREATE OR REPLACE FUNCTION genai_jobs_announce() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND NEW.status = OLD.status AND NEW.message = OLD.message THEN
        PERFORM pg_notify('genai_jobs', NEW.id::text || ' ' || NEW.status || ' progress');
    ELSE
        PERFORM pg_notify('genai_jobs', NEW.id::text || ' ' || NEW.status);
    END IF;
    RETURN NULL;
END;
$$;
