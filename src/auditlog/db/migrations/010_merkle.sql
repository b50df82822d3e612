-- 010: a Merkle tree per chain (RFC 9162; docs/integrity.md, section 8).
--
-- The tree of a category has one leaf per entry in seq order: leaf = SHA-256(0x00 ||
-- entry_hash). The entries themselves are its level 0. merkle_nodes keeps the hash of every
-- complete subtree of 256 leaves and more (level >= 8), so a proof reads one tile of entries
-- and a handful of nodes. Both are derived data: `auditlog verify` recomputes every stored
-- node from the entries, and a proof is only believed once it checks against a signed root.
CREATE TABLE merkle_nodes (
    category text     NOT NULL,
    level    smallint NOT NULL CHECK (level BETWEEN 8 AND 62),
    idx      bigint   NOT NULL CHECK (idx >= 0),
    hash     bytea    NOT NULL CHECK (length(hash) = 32),
    PRIMARY KEY (category, level, idx)
);

-- A retention purge deletes entries, not the tree: the entry hashes of a purged prefix are
-- kept here (one row per run of up to 256 entries within one tile), so every subtree stays
-- computable and old checkpoints and proofs keep verifying against today's log.
CREATE TABLE merkle_purged_leaves (
    category     text   NOT NULL,
    first_seq    bigint NOT NULL CHECK (first_seq >= 1),
    entry_hashes bytea  NOT NULL CHECK (length(entry_hashes) BETWEEN 32 AND 8192
                                        AND length(entry_hashes) % 32 = 0),
    PRIMARY KEY (category, first_seq)
);

DO $$
DECLARE t text;
BEGIN
  FOREACH t IN ARRAY ARRAY['merkle_nodes', 'merkle_purged_leaves'] LOOP
    EXECUTE format('CREATE TRIGGER %1$s_no_update_delete BEFORE UPDATE OR DELETE ON %1$I
                    FOR EACH ROW EXECUTE FUNCTION auditlog_refuse_change()', t);
    EXECUTE format('CREATE TRIGGER %1$s_no_truncate BEFORE TRUNCATE ON %1$I
                    FOR EACH STATEMENT EXECUTE FUNCTION auditlog_refuse_change()', t);
    EXECUTE format('ALTER TABLE %1$I ENABLE ALWAYS TRIGGER %1$s_no_update_delete', t);
    EXECUTE format('ALTER TABLE %1$I ENABLE ALWAYS TRIGGER %1$s_no_truncate', t);
    EXECUTE format('ALTER TABLE %I OWNER TO auditlog_owner', t);
    EXECUTE format('REVOKE ALL ON %I FROM PUBLIC', t);
    EXECUTE format('GRANT SELECT ON %I TO auditlog_writer, auditlog_reader', t);
  END LOOP;
END $$;
-- The writer adds the nodes its appends complete, in the same transaction.
GRANT INSERT ON merkle_nodes TO auditlog_writer;

-- Kept by the purge itself: the statement that deletes the entries stores their hashes.
CREATE FUNCTION auditlog_keep_purged_leaves() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
BEGIN
  INSERT INTO merkle_purged_leaves (category, first_seq, entry_hashes)
  SELECT category, min(seq), string_agg(entry_hash, ''::bytea ORDER BY seq)
    FROM removed
   GROUP BY category, (seq - 1) / 256;
  RETURN NULL;
END $$;
ALTER FUNCTION auditlog_keep_purged_leaves() OWNER TO auditlog_owner;
REVOKE ALL ON FUNCTION auditlog_keep_purged_leaves() FROM PUBLIC;
CREATE TRIGGER events_keep_purged_leaves AFTER DELETE ON events
  REFERENCING OLD TABLE AS removed FOR EACH STATEMENT
  EXECUTE FUNCTION auditlog_keep_purged_leaves();
ALTER TABLE events ENABLE ALWAYS TRIGGER events_keep_purged_leaves;
