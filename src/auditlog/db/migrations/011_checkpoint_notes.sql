-- 011: version-3 checkpoints: C2SP tlog-checkpoint signed notes over the chain's Merkle tree
-- (docs/integrity.md, section 9). The note text is
--
--   <origin>\n<tree size>\n<base64 root>\nhead <hex>\nprev <hex>\ncount <n>\ntime <utc>\n
--
-- origin = "<deployment>/<category>", tree size = seq, root = the tree's root at that size,
-- head = the chain's entry_hash at seq; prev, count and time chain the checkpoints as in
-- version 2 (prev = SHA-256 of the previous checkpoint's signed text). The Ed25519 note
-- signature covers the text; its key name is the origin. Versions 1 and 2 keep verifying.
ALTER TABLE checkpoints DROP CONSTRAINT checkpoints_version_check;
ALTER TABLE checkpoints
    ADD CONSTRAINT checkpoints_version_check CHECK (version IN (1, 2, 3)),
    ADD COLUMN origin    text,
    ADD COLUMN root_hash bytea CHECK (length(root_hash) = 32),
    ADD CONSTRAINT checkpoints_v3_complete CHECK (
        version <> 3 OR (origin IS NOT NULL AND root_hash IS NOT NULL));

CREATE FUNCTION auditlog_checkpoint_note_text(
    p_origin text, p_seq bigint, p_root bytea, p_entry_hash bytea, p_prev_hash bytea,
    p_count bigint, p_signed_at timestamptz
) RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, public, pg_temp
AS $$
  SELECT p_origin || E'\n' || p_seq || E'\n' || encode(p_root, 'base64') || E'\n'
      || 'head ' || encode(p_entry_hash, 'hex') || E'\n'
      || 'prev ' || encode(p_prev_hash, 'hex') || E'\n'
      || 'count ' || p_count || E'\n'
      || 'time ' || auditlog_utc_text(p_signed_at) || E'\n'
$$;

-- What the database checks of a version-3 checkpoint is what it checks of a version-2 one
-- (registered key, the entry at seq, the chain of checkpoints, the server clock), plus the
-- note's form: its origin names this category, the text is exactly the fields above. The
-- root it cannot judge without hashing the tree; `auditlog verify` recomputes it.
CREATE FUNCTION auditlog_add_checkpoint_v3(
    p_category text, p_seq bigint, p_entry_hash bytea, p_signed_at timestamptz, p_key_id text,
    p_signature bytea, p_prev_hash bytea, p_count bigint, p_message text, p_origin text,
    p_root bytea
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
     OR p_message IS NULL OR p_origin IS NULL OR p_root IS NULL THEN
    RAISE EXCEPTION 'auditlog: checkpoint refused: every argument is required'
      USING ERRCODE = 'null_value_not_allowed';
  END IF;
  IF p_origin !~ '^[!-~]+$' OR right(p_origin, length(p_category) + 1) <> '/' || p_category
     OR length(p_origin) = length(p_category) + 1 THEN
    RAISE EXCEPTION 'auditlog: checkpoint refused: origin % is not "<deployment>/%"',
      p_origin, p_category USING ERRCODE = 'check_violation';
  END IF;
  IF length(p_root) <> 32 THEN
    RAISE EXCEPTION 'auditlog: checkpoint refused: the root is % bytes, not 32', length(p_root)
      USING ERRCODE = 'check_violation';
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
  IF p_message IS DISTINCT FROM auditlog_checkpoint_note_text(
       p_origin, p_seq, p_root, p_entry_hash, p_prev_hash, p_count, p_signed_at) THEN
    RAISE EXCEPTION 'auditlog: checkpoint refused: message is not the checkpoint note of its fields'
      USING ERRCODE = 'check_violation';
  END IF;
  INSERT INTO checkpoints (category, seq, entry_hash, signed_at, key_id, signature,
                           version, prev_hash, count, message, hash, origin, root_hash)
  VALUES (p_category, p_seq, p_entry_hash, p_signed_at, p_key_id, p_signature,
          3, p_prev_hash, p_count, p_message, sha256(convert_to(p_message, 'UTF8')),
          p_origin, p_root)
  RETURNING checkpoints.id INTO new_id;
  RETURN new_id;
END $$;

ALTER FUNCTION auditlog_checkpoint_note_text(text, bigint, bytea, bytea, bytea, bigint, timestamptz)
  OWNER TO auditlog_owner;
ALTER FUNCTION auditlog_add_checkpoint_v3(text, bigint, bytea, timestamptz, text, bytea, bytea,
  bigint, text, text, bytea) OWNER TO auditlog_owner;
REVOKE ALL ON FUNCTION auditlog_add_checkpoint_v3(text, bigint, bytea, timestamptz, text, bytea,
  bytea, bigint, text, text, bytea) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION auditlog_add_checkpoint_v3(text, bigint, bytea, timestamptz, text,
  bytea, bytea, bigint, text, text, bytea) TO auditlog_writer;
