-- 006: checkpoints form their own chain, and the writer adds them only through a function
-- that checks every field against the log (docs/integrity.md, section 3).
--
-- A version-2 checkpoint signs JCS({"category","count","entry_hash","key_id","prev_hash",
-- "seq","signed_at","version":2}); prev_hash is the hash (SHA-256 of the signed message) of
-- the category's previous checkpoint, count its 1-based position among all the category's
-- checkpoints. The first version-2 checkpoint links to the hash of the last version-1 message
-- (or to 32 zero bytes), so a deleted, reordered or replaced checkpoint breaks the chain.
ALTER TABLE checkpoints
    ADD COLUMN version   smallint NOT NULL DEFAULT 1 CHECK (version IN (1, 2)),
    ADD COLUMN prev_hash bytea CHECK (length(prev_hash) = 32),
    ADD COLUMN count     bigint CHECK (count >= 1),
    ADD COLUMN message   text,
    ADD COLUMN hash      bytea CHECK (length(hash) = 32),
    ADD CONSTRAINT checkpoints_v2_complete CHECK (
        version = 1 OR (prev_hash IS NOT NULL AND count IS NOT NULL
                        AND message IS NOT NULL AND hash IS NOT NULL));
CREATE UNIQUE INDEX checkpoints_chain ON checkpoints (category, count) WHERE count IS NOT NULL;

-- The RFC 3339 UTC text of a timestamp, as in every signed message: 6 fraction digits, Z.
CREATE FUNCTION auditlog_utc_text(t timestamptz) RETURNS text
LANGUAGE sql IMMUTABLE STRICT
SET search_path = pg_catalog, public, pg_temp
AS $$ SELECT to_char(t AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') $$;

-- The exact JCS text a checkpoint signs. Every value is a JSON string of hex digits, an
-- integer, the timestamp above, or a string escaped by to_json (which escapes as JCS does).
CREATE FUNCTION auditlog_checkpoint_message(
    p_version int, p_category text, p_seq bigint, p_entry_hash bytea, p_signed_at timestamptz,
    p_key_id text, p_prev_hash bytea, p_count bigint
) RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, public, pg_temp
AS $$
  SELECT CASE WHEN p_version = 1 THEN
    format('{"category":%s,"entry_hash":"%s","key_id":%s,"seq":%s,"signed_at":"%s"}',
           to_json(p_category)::text, encode(p_entry_hash, 'hex'), to_json(p_key_id)::text,
           p_seq, auditlog_utc_text(p_signed_at))
  ELSE
    format('{"category":%s,"count":%s,"entry_hash":"%s","key_id":%s,"prev_hash":"%s",'
           '"seq":%s,"signed_at":"%s","version":2}',
           to_json(p_category)::text, p_count, encode(p_entry_hash, 'hex'),
           to_json(p_key_id)::text, encode(p_prev_hash, 'hex'), p_seq,
           auditlog_utc_text(p_signed_at))
  END
$$;

-- The category's newest checkpoint and what the next one must link to: its hash (for a
-- version-1 row, SHA-256 of its message) and its count (for a version-1 row, its position).
-- No row when the category has no checkpoint: the next links to 32 zero bytes with count 1.
CREATE FUNCTION auditlog_last_checkpoint(p_category text)
RETURNS TABLE (id bigint, seq bigint, signed_at timestamptz, hash bytea, count bigint)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
  SELECT c.id, c.seq, c.signed_at,
         CASE WHEN c.version = 1 THEN
           sha256(convert_to(auditlog_checkpoint_message(1, c.category, c.seq, c.entry_hash,
                                                         c.signed_at, c.key_id, NULL, NULL),
                             'UTF8'))
         ELSE c.hash END,
         CASE WHEN c.version = 1 THEN
           (SELECT count(*) FROM checkpoints o WHERE o.category = c.category
              AND (o.seq, o.id) <= (c.seq, c.id))
         ELSE c.count END
  FROM checkpoints c
  WHERE c.category = p_category
  ORDER BY c.seq DESC, c.id DESC
  LIMIT 1
$$;

-- Add one version-2 checkpoint; refuse anything that does not sign the log as it is.
CREATE FUNCTION auditlog_add_checkpoint(
    p_category text, p_seq bigint, p_entry_hash bytea, p_signed_at timestamptz, p_key_id text,
    p_signature bytea, p_prev_hash bytea, p_count bigint, p_message text
) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
  head bytea;
  last record;
  want_prev bytea := decode(repeat('00', 32), 'hex');
  want_count bigint := 1;
  new_id bigint;
