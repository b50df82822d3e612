-- 014: the submitting source of an event, in the hashed record (issue 12).
--
-- ``source`` names the API key that submitted the event: {"type": "api_key", "id": ..., "name":
-- ...}, exactly those three string members (type a short identifier, id 1..128 characters, name
-- 1..256). It is set by the log, never by the producer; an event that came in-process or from
-- a file has none (SQL NULL).
--
-- The record rule (docs/integrity.md, section 2): the record holds the member "source" only
-- when the event has one; a record never holds "source": null. Rows stored before this
-- migration have no source, so their records and hashes are unchanged and every existing
-- chain, checkpoint, Merkle tree and bundle keeps verifying.
ALTER TABLE events ADD COLUMN source jsonb;

-- The append check of 007, with source: the column is derived from the record like every
-- other (an insert that sets it itself is refused), the record may hold "source" and nothing
-- else beyond the 17 members, and a "source" it holds must have the shape above (so "source":
-- null, which would store SQL NULL beside a record naming it, is refused too). Rows without a
-- source pay one key lookup more than before.
CREATE OR REPLACE FUNCTION auditlog_append_check() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
  r jsonb;
  s jsonb;
BEGIN
  IF NEW.entry_hash IS DISTINCT FROM sha256(NEW.prev_hash || convert_to(NEW.record, 'UTF8')) THEN
    RAISE EXCEPTION 'auditlog: entry_hash is not SHA-256(prev_hash || record) (record %)',
      left(NEW.record, 80) USING ERRCODE = 'integrity_constraint_violation';
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
  r := NEW.record::jsonb;
  IF jsonb_typeof(r) IS DISTINCT FROM 'object'
     OR NOT r ?& ARRAY['action', 'actor', 'after', 'before', 'category', 'clock_skew',
                       'correlation_id', 'details', 'event_id', 'occurred_at', 'occurred_offset',
                       'outcome', 'recorded_at', 'seq', 'source_ip', 'target', 'user_agent']
     OR r - ARRAY['action', 'actor', 'after', 'before', 'category', 'clock_skew',
                  'correlation_id', 'details', 'event_id', 'occurred_at', 'occurred_offset',
                  'outcome', 'recorded_at', 'seq', 'source', 'source_ip', 'target', 'user_agent']
        <> '{}'::jsonb THEN
    RAISE EXCEPTION 'auditlog: the record must hold exactly the hashed fields (record %)',
      left(NEW.record, 80) USING ERRCODE = 'integrity_constraint_violation';
  END IF;
  s := r -> 'source';
  IF s IS NOT NULL AND (
       jsonb_typeof(s) IS DISTINCT FROM 'object'
       OR NOT s ?& ARRAY['type', 'id', 'name']
       OR s - ARRAY['type', 'id', 'name'] <> '{}'::jsonb
       OR jsonb_typeof(s -> 'type') <> 'string'
       OR jsonb_typeof(s -> 'id') <> 'string'
       OR jsonb_typeof(s -> 'name') <> 'string'
       OR (s ->> 'type') !~ '^[a-z][a-z0-9_]{0,31}$'
       OR length(s ->> 'id') NOT BETWEEN 1 AND 128
       OR length(s ->> 'name') NOT BETWEEN 1 AND 256) THEN
    RAISE EXCEPTION 'auditlog: the record''s source must be {"type", "id", "name"}, three '
      'strings (type a short identifier, id 1..128 and name 1..256 characters), or absent '
      '(record %)', left(NEW.record, 80) USING ERRCODE = 'integrity_constraint_violation';
  END IF;
  -- every column from the record, in C (a JSON null is stored as SQL NULL); the table's
  -- NOT NULL and CHECK constraints then apply to what the record says
  NEW := jsonb_populate_record(NEW, r);
  RETURN NEW;
END $$;

ALTER FUNCTION auditlog_append_check() OWNER TO auditlog_owner;
REVOKE ALL ON FUNCTION auditlog_append_check() FROM PUBLIC;

