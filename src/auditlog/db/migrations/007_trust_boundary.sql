-- 007: the trust boundary. PostgreSQL itself checks every append, one login role per duty,
-- key administration, the retention floor and two-person approval. See docs/integrity.md
-- (threat model) and docs/operations.md (which credential each process holds).

-- --- roles -------------------------------------------------------------------------------
-- Group roles (NOLOGIN) carry privileges; login roles are what processes authenticate as.
--   auditlog_writer     append events (checked below), SIEM delivery state, the directory cache
--   auditlog_reader     read everything but secrets
--   auditlog_retention  policies, holds, approvals, archive records, the purge (+ append)
--   auditlog_keyadmin   register and retire signing keys (+ append)
--   auditlog_streamer   the SIEM worker: read events and checkpoints, keep its cursors (+ append)
-- Logins: auditlog_ingest (was auditlog_app: writer only), auditlog_dashboard (reader, and
-- writer for its own self-audit events and SIEM settings), auditlog_retention_admin,
-- auditlog_key_admin, auditlog_stream.
DO $$
BEGIN
  IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'auditlog_app')
     AND NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'auditlog_ingest') THEN
    ALTER ROLE auditlog_app RENAME TO auditlog_ingest;
  END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'auditlog_ingest') THEN
    CREATE ROLE auditlog_ingest LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE IN ROLE auditlog_writer;
  END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'auditlog_keyadmin') THEN
    CREATE ROLE auditlog_keyadmin NOLOGIN IN ROLE auditlog_writer;
  END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'auditlog_streamer') THEN
    CREATE ROLE auditlog_streamer NOLOGIN IN ROLE auditlog_writer, auditlog_reader;
  END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'auditlog_retention_admin') THEN
    CREATE ROLE auditlog_retention_admin LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE
      IN ROLE auditlog_retention;
  END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'auditlog_key_admin') THEN
    CREATE ROLE auditlog_key_admin LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE
      IN ROLE auditlog_keyadmin;
  END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'auditlog_stream') THEN
    CREATE ROLE auditlog_stream LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE
      IN ROLE auditlog_streamer;
  END IF;
  IF NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
    EXECUTE format('GRANT auditlog_keyadmin, auditlog_streamer TO %I', current_user);
  END IF;
END $$;
-- The ingest login appends and nothing else: no retention (and so no purge), no keys.
REVOKE auditlog_retention FROM auditlog_ingest;
GRANT auditlog_writer TO auditlog_dashboard;

-- The writer reaches keys, checkpoints and purge anchors only through the functions below.
REVOKE ALL ON signing_keys, checkpoints, purge_anchors FROM auditlog_writer;
REVOKE ALL ON SEQUENCE checkpoints_id_seq FROM auditlog_writer;
GRANT SELECT ON signing_keys, checkpoints, purge_anchors TO auditlog_streamer;
GRANT SELECT ON signing_keys TO auditlog_keyadmin, auditlog_retention;
GRANT INSERT ON signing_keys TO auditlog_keyadmin;
GRANT SELECT ON checkpoints, purge_anchors TO auditlog_retention;

-- --- signing keys: registered and retired by the key administrator -------------------------
ALTER TABLE signing_keys ADD COLUMN registered_by text;
CREATE TABLE signing_key_retirements (
    key_id      text        PRIMARY KEY REFERENCES signing_keys (key_id),
    retired_at  timestamptz NOT NULL DEFAULT now(),
    retired_by  text        NOT NULL,
    reason      text        NOT NULL CHECK (btrim(reason) <> '')
);
CREATE TRIGGER signing_key_retirements_no_update_delete BEFORE UPDATE OR DELETE
  ON signing_key_retirements FOR EACH ROW EXECUTE FUNCTION auditlog_refuse_change();
CREATE TRIGGER signing_key_retirements_no_truncate BEFORE TRUNCATE
  ON signing_key_retirements FOR EACH STATEMENT EXECUTE FUNCTION auditlog_refuse_change();
