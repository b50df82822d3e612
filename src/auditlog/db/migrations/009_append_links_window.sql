-- 009: the append links check (007) in one pass over the statement's rows.
--
-- 007 looked each new row's predecessor up in the events index (one probe per row). Within a
-- statement the predecessor of every row but each category's first is the new row before it
-- in seq order, which a window over the transition table gives without touching the index;
-- only each category's first new row is looked up (the stored head, or the purge anchor).
-- The rule is unchanged: a row is accepted only if its seq is its predecessor's + 1 (or the
-- anchor's + 1 with no predecessor left), its prev_hash is that predecessor's entry_hash (or
-- the anchor's), and its recorded_at lies between the transaction's start and
-- clock_timestamp(), never before the predecessor's.
CREATE OR REPLACE FUNCTION auditlog_append_links() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
  r      record;
  p_hash bytea;
  p_at   timestamptz;
  a_seq  bigint;
BEGIN
  -- One pass: each new row against the new row before it in its category. Out come each
  -- category's first new row (its predecessor is stored, or is the purge anchor) and any row
  -- that does not follow the one before it, in (category, seq) order; the first that fails
  -- is reported. COLLATE "C": the sort compares bytes.
  FOR r IN
    SELECT s.* FROM (
      SELECT a.category, a.seq, a.prev_hash, a.recorded_at,
             lag(a.seq) OVER w AS l_seq, lag(a.entry_hash) OVER w AS l_hash,
             lag(a.recorded_at) OVER w AS l_at
        FROM added a
      WINDOW w AS (PARTITION BY a.category COLLATE "C" ORDER BY a.seq)
    ) s
     WHERE s.l_seq IS NULL
        OR s.seq <> s.l_seq + 1
        OR s.prev_hash IS DISTINCT FROM s.l_hash
        OR NOT coalesce(s.recorded_at BETWEEN greatest(now(), s.l_at)
                                          AND greatest(clock_timestamp(), s.l_at), false)
     ORDER BY s.category COLLATE "C", s.seq
  LOOP
    a_seq := NULL;
    IF r.l_seq IS NOT NULL THEN
      p_hash := r.l_hash;
      p_at := r.l_at;
    ELSE
      SELECT e.entry_hash, e.recorded_at INTO p_hash, p_at
        FROM events e WHERE e.category = r.category AND e.seq = r.seq - 1;
      IF NOT FOUND THEN             -- nothing stored before it: it must follow the anchor
        SELECT pa.seq, pa.entry_hash INTO a_seq, p_hash
          FROM purge_anchors pa WHERE pa.category = r.category ORDER BY pa.seq DESC LIMIT 1;
        IF NOT FOUND THEN
          a_seq := 0;
          p_hash := '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea;
        END IF;
        p_at := NULL;
      END IF;
    END IF;
    IF (r.l_seq IS NOT NULL AND r.seq <> r.l_seq + 1) OR r.seq <> a_seq + 1 THEN
      RAISE EXCEPTION 'auditlog: % seq % does not extend the chain (its head is seq %)',
        r.category, r.seq,
        (SELECT coalesce(max(e.seq), a_seq, 0) FROM events e
          WHERE e.category = r.category AND e.seq < r.seq)
        USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    IF r.prev_hash IS DISTINCT FROM p_hash THEN
      RAISE EXCEPTION 'auditlog: % seq %: prev_hash is not the entry_hash of seq %',
        r.category, r.seq, r.seq - 1 USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    IF NOT coalesce(r.recorded_at BETWEEN greatest(now(), p_at)
                                      AND greatest(clock_timestamp(), p_at), false) THEN
      RAISE EXCEPTION 'auditlog: % seq %: recorded_at % is not the server clock of this '
        'transaction', r.category, r.seq, r.recorded_at
        USING ERRCODE = 'integrity_constraint_violation',
              HINT = 'recorded_at comes from clock_timestamp() inside the inserting transaction, '
                     'never before the chain head''s';
    END IF;
  END LOOP;
  RETURN NULL;
END $$;

ALTER FUNCTION auditlog_append_links() OWNER TO auditlog_owner;
REVOKE ALL ON FUNCTION auditlog_append_links() FROM PUBLIC;
