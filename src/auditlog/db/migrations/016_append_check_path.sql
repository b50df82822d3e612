-- 016: the row append check without a per-call search_path (issue 10's ingest ratio).
--
-- A function with ``SET search_path`` saves, sets and restores the setting on every call; for
-- the row trigger that runs once per appended row this cost about a tenth of the ingest rate
-- (bench_ingest, 2026-12-04). The function is the same check as 014's; what the SET guarded
-- against is held otherwise: every type is written ``pg_catalog.`` (a caller's temporary
-- table or type named jsonb, text or bytea would otherwise be found first), every function
-- is qualified, operators and functions are never looked up in pg_temp, and no application
-- role may create objects in any schema (no CREATE on the database or on a schema; tested in
-- tests/db/test_append_check_path.py). The body references no table.
CREATE OR REPLACE FUNCTION auditlog_append_check() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER AS $$
DECLARE
  r pg_catalog.jsonb;
  s pg_catalog.jsonb;
BEGIN
  IF NEW.entry_hash IS DISTINCT FROM pg_catalog.sha256(NEW.prev_hash || pg_catalog.convert_to(NEW.record, 'UTF8')) THEN
    RAISE EXCEPTION 'auditlog: entry_hash is not SHA-256(prev_hash || record) (record %)',
      pg_catalog.left(NEW.record, 80) USING ERRCODE = 'integrity_constraint_violation';
  END IF;
  -- (ROW(...) IS NULL: every field is NULL; IS NOT NULL would need every field set)
  IF NOT ROW(NEW.action, NEW.actor, NEW.after, NEW.before, NEW.category, NEW.clock_skew,
             NEW.correlation_id, NEW.details, NEW.event_id, NEW.occurred_at, NEW.occurred_offset,
             NEW.outcome, NEW.recorded_at, NEW.seq, NEW.source, NEW.source_ip, NEW.target,
             NEW.user_agent)
         IS NULL THEN
    RAISE EXCEPTION 'auditlog: the event columns are derived from the hashed record; insert '
      'only record, prev_hash and entry_hash' USING ERRCODE = 'integrity_constraint_violation';
  END IF;
  r := NEW.record::pg_catalog.jsonb;
  IF pg_catalog.jsonb_typeof(r) IS DISTINCT FROM 'object'
     OR NOT r ?& ARRAY['action', 'actor', 'after', 'before', 'category', 'clock_skew',
                       'correlation_id', 'details', 'event_id', 'occurred_at', 'occurred_offset',
                       'outcome', 'recorded_at', 'seq', 'source_ip', 'target', 'user_agent']
     OR r - ARRAY['action', 'actor', 'after', 'before', 'category', 'clock_skew',
                  'correlation_id', 'details', 'event_id', 'occurred_at', 'occurred_offset',
                  'outcome', 'recorded_at', 'seq', 'source', 'source_ip', 'target', 'user_agent']
        <> '{}'::pg_catalog.jsonb THEN
    RAISE EXCEPTION 'auditlog: the record must hold exactly the hashed fields (record %)',
      pg_catalog.left(NEW.record, 80) USING ERRCODE = 'integrity_constraint_violation';
  END IF;
  s := r -> 'source';
  IF s IS NOT NULL AND (
       pg_catalog.jsonb_typeof(s) IS DISTINCT FROM 'object'
       OR NOT s ?& ARRAY['type', 'id', 'name']
       OR s - ARRAY['type', 'id', 'name'] <> '{}'::pg_catalog.jsonb
       OR pg_catalog.jsonb_typeof(s -> 'type') <> 'string'
       OR pg_catalog.jsonb_typeof(s -> 'id') <> 'string'
       OR pg_catalog.jsonb_typeof(s -> 'name') <> 'string'
       OR (s ->> 'type') !~ '^[a-z][a-z0-9_]{0,31}$'
       OR pg_catalog.length(s ->> 'id') NOT BETWEEN 1 AND 128
       OR pg_catalog.length(s ->> 'name') NOT BETWEEN 1 AND 256) THEN
    RAISE EXCEPTION 'auditlog: the record''s source must be {"type", "id", "name"}, three '
      'strings (type a short identifier, id 1..128 and name 1..256 characters), or absent '
      '(record %)', pg_catalog.left(NEW.record, 80) USING ERRCODE = 'integrity_constraint_violation';
  END IF;
  -- every column from the record, in C (a JSON null is stored as SQL NULL); the table's
  -- NOT NULL and CHECK constraints then apply to what the record says
  NEW := pg_catalog.jsonb_populate_record(NEW, r);
  RETURN NEW;
END $$;

ALTER FUNCTION auditlog_append_check() OWNER TO auditlog_owner;
REVOKE ALL ON FUNCTION auditlog_append_check() FROM PUBLIC;