ALTER TABLE signing_key_retirements ENABLE ALWAYS TRIGGER signing_key_retirements_no_update_delete;
ALTER TABLE signing_key_retirements ENABLE ALWAYS TRIGGER signing_key_retirements_no_truncate;
ALTER TABLE signing_key_retirements OWNER TO auditlog_owner;
REVOKE ALL ON signing_key_retirements FROM PUBLIC;
GRANT SELECT ON signing_key_retirements TO auditlog_reader, auditlog_streamer, auditlog_keyadmin;
GRANT INSERT ON signing_key_retirements TO auditlog_keyadmin;

-- A retired key signs nothing more: checked on every checkpoint row, whoever inserts it
-- (auditlog_add_checkpoint of 006 included).
CREATE FUNCTION auditlog_checkpoint_key_guard() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
BEGIN
  IF EXISTS (SELECT 1 FROM signing_key_retirements WHERE key_id = NEW.key_id) THEN
    RAISE EXCEPTION 'auditlog: signing key % was retired; it signs no more checkpoints',
      NEW.key_id USING ERRCODE = 'insufficient_privilege';
  END IF;
  RETURN NEW;
END $$;
ALTER FUNCTION auditlog_checkpoint_key_guard() OWNER TO auditlog_owner;
REVOKE ALL ON FUNCTION auditlog_checkpoint_key_guard() FROM PUBLIC;
CREATE TRIGGER checkpoints_key_guard BEFORE INSERT ON checkpoints
  FOR EACH ROW EXECUTE FUNCTION auditlog_checkpoint_key_guard();
ALTER TABLE checkpoints ENABLE ALWAYS TRIGGER checkpoints_key_guard;

-- 'active', 'retired' or NULL (not registered): what a writer may ask of its own key.
CREATE FUNCTION auditlog_key_status(p_key_id text) RETURNS text
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
  SELECT CASE WHEN r.key_id IS NOT NULL THEN 'retired' ELSE 'active' END
  FROM signing_keys k LEFT JOIN signing_key_retirements r USING (key_id)
  WHERE k.key_id = p_key_id
$$;

-- The head a new row of ``p_category`` must extend: (seq, entry_hash, recorded_at) of its
-- newest row, else its newest purge anchor's (recorded_at NULL), else (0, zeros, NULL).
CREATE FUNCTION auditlog_chain_head(p_category text,
  OUT seq bigint, OUT entry_hash bytea, OUT recorded_at timestamptz)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
BEGIN
  SELECT e.seq, e.entry_hash, e.recorded_at INTO seq, entry_hash, recorded_at FROM events e
    WHERE e.category = p_category ORDER BY e.seq DESC LIMIT 1;
  IF FOUND THEN
    RETURN;
  END IF;
  SELECT a.seq, a.entry_hash INTO seq, entry_hash FROM purge_anchors a
    WHERE a.category = p_category ORDER BY a.seq DESC LIMIT 1;
  IF NOT FOUND THEN
    seq := 0;
    entry_hash := '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea;
  END IF;
END $$;

