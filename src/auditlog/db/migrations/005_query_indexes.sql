-- 005: what the dashboard's timeline queries need (auditlog.query).

-- The timeline index (keyset paging on occurred_at, event_id) now also carries category,
-- outcome and action, so time-window scans that filter or group by them are index-only
-- (an events row is ~1 kB, an entry here ~60 bytes). Same name and key order as in 001.
DROP INDEX events_occurred_at;
CREATE INDEX events_occurred_at ON events (occurred_at DESC, event_id DESC)
    INCLUDE (category, outcome, action);
-- Actor filter: display-name prefix, lower(actor ->> 'display_name') LIKE 'ali%'.
CREATE INDEX events_actor_name ON events ((lower(actor ->> 'display_name')) text_pattern_ops);
-- Source IP / CIDR filter: the planner turns source_ip <<= '10.0.0.0/8' into a btree range.
CREATE INDEX events_source_ip ON events (source_ip) WHERE source_ip IS NOT NULL;

-- Events per UTC hour and (category, action, outcome): a derived cache, not an audit record
-- (the hash chains never cover it). Counts and histograms of views filtered only by time,
-- category, action and outcome read whole hours here and only the partial hours at the
-- window's edges from events, so their cost follows the hours shown, not the events stored.
-- Kept exact by statement triggers in the inserting or purging transaction itself.
CREATE TABLE event_rollup (
    hour      timestamptz NOT NULL,
    category  text        NOT NULL,
    action    text        NOT NULL,
    outcome   text        NOT NULL,
    n         bigint      NOT NULL CHECK (n > 0),
    PRIMARY KEY (hour, category, action, outcome)
);

INSERT INTO event_rollup (hour, category, action, outcome, n)
SELECT date_trunc('hour', occurred_at, 'UTC'), category, action, outcome, count(*)
FROM events GROUP BY 1, 2, 3, 4;

CREATE FUNCTION auditlog_rollup_add() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
BEGIN
  INSERT INTO public.event_rollup AS r (hour, category, action, outcome, n)
  SELECT date_trunc('hour', occurred_at, 'UTC'), category, action, outcome, count(*)
  FROM added GROUP BY 1, 2, 3, 4
  ON CONFLICT (hour, category, action, outcome) DO UPDATE SET n = r.n + EXCLUDED.n;
  RETURN NULL;
END $$;

CREATE FUNCTION auditlog_rollup_remove() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
BEGIN
  WITH gone AS (
    SELECT date_trunc('hour', occurred_at, 'UTC') AS hour, category, action, outcome,
           count(*) AS n
    FROM removed GROUP BY 1, 2, 3, 4
  ), kept AS (
    UPDATE public.event_rollup r SET n = r.n - gone.n FROM gone
    WHERE (r.hour, r.category, r.action, r.outcome)
        = (gone.hour, gone.category, gone.action, gone.outcome) AND r.n > gone.n
    RETURNING r.hour, r.category, r.action, r.outcome
  )
  DELETE FROM public.event_rollup r USING gone
  WHERE (r.hour, r.category, r.action, r.outcome)
      = (gone.hour, gone.category, gone.action, gone.outcome) AND r.n <= gone.n;
  RETURN NULL;
END $$;

CREATE TRIGGER events_rollup_add AFTER INSERT ON events
    REFERENCING NEW TABLE AS added FOR EACH STATEMENT EXECUTE FUNCTION auditlog_rollup_add();
CREATE TRIGGER events_rollup_remove AFTER DELETE ON events
    REFERENCING OLD TABLE AS removed FOR EACH STATEMENT EXECUTE FUNCTION auditlog_rollup_remove();
-- Like the guard triggers: session_replication_role = replica does not skip them.
ALTER TABLE events ENABLE ALWAYS TRIGGER events_rollup_add;
ALTER TABLE events ENABLE ALWAYS TRIGGER events_rollup_remove;

ALTER TABLE event_rollup OWNER TO auditlog_owner;
ALTER FUNCTION auditlog_rollup_add() OWNER TO auditlog_owner;
ALTER FUNCTION auditlog_rollup_remove() OWNER TO auditlog_owner;
REVOKE ALL ON event_rollup FROM PUBLIC;
REVOKE ALL ON FUNCTION auditlog_rollup_add(), auditlog_rollup_remove() FROM PUBLIC;
GRANT SELECT ON event_rollup TO auditlog_reader, auditlog_writer;
