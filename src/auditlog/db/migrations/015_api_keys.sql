-- 015: API keys of the HTTP ingestion service (docs/api.md).
--
-- A key is `alk_<key_id>_<secret>`; only SHA-256(secret) is stored. The secret is 256 random
-- bits, so a fast hash is enough: no dictionary or brute force reaches it, and a slow hash
-- would cost every request CPU time (and hand an attacker a cheap way to burn it).
--
-- Who may do what:
--   auditlog_apikeys   (new, NOLOGIN, + append) create, rotate and revoke keys, only through
--                      the SECURITY DEFINER functions below; list them without the hash. Held
--                      by the key administrator (auditlog_keyadmin) and granted to the
--                      dashboard's login for its admin page, not to the ingest login.
--   auditlog_writer    SELECT of the columns authentication needs (the ingest service).
--   auditlog_reader    SELECT of everything but the hash.
-- A row is never deleted; its only change is its revocation, once.
DO $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'auditlog_apikeys') THEN
    CREATE ROLE auditlog_apikeys NOLOGIN IN ROLE auditlog_writer;
  END IF;
  IF NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
    EXECUTE format('GRANT auditlog_apikeys TO %I', current_user);
  END IF;
END $$;
GRANT auditlog_apikeys TO auditlog_keyadmin, auditlog_dashboard;

CREATE TABLE api_keys (
    key_id          text             PRIMARY KEY CHECK (key_id ~ '^[0-9a-f]{16}$'),
    name            text             NOT NULL CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$'),
    secret_hash     bytea            NOT NULL CHECK (octet_length(secret_hash) = 32),
    prefix          text             NOT NULL,
    scopes          text[]           NOT NULL CHECK (cardinality(scopes) > 0),
    allow_cidrs     cidr[]           NOT NULL DEFAULT '{}',
    rate            double precision NOT NULL CHECK (rate > 0),
    burst           integer          NOT NULL CHECK (burst > 0),
    created_at      timestamptz      NOT NULL DEFAULT now(),
    created_by      text             NOT NULL,
    revoked_at      timestamptz,
    revoked_by      text,
    rotated_from    text             REFERENCES api_keys (key_id),
    CHECK ((revoked_at IS NULL) = (revoked_by IS NULL))
);
CREATE UNIQUE INDEX api_keys_active_name ON api_keys (name) WHERE revoked_at IS NULL;
ALTER TABLE api_keys OWNER TO auditlog_owner;
REVOKE ALL ON api_keys FROM PUBLIC;

-- Only a revocation may change a row, once, and it changes nothing else.
CREATE FUNCTION auditlog_api_keys_guard() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
BEGIN
  IF TG_OP <> 'UPDATE' OR OLD.revoked_at IS NOT NULL OR NEW.revoked_at IS NULL
     OR (to_jsonb(NEW) - ARRAY['revoked_at', 'revoked_by'])
        IS DISTINCT FROM (to_jsonb(OLD) - ARRAY['revoked_at', 'revoked_by']) THEN
    RAISE EXCEPTION 'auditlog: an API key is never changed or deleted, only revoked once'
      USING ERRCODE = 'insufficient_privilege';
  END IF;
  RETURN NEW;
END $$;
ALTER FUNCTION auditlog_api_keys_guard() OWNER TO auditlog_owner;
CREATE TRIGGER api_keys_guard BEFORE UPDATE OR DELETE ON api_keys
  FOR EACH ROW EXECUTE FUNCTION auditlog_api_keys_guard();
CREATE TRIGGER api_keys_no_truncate BEFORE TRUNCATE ON api_keys
  FOR EACH STATEMENT EXECUTE FUNCTION auditlog_refuse_change();
ALTER TABLE api_keys ENABLE ALWAYS TRIGGER api_keys_guard;
ALTER TABLE api_keys ENABLE ALWAYS TRIGGER api_keys_no_truncate;

GRANT SELECT (key_id, name, secret_hash, scopes, allow_cidrs, rate, burst, revoked_at)
  ON api_keys TO auditlog_writer;
GRANT SELECT (key_id, name, prefix, scopes, allow_cidrs, rate, burst, created_at, created_by,
              revoked_at, revoked_by, rotated_from)
  ON api_keys TO auditlog_reader, auditlog_apikeys;

CREATE FUNCTION auditlog_api_key_create(p_key_id text, p_name text, p_hash bytea,
  p_prefix text, p_scopes text[], p_allow cidr[], p_rate double precision, p_burst integer,
  p_by text) RETURNS timestamptz
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
  INSERT INTO api_keys (key_id, name, secret_hash, prefix, scopes, allow_cidrs, rate, burst,
                        created_by)
  VALUES (p_key_id, p_name, p_hash, p_prefix, p_scopes, p_allow, p_rate, p_burst, p_by)
  RETURNING created_at
$$;

-- Revoke the active key named p_name; its key_id, or NULL when there is none.
CREATE FUNCTION auditlog_api_key_revoke(p_name text, p_by text) RETURNS text
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
  UPDATE api_keys SET revoked_at = now(), revoked_by = p_by
   WHERE name = p_name AND revoked_at IS NULL
  RETURNING key_id
$$;

-- A new secret for the active key p_name: the old row is revoked, a new one with the same
-- name, scopes, allow-list and rate records where it came from. The old key_id, or NULL.
CREATE FUNCTION auditlog_api_key_rotate(p_name text, p_key_id text, p_hash bytea,
  p_prefix text, p_by text) RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
  old api_keys;
BEGIN
  UPDATE api_keys SET revoked_at = now(), revoked_by = p_by
   WHERE name = p_name AND revoked_at IS NULL
  RETURNING * INTO old;
  IF NOT FOUND THEN
    RETURN NULL;
  END IF;
  INSERT INTO api_keys (key_id, name, secret_hash, prefix, scopes, allow_cidrs, rate, burst,
                        created_by, rotated_from)
  VALUES (p_key_id, old.name, p_hash, p_prefix, old.scopes, old.allow_cidrs, old.rate,
          old.burst, p_by, old.key_id);
  RETURN old.key_id;
END $$;

DO $$
DECLARE
  f text;
BEGIN
  FOREACH f IN ARRAY ARRAY[
    'auditlog_api_key_create(text, text, bytea, text, text[], cidr[], double precision, integer, text)',
    'auditlog_api_key_revoke(text, text)',
    'auditlog_api_key_rotate(text, text, bytea, text, text)'] LOOP
    EXECUTE format('ALTER FUNCTION %s OWNER TO auditlog_owner', f);
    EXECUTE format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', f);
    EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO auditlog_apikeys', f);
  END LOOP;
END $$;
