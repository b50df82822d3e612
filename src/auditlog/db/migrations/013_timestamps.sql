-- 013: RFC 3161 time-stamps of version-3 checkpoints (docs/timestamps.md, docs/integrity.md
-- section 10). `auditlog timestamp` asks the configured time-stamp authority (TSA) to stamp
-- SHA-256 of each checkpoint's note text and keeps the token here. A token proves itself
-- (`auditlog verify --tsa-anchor PEM` checks it against the checkpoint it names), so the
-- table is evidence: insert-only, like the checkpoints. gen_time is the token's own genTime,
-- copied for queries; verify compares it with the token's.
CREATE TABLE checkpoint_timestamps (
    id            bigserial   PRIMARY KEY,
    checkpoint_id bigint      NOT NULL REFERENCES checkpoints (id),
    tsa_url       text        NOT NULL CHECK (tsa_url ~ '^https?://'),
    token         bytea       NOT NULL CHECK (length(token) BETWEEN 1 AND 65536),
    gen_time      timestamptz NOT NULL,
    stamped_at    timestamptz NOT NULL DEFAULT now(),
    -- Two workers racing for one checkpoint keep one token (the second insert is skipped).
    UNIQUE (checkpoint_id, tsa_url)
);

-- What the worker last saw of each TSA: delivery state, not evidence (like siem_state), so
-- the worker may update it. failures counts consecutive failed rounds (0 after a stamp).
CREATE TABLE timestamp_state (
    tsa_url         text        PRIMARY KEY,
    failures        bigint      NOT NULL DEFAULT 0 CHECK (failures >= 0),
    last_error      text,
    last_error_at   timestamptz,
    last_success_at timestamptz,
    last_round_at   timestamptz
);

CREATE TRIGGER checkpoint_timestamps_no_update_delete BEFORE UPDATE OR DELETE
  ON checkpoint_timestamps FOR EACH ROW EXECUTE FUNCTION auditlog_refuse_change();
CREATE TRIGGER checkpoint_timestamps_no_truncate BEFORE TRUNCATE
  ON checkpoint_timestamps FOR EACH STATEMENT EXECUTE FUNCTION auditlog_refuse_change();
ALTER TABLE checkpoint_timestamps ENABLE ALWAYS TRIGGER checkpoint_timestamps_no_update_delete;
ALTER TABLE checkpoint_timestamps ENABLE ALWAYS TRIGGER checkpoint_timestamps_no_truncate;

ALTER TABLE checkpoint_timestamps OWNER TO auditlog_owner;
ALTER TABLE timestamp_state OWNER TO auditlog_owner;
REVOKE ALL ON checkpoint_timestamps, timestamp_state FROM PUBLIC;

-- The stamping worker logs in as auditlog_stream (group auditlog_streamer), which already
-- reads the checkpoints; the ingest login gets nothing here.
GRANT SELECT, INSERT ON checkpoint_timestamps TO auditlog_streamer;
GRANT USAGE ON SEQUENCE checkpoint_timestamps_id_seq TO auditlog_streamer;
GRANT SELECT, INSERT, UPDATE ON timestamp_state TO auditlog_streamer;
GRANT SELECT ON checkpoint_timestamps, timestamp_state TO auditlog_reader;
