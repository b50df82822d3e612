-- 012: the log's side of witnessing (c2sp.org/tlog-witness; docs/witness.md).
--
-- witness_cosignatures holds every cosignature a witness returned, keyed by the checkpoint
-- it cosigns: insert-only evidence, like the checkpoints themselves. `auditlog witness
-- submit` verifies each against the witness's configured key before it stores it, and
-- `auditlog verify --witness-key` verifies it again against the keys the auditor pins.
CREATE TABLE witness_cosignatures (
    checkpoint_id bigint      NOT NULL REFERENCES checkpoints (id),
    witness       text        NOT NULL CHECK (witness <> '' AND witness !~ '[[:space:]+]'),
    key_hash      bytea       NOT NULL CHECK (length(key_hash) = 4),
    -- cosignature/v1: 8 bytes of big-endian POSIX seconds, then the Ed25519 signature
    signature     bytea       NOT NULL CHECK (length(signature) = 72),
    cosigned_at   timestamptz NOT NULL,
    received_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (checkpoint_id, witness, key_hash)
);

-- What the submitter knows of each witness and chain: the size the witness last cosigned
-- (the consistency proof of the next submission starts there), the last attempt and error,
-- and when to try again. Delivery state, not evidence: the submitter updates it.
CREATE TABLE witness_state (
    witness                text        NOT NULL,
    category               text        NOT NULL
                           CHECK (category IN ('configuration', 'governance', 'user_activity')),
    cosigned_size          bigint      NOT NULL DEFAULT 0 CHECK (cosigned_size >= 0),
    cosigned_checkpoint_id bigint      REFERENCES checkpoints (id),
    cosigned_at            timestamptz,
    last_attempt_at        timestamptz,
    last_error             text,
    last_error_at          timestamptz,
    error_count            bigint      NOT NULL DEFAULT 0,
    retry_at               timestamptz,
    PRIMARY KEY (witness, category)
);

CREATE TRIGGER witness_cosignatures_no_update_delete BEFORE UPDATE OR DELETE
    ON witness_cosignatures FOR EACH ROW EXECUTE FUNCTION auditlog_refuse_change();
CREATE TRIGGER witness_cosignatures_no_truncate BEFORE TRUNCATE
    ON witness_cosignatures FOR EACH STATEMENT EXECUTE FUNCTION auditlog_refuse_change();
ALTER TABLE witness_cosignatures ENABLE ALWAYS TRIGGER witness_cosignatures_no_update_delete;
ALTER TABLE witness_cosignatures ENABLE ALWAYS TRIGGER witness_cosignatures_no_truncate;

ALTER TABLE witness_cosignatures OWNER TO auditlog_owner;
ALTER TABLE witness_state OWNER TO auditlog_owner;
REVOKE ALL ON witness_cosignatures, witness_state FROM PUBLIC;
-- The submitter (auditlog_stream) adds cosignatures and keeps its state; everyone who
-- verifies reads them.
GRANT SELECT, INSERT ON witness_cosignatures TO auditlog_streamer;
GRANT SELECT, INSERT, UPDATE ON witness_state TO auditlog_streamer;
GRANT SELECT ON witness_cosignatures, witness_state TO auditlog_reader;
