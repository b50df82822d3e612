-- 003: retention. Policies (append-only history, proposals and decisions), legal holds,
-- archives, and the one purge function. See docs/retention.md.
--
-- Roles:
--   auditlog_retention  NOLOGIN, member of auditlog_writer. Changes policies and holds,
--                       registers archives, and may EXECUTE auditlog_purge. Granted to
--                       auditlog_app so the CLI and the dashboard (which log in as it) can
--                       SET ROLE to it; a deployment may instead grant it only to the login of
--                       its retention job and its compliance console.
--   auditlog_purger     NOLOGIN, nobody's role: owns auditlog_purge (SECURITY DEFINER), the
--                       only code that can delete events (see auditlog_refuse_change in 001).
DO $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'auditlog_retention') THEN
    CREATE ROLE auditlog_retention NOLOGIN IN ROLE auditlog_writer;
  END IF;
END $$;
GRANT auditlog_retention TO auditlog_app;

-- A migrating user that is not a superuser must be able to hand the function to the purger.
DO $$
BEGIN
  IF NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
    EXECUTE format('GRANT auditlog_retention, auditlog_purger TO %I', current_user);
  END IF;
END $$;

-- Every policy that took effect, oldest first; the current policy of a category is its last row.
-- A category without a row has no policy: nothing of it is ever archived or purged.
CREATE TABLE retention_policies (
    id            bigserial   PRIMARY KEY,
    category      text        NOT NULL CHECK (category IN ('configuration', 'governance', 'user_activity')),
    days          integer     NOT NULL CHECK (days >= 1),
    archive_days  integer     NOT NULL CHECK (archive_days >= 0),
    effective_at  timestamptz NOT NULL DEFAULT now(),
    change_id     uuid        NOT NULL UNIQUE,
    proposed_by   text        NOT NULL,
    approved_by   text,
    reason        text        NOT NULL CHECK (btrim(reason) <> '')
);
CREATE INDEX retention_policies_current ON retention_policies (category, id DESC);