BEGIN
  IF p_category IS NULL OR p_seq IS NULL OR p_entry_hash IS NULL OR p_signed_at IS NULL
     OR p_key_id IS NULL OR p_signature IS NULL OR p_prev_hash IS NULL OR p_count IS NULL
     OR p_message IS NULL THEN
    RAISE EXCEPTION 'auditlog: checkpoint refused: every argument is required'
      USING ERRCODE = 'null_value_not_allowed';
  END IF;
  PERFORM pg_advisory_xact_lock(hashtext('auditlog:' || p_category));
  IF NOT EXISTS (SELECT 1 FROM signing_keys k WHERE k.key_id = p_key_id) THEN
    RAISE EXCEPTION 'auditlog: checkpoint refused: key_id % is not a registered signing key',
      p_key_id USING ERRCODE = 'foreign_key_violation';
  END IF;
  IF length(p_signature) <> 64 THEN
    RAISE EXCEPTION 'auditlog: checkpoint refused: signature is % bytes, an Ed25519 signature is 64',
      length(p_signature) USING ERRCODE = 'check_violation';
  END IF;
  SELECT e.entry_hash INTO head FROM events e WHERE e.category = p_category AND e.seq = p_seq;
  IF NOT FOUND THEN
    SELECT a.entry_hash INTO head FROM purge_anchors a
     WHERE a.category = p_category AND a.seq = p_seq
       AND a.seq = (SELECT max(b.seq) FROM purge_anchors b WHERE b.category = p_category);
  END IF;
  IF head IS NULL THEN
    RAISE EXCEPTION 'auditlog: checkpoint refused: % has no entry at seq %', p_category, p_seq
      USING ERRCODE = 'check_violation';
  END IF;
  IF head <> p_entry_hash THEN
    RAISE EXCEPTION 'auditlog: checkpoint refused: entry_hash is not that of % seq %',
      p_category, p_seq USING ERRCODE = 'check_violation';
  END IF;
  SELECT * INTO last FROM auditlog_last_checkpoint(p_category);
  IF FOUND THEN
    IF p_seq <= last.seq THEN
      RAISE EXCEPTION 'auditlog: checkpoint refused: seq % does not extend the last checkpoint (seq %)',
        p_seq, last.seq USING ERRCODE = 'check_violation';
    END IF;
    want_prev := last.hash;
    want_count := last.count + 1;
  END IF;
  IF p_prev_hash <> want_prev THEN
    RAISE EXCEPTION 'auditlog: checkpoint refused: prev_hash is not the hash of the last checkpoint of %',
      p_category USING ERRCODE = 'check_violation';
  END IF;
  IF p_count <> want_count THEN
    RAISE EXCEPTION 'auditlog: checkpoint refused: count % given, the next checkpoint of % is count %',
      p_count, p_category, want_count USING ERRCODE = 'check_violation';
  END IF;
  IF p_signed_at < now() OR p_signed_at > clock_timestamp() THEN
    RAISE EXCEPTION 'auditlog: checkpoint refused: signed_at % is not the server clock of this transaction',
      auditlog_utc_text(p_signed_at) USING ERRCODE = 'check_violation';
  END IF;
  IF p_message IS DISTINCT FROM auditlog_checkpoint_message(
       2, p_category, p_seq, p_entry_hash, p_signed_at, p_key_id, p_prev_hash, p_count) THEN
    RAISE EXCEPTION 'auditlog: checkpoint refused: message is not the JCS of the checkpoint''s fields'
      USING ERRCODE = 'check_violation';
  END IF;
  INSERT INTO checkpoints (category, seq, entry_hash, signed_at, key_id, signature,
                           version, prev_hash, count, message, hash)
  VALUES (p_category, p_seq, p_entry_hash, p_signed_at, p_key_id, p_signature,
          2, p_prev_hash, p_count, p_message, sha256(convert_to(p_message, 'UTF8')))
  RETURNING checkpoints.id INTO new_id;
  RETURN new_id;
END $$;

ALTER FUNCTION auditlog_utc_text(timestamptz) OWNER TO auditlog_owner;
ALTER FUNCTION auditlog_checkpoint_message(int, text, bigint, bytea, timestamptz, text, bytea, bigint)
  OWNER TO auditlog_owner;
ALTER FUNCTION auditlog_last_checkpoint(text) OWNER TO auditlog_owner;
ALTER FUNCTION auditlog_add_checkpoint(text, bigint, bytea, timestamptz, text, bytea, bytea, bigint, text)
  OWNER TO auditlog_owner;
REVOKE ALL ON FUNCTION auditlog_last_checkpoint(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION auditlog_add_checkpoint(text, bigint, bytea, timestamptz, text, bytea, bytea, bigint, text)
  FROM PUBLIC;
GRANT EXECUTE ON FUNCTION auditlog_last_checkpoint(text) TO auditlog_writer, auditlog_reader;
GRANT EXECUTE ON FUNCTION auditlog_add_checkpoint(text, bigint, bytea, timestamptz, text, bytea, bytea, bigint, text)
  TO auditlog_writer;
-- From now on the writer adds checkpoints only through auditlog_add_checkpoint.
REVOKE INSERT ON checkpoints FROM auditlog_writer;