-- --- appends, checked by the database ----------------------------------------------------
-- Every inserted row must extend its chain: seq = head + 1, prev_hash = the head's entry_hash
-- (or the purge anchor's), entry_hash = SHA-256(prev_hash || record), every column equal to
-- its value in the record, recorded_at a reading of the server clock within this
-- transaction, never before the head's. Two triggers share the work:
--   auditlog_append_check   BEFORE INSERT, per row, while a COPY streams in: the hash, and
--                           every column DERIVED from the hashed record (an insert names only
--                           record, prev_hash and entry_hash; one that sets a column itself is
--                           refused), so a column cannot differ from what was hashed;
--   auditlog_append_links   AFTER INSERT, per statement, over the inserted rows at once:
--                           each row's predecessor (or the purge anchor), and its time.
-- The first is ENABLE ALWAYS (rows without it would have no columns); the second ENABLE:
-- only a superuser can set session_replication_role = replica to skip it (a superuser is
-- outside this boundary anyway; see the threat model), which loads backdated demo and test
-- data.
CREATE FUNCTION auditlog_append_check() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
  r jsonb;
BEGIN
  IF NEW.entry_hash IS DISTINCT FROM sha256(NEW.prev_hash || convert_to(NEW.record, 'UTF8')) THEN
    RAISE EXCEPTION 'auditlog: entry_hash is not SHA-256(prev_hash || record) (record %)',
      left(NEW.record, 80) USING ERRCODE = 'integrity_constraint_violation';
  END IF;
  -- (ROW(...) IS NULL: every field is NULL; IS NOT NULL would need every field set)
  IF NOT ROW(NEW.action, NEW.actor, NEW.after, NEW.before, NEW.category, NEW.clock_skew,
             NEW.correlation_id, NEW.details, NEW.event_id, NEW.occurred_at, NEW.occurred_offset,
             NEW.outcome, NEW.recorded_at, NEW.seq, NEW.source_ip, NEW.target, NEW.user_agent)
         IS NULL THEN
    RAISE EXCEPTION 'auditlog: the event columns are derived from the hashed record; insert '
      'only record, prev_hash and entry_hash' USING ERRCODE = 'integrity_constraint_violation';
  END IF;
  r := NEW.record::jsonb;
  IF jsonb_typeof(r) IS DISTINCT FROM 'object'
     OR NOT r ?& ARRAY['action', 'actor', 'after', 'before', 'category', 'clock_skew',
                       'correlation_id', 'details', 'event_id', 'occurred_at', 'occurred_offset',
                       'outcome', 'recorded_at', 'seq', 'source_ip', 'target', 'user_agent']
     OR r - ARRAY['action', 'actor', 'after', 'before', 'category', 'clock_skew',
                  'correlation_id', 'details', 'event_id', 'occurred_at', 'occurred_offset',
                  'outcome', 'recorded_at', 'seq', 'source_ip', 'target', 'user_agent']
        <> '{}'::jsonb THEN
    RAISE EXCEPTION 'auditlog: the record must hold exactly the hashed fields (record %)',
      left(NEW.record, 80) USING ERRCODE = 'integrity_constraint_violation';
  END IF;
  -- every column from the record, in C (a JSON null is stored as SQL NULL); the table's
  -- NOT NULL and CHECK constraints then apply to what the record says
  NEW := jsonb_populate_record(NEW, r);
  RETURN NEW;
END $$;

-- The links, for all rows of the statement at once (an AFTER statement trigger sees them all
-- in the table). A row whose predecessor seq is not in the table must be the first after
-- the category's purge anchor (or seq 1 with the zero hash): the rows of a purged prefix are
-- gone, every other seq below the head is present (induction over checked appends).
CREATE FUNCTION auditlog_append_links() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
  bad record;
BEGIN
  WITH anchor AS (   -- where each category's chain starts: its newest purge anchor, or 0
    SELECT c.category, coalesce(pa.seq, 0) AS seq,
           coalesce(pa.entry_hash, '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea) AS entry_hash
      FROM (SELECT DISTINCT category FROM added) c
      LEFT JOIN LATERAL (SELECT seq, entry_hash FROM purge_anchors
                          WHERE category = c.category ORDER BY seq DESC LIMIT 1) pa ON true
  )
  SELECT a.category, a.seq, a.recorded_at, p.seq AS p_seq, x.seq AS anchor_seq,
         a.prev_hash IS NOT DISTINCT FROM coalesce(p.entry_hash, x.entry_hash) AS linked
    INTO bad
    FROM added a
    JOIN anchor x ON x.category = a.category
    LEFT JOIN events p ON p.category = a.category AND p.seq = a.seq - 1
   WHERE (p.seq IS NULL AND a.seq <> x.seq + 1)
      OR a.prev_hash IS DISTINCT FROM coalesce(p.entry_hash, x.entry_hash)
      OR NOT a.recorded_at BETWEEN greatest(now(), p.recorded_at)
                               AND greatest(clock_timestamp(), p.recorded_at)
   ORDER BY a.category, a.seq
   LIMIT 1;
  IF NOT FOUND THEN
    RETURN NULL;
  END IF;
  IF bad.p_seq IS NULL AND bad.seq <> bad.anchor_seq + 1 THEN
    RAISE EXCEPTION 'auditlog: % seq % does not extend the chain (its head is seq %)',
      bad.category, bad.seq,
      (SELECT coalesce(max(e.seq), bad.anchor_seq) FROM events e
        WHERE e.category = bad.category AND e.seq < bad.seq)
      USING ERRCODE = 'integrity_constraint_violation';
  END IF;
  IF NOT bad.linked THEN
    RAISE EXCEPTION 'auditlog: % seq %: prev_hash is not the entry_hash of seq %',
      bad.category, bad.seq, bad.seq - 1 USING ERRCODE = 'integrity_constraint_violation';
  END IF;
  RAISE EXCEPTION 'auditlog: % seq %: recorded_at % is not the server clock of this transaction',
    bad.category, bad.seq, bad.recorded_at
    USING ERRCODE = 'integrity_constraint_violation',
          HINT = 'recorded_at comes from clock_timestamp() inside the inserting transaction, '
                 'never before the chain head''s';
END $$;

ALTER FUNCTION auditlog_append_check() OWNER TO auditlog_owner;
ALTER FUNCTION auditlog_append_links() OWNER TO auditlog_owner;
ALTER FUNCTION auditlog_chain_head(text) OWNER TO auditlog_owner;
ALTER FUNCTION auditlog_key_status(text) OWNER TO auditlog_owner;
REVOKE ALL ON FUNCTION auditlog_append_check(), auditlog_append_links(),
  auditlog_chain_head(text), auditlog_key_status(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION auditlog_chain_head(text), auditlog_key_status(text)
  TO auditlog_writer, auditlog_reader;
CREATE TRIGGER events_append_check BEFORE INSERT ON events
  FOR EACH ROW EXECUTE FUNCTION auditlog_append_check();
ALTER TABLE events ENABLE ALWAYS TRIGGER events_append_check;
CREATE TRIGGER events_append_links AFTER INSERT ON events
  REFERENCING NEW TABLE AS added FOR EACH STATEMENT EXECUTE FUNCTION auditlog_append_links();

-- Every timestamp a stored event holds is one a client's calendar can represent.
ALTER TABLE events ADD CONSTRAINT events_occurred_at_range
  CHECK (occurred_at >= '0001-01-01T00:00:00Z' AND occurred_at < '10000-01-01T00:00:00Z');

-- --- retention rules: the floor and two-person approval, held by the database --------------
-- One row. Changed only by the owner (a migration) or a superuser: no application role may.
CREATE TABLE retention_rules (
    one              boolean PRIMARY KEY DEFAULT true CHECK (one),
    floor_days       integer NOT NULL DEFAULT 365 CHECK (floor_days >= 1),
    require_approval boolean NOT NULL DEFAULT false
);
INSERT INTO retention_rules DEFAULT VALUES;
ALTER TABLE retention_rules OWNER TO auditlog_owner;
REVOKE ALL ON retention_rules FROM PUBLIC;
GRANT SELECT ON retention_rules TO auditlog_reader, auditlog_retention, auditlog_purger;

-- A policy row takes effect only above the floor and, when it carries a proposal's change id
-- (and always when approval is required), only with that proposal's approval by a different
-- recorded approver, with the proposed values.
CREATE FUNCTION auditlog_policy_guard() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
  rules retention_rules%ROWTYPE;
  p     retention_proposals%ROWTYPE;
  d     retention_decisions%ROWTYPE;
BEGIN
  SELECT * INTO rules FROM retention_rules;
  IF NEW.days < rules.floor_days THEN
    RAISE EXCEPTION 'auditlog: % days is below the retention floor of % days', NEW.days,
      rules.floor_days USING ERRCODE = 'check_violation',
      HINT = 'the floor is changed only by the database owner or a superuser';
  END IF;
  SELECT * INTO p FROM retention_proposals WHERE change_id = NEW.change_id;
  IF NOT FOUND THEN
    IF rules.require_approval THEN
      RAISE EXCEPTION 'auditlog: retention changes need a proposal approved by a second person'
        USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
  END IF;
  SELECT * INTO d FROM retention_decisions WHERE change_id = NEW.change_id;
  IF NOT FOUND OR d.decision <> 'approved' THEN
    RAISE EXCEPTION 'auditlog: proposal % has not been approved', NEW.change_id
      USING ERRCODE = 'insufficient_privilege';
  END IF;
  IF d.decided_by = p.proposed_by OR NEW.proposed_by IS DISTINCT FROM p.proposed_by
     OR NEW.approved_by IS DISTINCT FROM d.decided_by THEN
    RAISE EXCEPTION 'auditlog: proposal % must be approved by someone other than its proposer',
      NEW.change_id USING ERRCODE = 'insufficient_privilege';
  END IF;
  IF ROW(NEW.category, NEW.days, NEW.archive_days)
     IS DISTINCT FROM ROW(p.category, p.days, p.archive_days) THEN
    RAISE EXCEPTION 'auditlog: policy differs from what proposal % proposed', NEW.change_id
      USING ERRCODE = 'insufficient_privilege';
  END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER retention_policies_guard BEFORE INSERT ON retention_policies
  FOR EACH ROW EXECUTE FUNCTION auditlog_policy_guard();
ALTER TABLE retention_policies ENABLE ALWAYS TRIGGER retention_policies_guard;

CREATE FUNCTION auditlog_decision_guard() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
BEGIN
  IF NEW.decision = 'approved' AND EXISTS (
       SELECT 1 FROM retention_proposals
       WHERE change_id = NEW.change_id AND proposed_by = NEW.decided_by) THEN
    RAISE EXCEPTION 'auditlog: % cannot approve their own proposal %', NEW.decided_by,
      NEW.change_id USING ERRCODE = 'insufficient_privilege';
  END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER retention_decisions_guard BEFORE INSERT ON retention_decisions
  FOR EACH ROW EXECUTE FUNCTION auditlog_decision_guard();
ALTER TABLE retention_decisions ENABLE ALWAYS TRIGGER retention_decisions_guard;
ALTER FUNCTION auditlog_policy_guard() OWNER TO auditlog_owner;
ALTER FUNCTION auditlog_decision_guard() OWNER TO auditlog_owner;
REVOKE ALL ON FUNCTION auditlog_policy_guard(), auditlog_decision_guard() FROM PUBLIC;

-- --- the purge: refuses rows younger than the floor, whoever calls it ------------------------
-- As in 003, plus the floor (read here, not taken from the caller or the policy).
CREATE OR REPLACE FUNCTION auditlog_purge(p_archive_id bigint, p_key_id text, p_signature bytea)
RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
  a          archives%ROWTYPE;
  anchor_seq bigint;
  p_days     integer;
  floor_days integer;
  n          bigint;
  newest     timestamptz;
  first_prev bytea;
  last_hash  bytea;
  deleted    bigint;
  anchor     bigint;
BEGIN
  SELECT category INTO a.category FROM archives WHERE id = p_archive_id;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'auditlog purge: archive % is not registered', p_archive_id
      USING ERRCODE = 'no_data_found';
  END IF;
  -- Policy/hold changes take the retention lock, writers the chain lock; always in this order.
  PERFORM pg_advisory_xact_lock(hashtext('auditlog:retention:' || a.category));
  PERFORM pg_advisory_xact_lock(hashtext('auditlog:' || a.category));
  SELECT * INTO a FROM archives WHERE id = p_archive_id FOR UPDATE;
  IF a.purged_at IS NOT NULL THEN
    RAISE EXCEPTION 'auditlog purge: archive % was already purged', a.id
      USING ERRCODE = 'object_not_in_prerequisite_state';
  END IF;
  IF p_key_id IS NULL OR p_signature IS NULL OR length(p_signature) <> 64 THEN
    RAISE EXCEPTION 'auditlog purge: a signed anchor (key id and Ed25519 signature) is required'
      USING ERRCODE = 'invalid_parameter_value';
  END IF;
  SELECT coalesce(max(seq), 0) INTO anchor_seq FROM purge_anchors WHERE category = a.category;
  IF a.first_seq <> anchor_seq + 1 THEN
    RAISE EXCEPTION 'auditlog purge: not a chain prefix: % is purged up to seq %, archive % starts at seq %',
      a.category, anchor_seq, a.id, a.first_seq USING ERRCODE = 'object_not_in_prerequisite_state';
  END IF;
  IF EXISTS (SELECT 1 FROM active_legal_holds WHERE category = a.category) THEN
    RAISE EXCEPTION 'auditlog purge: % is under legal hold; nothing of it is purged', a.category
      USING ERRCODE = 'object_not_in_prerequisite_state';
  END IF;
  SELECT days INTO p_days FROM retention_policies WHERE category = a.category
    ORDER BY id DESC LIMIT 1;
  IF p_days IS NULL THEN
    RAISE EXCEPTION 'auditlog purge: % has no retention policy; it is kept', a.category
      USING ERRCODE = 'object_not_in_prerequisite_state';
  END IF;
  SELECT count(*), max(recorded_at) INTO n, newest FROM events
    WHERE category = a.category AND seq BETWEEN a.first_seq AND a.last_seq;
  IF n <> a.row_count THEN
    RAISE EXCEPTION 'auditlog purge: % seq %..% holds % rows, archive % holds %',
      a.category, a.first_seq, a.last_seq, n, a.id, a.row_count
      USING ERRCODE = 'object_not_in_prerequisite_state';
  END IF;
  IF newest >= now() - make_interval(days => p_days) THEN
    RAISE EXCEPTION 'auditlog purge: % seq %..% is not past its % days of retention (newest %)',
      a.category, a.first_seq, a.last_seq, p_days, newest
      USING ERRCODE = 'object_not_in_prerequisite_state';
  END IF;
  SELECT r.floor_days INTO floor_days FROM retention_rules r;
  IF newest >= now() - make_interval(days => floor_days) THEN
    RAISE EXCEPTION 'auditlog purge: % seq %..% is younger than the retention floor of % days (newest %)',
      a.category, a.first_seq, a.last_seq, floor_days, newest
      USING ERRCODE = 'object_not_in_prerequisite_state';
  END IF;
  SELECT prev_hash INTO first_prev FROM events WHERE category = a.category AND seq = a.first_seq;
  SELECT entry_hash INTO last_hash FROM events WHERE category = a.category AND seq = a.last_seq;
  IF first_prev <> a.first_prev_hash OR last_hash <> a.last_entry_hash THEN
    RAISE EXCEPTION 'auditlog purge: archive % hashes differ from % seq %..% in the table',
      a.id, a.category, a.first_seq, a.last_seq
      USING ERRCODE = 'object_not_in_prerequisite_state';
  END IF;
  DELETE FROM events WHERE category = a.category AND seq BETWEEN a.first_seq AND a.last_seq;
  GET DIAGNOSTICS deleted = ROW_COUNT;
  INSERT INTO purge_anchors (category, seq, entry_hash, key_id, signature)
    VALUES (a.category, a.last_seq, a.last_entry_hash, p_key_id, p_signature)
    RETURNING id INTO anchor;
  UPDATE archives SET purged_at = now(), anchor_id = anchor WHERE id = a.id;
  RETURN deleted;
END $$;