-- Changes waiting for a second compliance lead (require_approval), and what became of them.
CREATE TABLE retention_proposals (
    change_id     uuid        PRIMARY KEY,
    category      text        NOT NULL CHECK (category IN ('configuration', 'governance', 'user_activity')),
    days          integer     NOT NULL CHECK (days >= 1),
    archive_days  integer     NOT NULL CHECK (archive_days >= 0),
    reason        text        NOT NULL CHECK (btrim(reason) <> ''),
    proposed_by   text        NOT NULL,
    proposed_at   timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE retention_decisions (
    change_id     uuid        PRIMARY KEY REFERENCES retention_proposals (change_id),
    decision      text        NOT NULL CHECK (decision IN ('approved', 'rejected')),
    decided_by    text        NOT NULL,
    decided_at    timestamptz NOT NULL DEFAULT now(),
    reason        text
);

-- Legal holds: a hold is active until it has a release.
CREATE TABLE legal_holds (
    id            bigserial   PRIMARY KEY,
    category      text        NOT NULL CHECK (category IN ('configuration', 'governance', 'user_activity')),
    case_name     text        NOT NULL CHECK (btrim(case_name) <> ''),
    reason        text        NOT NULL CHECK (btrim(reason) <> ''),
    placed_by     text        NOT NULL,
    placed_at     timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE legal_hold_releases (
    hold_id       bigint      PRIMARY KEY REFERENCES legal_holds (id),
    reason        text        NOT NULL CHECK (btrim(reason) <> ''),
    released_by   text        NOT NULL,
    released_at   timestamptz NOT NULL DEFAULT now()
);
CREATE VIEW active_legal_holds AS
    SELECT h.id, h.category, h.case_name, h.reason, h.placed_by, h.placed_at
    FROM legal_holds h
    WHERE NOT EXISTS (SELECT 1 FROM legal_hold_releases r WHERE r.hold_id = h.id);

-- One row per archive file: the chain range it holds and its hashes (fixed once registered),
-- then the steps that follow (each set once, never changed): its retention.archived event,
-- the purge (by auditlog_purge only), its retention.purged event, the deletion of the file
-- after the archive period, and that deletion's event.
CREATE TABLE archives (
    id                bigserial   PRIMARY KEY,
    category          text        NOT NULL CHECK (category IN ('configuration', 'governance', 'user_activity')),
    month             date        NOT NULL CHECK (extract(day FROM month) = 1),
    first_seq         bigint      NOT NULL CHECK (first_seq >= 1),
    last_seq          bigint      NOT NULL,
    row_count         bigint      NOT NULL,
    first_prev_hash   bytea       NOT NULL CHECK (length(first_prev_hash) = 32),
    last_entry_hash   bytea       NOT NULL CHECK (length(last_entry_hash) = 32),
    first_recorded_at timestamptz NOT NULL,
    last_recorded_at  timestamptz NOT NULL,
    path              text        NOT NULL,
    file_sha256       bytea       NOT NULL CHECK (length(file_sha256) = 32),
    manifest_sha256   bytea       NOT NULL CHECK (length(manifest_sha256) = 32),
    bytes             bigint      NOT NULL,
    created_at        timestamptz NOT NULL DEFAULT now(),
    archived_event    uuid,
    purged_at         timestamptz,
    anchor_id         bigint      REFERENCES purge_anchors (id),
    purged_event      uuid,
    deleted_at        timestamptz,
    deleted_event     uuid,
    CHECK (last_seq >= first_seq AND row_count = last_seq - first_seq + 1),
    UNIQUE (category, first_seq),
    UNIQUE (category, month)
);

-- Archives: the range and hashes never change; each later step is set once, in order; the
-- purge is marked only by the purge function; a file is marked deleted only after its archive
-- period under the current policy and never under a legal hold.
CREATE FUNCTION auditlog_archive_guard() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  p_days integer;
  p_archive integer;
BEGIN
  IF TG_OP <> 'UPDATE' THEN
    RAISE EXCEPTION 'auditlog: % on archives is refused: archive records are kept', TG_OP
      USING ERRCODE = 'insufficient_privilege';
  END IF;
  IF ROW(NEW.id, NEW.category, NEW.month, NEW.first_seq, NEW.last_seq, NEW.row_count,
         NEW.first_prev_hash, NEW.last_entry_hash, NEW.first_recorded_at, NEW.last_recorded_at,
         NEW.path, NEW.file_sha256, NEW.manifest_sha256, NEW.bytes, NEW.created_at)
     IS DISTINCT FROM
     ROW(OLD.id, OLD.category, OLD.month, OLD.first_seq, OLD.last_seq, OLD.row_count,
         OLD.first_prev_hash, OLD.last_entry_hash, OLD.first_recorded_at, OLD.last_recorded_at,
         OLD.path, OLD.file_sha256, OLD.manifest_sha256, OLD.bytes, OLD.created_at) THEN
    RAISE EXCEPTION 'auditlog: an archive''s range, hashes and file are fixed once registered'
      USING ERRCODE = 'insufficient_privilege';
  END IF;
  IF (OLD.archived_event IS NOT NULL AND NEW.archived_event IS DISTINCT FROM OLD.archived_event)
     OR (OLD.purged_at IS NOT NULL AND NEW.purged_at IS DISTINCT FROM OLD.purged_at)
     OR (OLD.anchor_id IS NOT NULL AND NEW.anchor_id IS DISTINCT FROM OLD.anchor_id)
     OR (OLD.purged_event IS NOT NULL AND NEW.purged_event IS DISTINCT FROM OLD.purged_event)
     OR (OLD.deleted_at IS NOT NULL AND NEW.deleted_at IS DISTINCT FROM OLD.deleted_at)
     OR (OLD.deleted_event IS NOT NULL AND NEW.deleted_event IS DISTINCT FROM OLD.deleted_event) THEN
    RAISE EXCEPTION 'auditlog: archive % step already recorded; it cannot change', OLD.id
      USING ERRCODE = 'insufficient_privilege';
  END IF;
  IF NEW.purged_at IS DISTINCT FROM OLD.purged_at AND current_user <> 'auditlog_purger' THEN
    RAISE EXCEPTION 'auditlog: only the purge function marks an archive purged'
      USING ERRCODE = 'insufficient_privilege';
  END IF;
  IF NEW.deleted_at IS NOT NULL AND OLD.deleted_at IS NULL THEN
    IF NEW.purged_at IS NULL THEN
      RAISE EXCEPTION 'auditlog: archive % still backs rows in the events table; purge first', OLD.id
        USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF EXISTS (SELECT 1 FROM active_legal_holds WHERE category = NEW.category) THEN
      RAISE EXCEPTION 'auditlog: % is under legal hold; its archives are kept', NEW.category
        USING ERRCODE = 'insufficient_privilege';
    END IF;
    SELECT days, archive_days INTO p_days, p_archive FROM retention_policies
      WHERE category = NEW.category ORDER BY id DESC LIMIT 1;
    IF p_days IS NULL OR NEW.last_recorded_at >= now() - make_interval(days => p_days + p_archive) THEN
      RAISE EXCEPTION 'auditlog: archive % is within its archive period; it is kept', OLD.id
        USING ERRCODE = 'insufficient_privilege';
    END IF;
  END IF;
  RETURN NEW;
END $$;

CREATE TRIGGER archives_guard BEFORE UPDATE OR DELETE ON archives
  FOR EACH ROW EXECUTE FUNCTION auditlog_archive_guard();
CREATE TRIGGER archives_no_truncate BEFORE TRUNCATE ON archives
  FOR EACH STATEMENT EXECUTE FUNCTION auditlog_refuse_change();
ALTER TABLE archives ENABLE ALWAYS TRIGGER archives_guard;
ALTER TABLE archives ENABLE ALWAYS TRIGGER archives_no_truncate;
ALTER FUNCTION auditlog_archive_guard() OWNER TO auditlog_owner;

DO $$
DECLARE t text;
BEGIN
  FOREACH t IN ARRAY ARRAY['retention_policies', 'retention_proposals', 'retention_decisions',
                           'legal_holds', 'legal_hold_releases'] LOOP
    EXECUTE format('CREATE TRIGGER %1$s_no_update_delete BEFORE UPDATE OR DELETE ON %1$I
                    FOR EACH ROW EXECUTE FUNCTION auditlog_refuse_change()', t);
    EXECUTE format('CREATE TRIGGER %1$s_no_truncate BEFORE TRUNCATE ON %1$I
                    FOR EACH STATEMENT EXECUTE FUNCTION auditlog_refuse_change()', t);
    EXECUTE format('ALTER TABLE %1$I ENABLE ALWAYS TRIGGER %1$s_no_update_delete', t);
    EXECUTE format('ALTER TABLE %1$I ENABLE ALWAYS TRIGGER %1$s_no_truncate', t);
  END LOOP;
  FOREACH t IN ARRAY ARRAY['retention_policies', 'retention_proposals', 'retention_decisions',
                           'legal_holds', 'legal_hold_releases', 'archives',
                           'active_legal_holds'] LOOP
    EXECUTE format('ALTER TABLE %I OWNER TO auditlog_owner', t);
    EXECUTE format('REVOKE ALL ON %I FROM PUBLIC', t);
    EXECUTE format('GRANT SELECT ON %I TO auditlog_reader, auditlog_retention', t);
  END LOOP;
END $$;

GRANT INSERT ON retention_policies, retention_proposals, retention_decisions, legal_holds,
  legal_hold_releases, archives TO auditlog_retention;
GRANT UPDATE (archived_event, purged_event, deleted_at, deleted_event) ON archives
  TO auditlog_retention;
GRANT USAGE ON SEQUENCE retention_policies_id_seq, legal_holds_id_seq, archives_id_seq
  TO auditlog_retention;

-- The purger: read what the checks need, delete events, leave the anchor, mark the archive.
GRANT SELECT, DELETE ON events TO auditlog_purger;
GRANT SELECT ON retention_policies, legal_holds, legal_hold_releases, active_legal_holds,
  purge_anchors, archives TO auditlog_purger;
GRANT INSERT ON purge_anchors TO auditlog_purger;
GRANT USAGE ON SEQUENCE purge_anchors_id_seq TO auditlog_purger;
GRANT UPDATE (purged_at, anchor_id) ON archives TO auditlog_purger;

-- The only deletion path. Removes exactly the rows of one registered archive, and only when
-- they are the oldest rows left of the chain (a prefix), all older than the category's
-- current policy (computed here, not taken from the caller), with no legal hold, and with the
-- archive's hashes equal to the rows'. Leaves a purge anchor (the last purged seq and hash,
-- signed by the caller: the database holds no private key) and marks the archive purged, in
-- the caller's transaction. Returns the number of rows deleted.
CREATE FUNCTION auditlog_purge(p_archive_id bigint, p_key_id text, p_signature bytea)
RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
  a          archives%ROWTYPE;
  anchor_seq bigint;
  p_days     integer;
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
-- A non-superuser may hand a function only to a role that may create in the schema.
GRANT CREATE ON SCHEMA public TO auditlog_purger;
ALTER FUNCTION auditlog_purge(bigint, text, bytea) OWNER TO auditlog_purger;
REVOKE CREATE ON SCHEMA public FROM auditlog_purger;
REVOKE ALL ON FUNCTION auditlog_purge(bigint, text, bytea) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION auditlog_purge(bigint, text, bytea) TO auditlog_retention;
