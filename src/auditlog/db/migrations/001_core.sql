-- 001: roles, the append-only event store, checkpoints, signing keys, purge anchors.
DO $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'auditlog_owner') THEN
    CREATE ROLE auditlog_owner NOLOGIN;
  END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'auditlog_writer') THEN
    CREATE ROLE auditlog_writer NOLOGIN;
  END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'auditlog_reader') THEN
    CREATE ROLE auditlog_reader NOLOGIN;
  END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'auditlog_purger') THEN
    CREATE ROLE auditlog_purger NOLOGIN;
  END IF;
  -- Login roles without a password: the embedded server (trust on its own unix socket) and
  -- deployments that give them a password or certificate. Each can be nothing but its role.
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'auditlog_app') THEN
    CREATE ROLE auditlog_app LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE IN ROLE auditlog_writer;
  END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'auditlog_dashboard') THEN
    CREATE ROLE auditlog_dashboard LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE IN ROLE auditlog_reader;
  END IF;
END $$;

-- The migrating user may act as the application roles (a no-op for a superuser).
DO $$
BEGIN
  IF NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
    EXECUTE format('GRANT auditlog_writer, auditlog_reader, auditlog_owner TO %I', current_user);
  END IF;
END $$;

REVOKE ALL ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO auditlog_owner, auditlog_writer, auditlog_reader, auditlog_purger;
GRANT CREATE ON SCHEMA public TO auditlog_owner;

CREATE TABLE events (
    category        text        NOT NULL CHECK (category IN ('configuration', 'governance', 'user_activity')),
    seq             bigint      NOT NULL CHECK (seq >= 1),
    event_id        uuid        NOT NULL,
    action          text        NOT NULL,
    outcome         text        NOT NULL CHECK (outcome IN ('success', 'failure', 'denied')),
    occurred_at     timestamptz NOT NULL,
    occurred_offset smallint    NOT NULL,
    recorded_at     timestamptz NOT NULL,
    clock_skew      boolean     NOT NULL,
    actor           jsonb       NOT NULL,
    target          jsonb       NOT NULL,
    before          jsonb,
    after           jsonb,
    source_ip       inet,
    user_agent      text,
    correlation_id  text,
    details         jsonb       NOT NULL,
    prev_hash       bytea       NOT NULL CHECK (length(prev_hash) = 32),
    entry_hash      bytea       NOT NULL CHECK (length(entry_hash) = 32),
    -- The exact bytes hashed: JCS(record) of the columns above. Verification hashes these and
    -- checks, in SQL, that every column still equals its value in the record.
    record          text        NOT NULL,
    PRIMARY KEY (category, seq),
    UNIQUE (event_id)
);
CREATE INDEX events_occurred_at ON events (occurred_at DESC, event_id DESC);
CREATE INDEX events_recorded_brin ON events USING brin (recorded_at);
CREATE INDEX events_correlation ON events (correlation_id, occurred_at) WHERE correlation_id IS NOT NULL;
CREATE INDEX events_action ON events (action, occurred_at DESC);
CREATE INDEX events_actor_id ON events ((actor ->> 'id'));
CREATE INDEX events_actor_upn ON events ((lower(actor ->> 'upn')));
CREATE INDEX events_actor_oid ON events ((actor ->> 'entra_object_id'));
CREATE INDEX events_target ON events ((target ->> 'type'), (target ->> 'id'), occurred_at);

-- Signed chain heads.
CREATE TABLE checkpoints (
    id          bigserial   PRIMARY KEY,
    category    text        NOT NULL,
    seq         bigint      NOT NULL,
    entry_hash  bytea       NOT NULL,
    signed_at   timestamptz NOT NULL,
    key_id      text        NOT NULL,
    signature   bytea       NOT NULL
);
CREATE INDEX checkpoints_head ON checkpoints (category, seq DESC);

CREATE TABLE signing_keys (
    key_id      text        PRIMARY KEY,
    public_key  bytea       NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- Left by a retention purge: the last purged (seq, entry_hash), so the remainder verifies.
CREATE TABLE purge_anchors (
    id          bigserial   PRIMARY KEY,
    category    text        NOT NULL,
    seq         bigint      NOT NULL,
    entry_hash  bytea       NOT NULL,
    purged_at   timestamptz NOT NULL DEFAULT now(),
    key_id      text,
    signature   bytea
);
CREATE INDEX purge_anchors_head ON purge_anchors (category, seq DESC);

-- Immutability, enforced by the database. ENABLE ALWAYS: session_replication_role = replica
-- does not skip them. Only the purge function (running as auditlog_purger) may delete events.
CREATE FUNCTION auditlog_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'DELETE' AND TG_TABLE_NAME = 'events' AND current_user = 'auditlog_purger' THEN
    RETURN OLD;
  END IF;
  RAISE EXCEPTION 'auditlog: % on % is refused: audit entries are append-only', TG_OP, TG_TABLE_NAME
    USING ERRCODE = 'insufficient_privilege',
          HINT = 'the only deletion path is the retention purge';
END $$;

DO $$
DECLARE t text;
BEGIN
  FOREACH t IN ARRAY ARRAY['events', 'checkpoints', 'signing_keys', 'purge_anchors'] LOOP
    EXECUTE format('CREATE TRIGGER %1$s_no_update_delete BEFORE UPDATE OR DELETE ON %1$I
                    FOR EACH ROW EXECUTE FUNCTION auditlog_refuse_change()', t);
    EXECUTE format('CREATE TRIGGER %1$s_no_truncate BEFORE TRUNCATE ON %1$I
                    FOR EACH STATEMENT EXECUTE FUNCTION auditlog_refuse_change()', t);
    EXECUTE format('ALTER TABLE %1$I ENABLE ALWAYS TRIGGER %1$s_no_update_delete', t);
    EXECUTE format('ALTER TABLE %1$I ENABLE ALWAYS TRIGGER %1$s_no_truncate', t);
    EXECUTE format('ALTER TABLE %I OWNER TO auditlog_owner', t);
    EXECUTE format('REVOKE ALL ON %I FROM PUBLIC', t);
    EXECUTE format('GRANT SELECT, INSERT ON %I TO auditlog_writer', t);
    EXECUTE format('GRANT SELECT ON %I TO auditlog_reader', t);
  END LOOP;
END $$;
ALTER FUNCTION auditlog_refuse_change() OWNER TO auditlog_owner;
REVOKE INSERT ON purge_anchors FROM auditlog_writer;
GRANT USAGE ON SEQUENCE checkpoints_id_seq TO auditlog_writer;
GRANT SELECT ON schema_migrations TO auditlog_writer, auditlog_reader;
