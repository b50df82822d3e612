-- 004: SIEM destinations, their delivery cursors and state, and dead letters. See docs/siem.md.
-- These are configuration and delivery state, not audit entries: the writer may UPDATE them.
-- Every change to a destination is itself an audit event (recorded by the library).

CREATE TABLE siem_destinations (
    id          bigserial   PRIMARY KEY,
    name        text        NOT NULL CHECK (name ~ '^[a-z0-9][a-z0-9_.-]{0,63}$'),
    transport   text        NOT NULL CHECK (transport IN ('syslog-tcp', 'syslog-tls', 'hec', 'webhook')),
    format      text        NOT NULL CHECK (format IN ('rfc5424', 'cef', 'ocsf', 'json')),
    endpoint    text        NOT NULL,
    options     jsonb       NOT NULL DEFAULT '{}'::jsonb,
    -- HEC token or webhook HMAC key. The reader role cannot select this column.
    secret      text,
    has_secret  boolean     GENERATED ALWAYS AS (secret IS NOT NULL) STORED,
    enabled     boolean     NOT NULL DEFAULT true,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    -- A removed destination keeps its row (its cursors and dead letters refer to it).
    removed_at  timestamptz
);
CREATE UNIQUE INDEX siem_destinations_name ON siem_destinations (name) WHERE removed_at IS NULL;

-- Durable cursors: the last position delivered per destination and stream. A stream is a
-- category (position = seq) or 'checkpoints' (position = checkpoints.id). Advanced only after
-- delivery (see docs/siem.md for what "delivered" means per transport), never backwards.
CREATE TABLE siem_cursors (
    destination_id bigint      NOT NULL REFERENCES siem_destinations (id),
    stream         text        NOT NULL CHECK (stream IN ('configuration', 'governance', 'user_activity', 'checkpoints')),
    position       bigint      NOT NULL DEFAULT 0 CHECK (position >= 0),
    delivered_at   timestamptz,
    PRIMARY KEY (destination_id, stream)
);

-- What the worker last saw of each destination: errors, back-off, liveness.
CREATE TABLE siem_state (
    destination_id  bigint      PRIMARY KEY REFERENCES siem_destinations (id),
    error_count     bigint      NOT NULL DEFAULT 0,
    last_error      text,
    last_error_at   timestamptz,
    retry_at        timestamptz,
    last_success_at timestamptz,
    heartbeat_at    timestamptz
);

-- Items a receiver rejected permanently (HTTP 400/413/422), one row each; the cursor moved on.
CREATE TABLE siem_dead_letters (
    id             bigserial   PRIMARY KEY,
    destination_id bigint      NOT NULL REFERENCES siem_destinations (id),
    stream         text        NOT NULL,
    position       bigint      NOT NULL,
    item_key       text        NOT NULL,
    http_status    integer,
    error          text        NOT NULL,
    payload        text        NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX siem_dead_letters_destination ON siem_dead_letters (destination_id, id DESC);

ALTER TABLE siem_destinations OWNER TO auditlog_owner;
ALTER TABLE siem_cursors OWNER TO auditlog_owner;
ALTER TABLE siem_state OWNER TO auditlog_owner;
ALTER TABLE siem_dead_letters OWNER TO auditlog_owner;
REVOKE ALL ON siem_destinations, siem_cursors, siem_state, siem_dead_letters FROM PUBLIC;

GRANT SELECT, INSERT, UPDATE ON siem_destinations, siem_cursors, siem_state TO auditlog_writer;
GRANT SELECT, INSERT ON siem_dead_letters TO auditlog_writer;
GRANT USAGE ON SEQUENCE siem_destinations_id_seq, siem_dead_letters_id_seq TO auditlog_writer;

GRANT SELECT (id, name, transport, format, endpoint, options, has_secret, enabled, created_at,
              updated_at, removed_at) ON siem_destinations TO auditlog_reader;
GRANT SELECT ON siem_cursors, siem_state, siem_dead_letters TO auditlog_reader;
