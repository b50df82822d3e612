-- 008: SIEM leases (one worker per destination) and dead-letter re-drives. See docs/siem.md.
--
-- The lease itself is a session-level advisory lock held by the worker's own connection (it
-- dies with the process); siem_state only records who holds it, for the status view.
ALTER TABLE siem_state ADD COLUMN lease_holder text;
ALTER TABLE siem_state ADD COLUMN lease_since  timestamptz;

-- Re-drives of dead letters: one row per attempt, insert-only (like the dead letters
-- themselves). A dead letter counts as re-driven once an attempt has outcome 'delivered'.
-- Each request is also an audit event (siem.dead_letters_redriven, recorded by the library).
CREATE TABLE siem_redrives (
    id             bigserial   PRIMARY KEY,
    dead_letter_id bigint      NOT NULL REFERENCES siem_dead_letters (id),
    destination_id bigint      NOT NULL REFERENCES siem_destinations (id),
    requested_by   text        NOT NULL,
    reason         text,
    outcome        text        NOT NULL CHECK (outcome IN ('delivered', 'failed')),
    http_status    integer,
    error          text,
    attempted_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX siem_redrives_dead_letter ON siem_redrives (dead_letter_id, id DESC);

-- Insert-only, enforced by the database as for the audit tables (001's guard function).
CREATE TRIGGER siem_redrives_no_update_delete BEFORE UPDATE OR DELETE ON siem_redrives
    FOR EACH ROW EXECUTE FUNCTION auditlog_refuse_change();
CREATE TRIGGER siem_redrives_no_truncate BEFORE TRUNCATE ON siem_redrives
    FOR EACH STATEMENT EXECUTE FUNCTION auditlog_refuse_change();
ALTER TABLE siem_redrives ENABLE ALWAYS TRIGGER siem_redrives_no_update_delete;
ALTER TABLE siem_redrives ENABLE ALWAYS TRIGGER siem_redrives_no_truncate;

ALTER TABLE siem_redrives OWNER TO auditlog_owner;
REVOKE ALL ON siem_redrives FROM PUBLIC;
GRANT SELECT, INSERT ON siem_redrives TO auditlog_writer;
GRANT USAGE ON SEQUENCE siem_redrives_id_seq TO auditlog_writer;
GRANT SELECT ON siem_redrives TO auditlog_reader;
