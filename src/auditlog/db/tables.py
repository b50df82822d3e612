"""Every table of the migrations as a SQLAlchemy Core ``Table``, on one ``MetaData``.

These describe the schema the SQL files in ``db/migrations`` create, for building queries and
inserts; they are never used to create or alter it (the migrations are the schema, with the
triggers, grants and checks Core cannot say). ``tests/db/test_tables.py`` checks each one
against a migrated database, so a migration that changes a table must change it here too.
``events`` is built from :mod:`auditlog.columns`, the one definition of an event's columns.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY, BYTEA, CIDR, JSONB, UUID

from auditlog.columns import EVENT_COLUMNS

metadata = sa.MetaData()
_TS = sa.DateTime(timezone=True)
_NOW = sa.text("now()")


def _col(name: str, type_: Any, *args: Any, **kw: Any) -> sa.Column[Any]:
    """A column, NOT NULL unless ``nullable=True`` is given (as most columns here are)."""
    kw.setdefault("nullable", False)
    return sa.Column(name, type_, *args, **kw)


# --- 001_core ----------------------------------------------------------------------------
events = sa.Table(
    "events",
    metadata,
    *(
        sa.Column(c.name, c.pg, nullable=c.nullable, primary_key=c.name in ("category", "seq"))
        for c in EVENT_COLUMNS
    ),
)
checkpoints = sa.Table(
    "checkpoints",
    metadata,
    _col("id", sa.BigInteger, primary_key=True),
    _col("category", sa.Text),
    _col("seq", sa.BigInteger),
    _col("entry_hash", BYTEA),
    _col("signed_at", _TS),
    _col("key_id", sa.Text),
    _col("signature", BYTEA),
    # 006_checkpoint_chain: the checkpoint chain (NULL on version-1 rows)
    _col("version", sa.SmallInteger, server_default=sa.text("1")),
    _col("prev_hash", BYTEA, nullable=True),
    _col("count", sa.BigInteger, nullable=True),
    _col("message", sa.Text, nullable=True),
    _col("hash", BYTEA, nullable=True),
    # 011_checkpoint_notes: version 3 (a C2SP checkpoint note over the Merkle root)
    _col("origin", sa.Text, nullable=True),
    _col("root_hash", BYTEA, nullable=True),
)
signing_keys = sa.Table(
    "signing_keys",
    metadata,
    _col("key_id", sa.Text, primary_key=True),
    _col("public_key", BYTEA),
    _col("created_at", _TS, server_default=_NOW),
    _col("registered_by", sa.Text, nullable=True),  # 007
)
purge_anchors = sa.Table(
    "purge_anchors",
    metadata,
    _col("id", sa.BigInteger, primary_key=True),
    _col("category", sa.Text),
    _col("seq", sa.BigInteger),
    _col("entry_hash", BYTEA),
    _col("purged_at", _TS, server_default=_NOW),
    _col("key_id", sa.Text, nullable=True),
    _col("signature", BYTEA, nullable=True),
)
# Created by db/migrate.py itself, before the first migration.
schema_migrations = sa.Table(
    "schema_migrations",
    metadata,
    _col("version", sa.Integer, primary_key=True, autoincrement=False),
    _col("name", sa.Text),
    _col("applied_at", _TS, server_default=_NOW),
)

# --- 002_identity ------------------------------------------------------------------------
principals = sa.Table(
    "principals",
    metadata,
    _col("object_id", sa.Uuid(as_uuid=False), primary_key=True),
    _col("type", sa.Text),
    _col("upn", sa.Text, nullable=True),
    _col("mail", sa.Text, nullable=True),
    _col("display_name", sa.Text, nullable=True),
    _col("tenant_id", sa.Text, nullable=True),
    _col("app_id", sa.Text, nullable=True),
    _col("account_enabled", sa.Boolean, nullable=True),
    _col("source", sa.Text),
    _col("synced_at", _TS, server_default=_NOW),
)

# --- 003_retention -----------------------------------------------------------------------
retention_policies = sa.Table(
    "retention_policies",
    metadata,
    _col("id", sa.BigInteger, primary_key=True),
    _col("category", sa.Text),
    _col("days", sa.Integer),
    _col("archive_days", sa.Integer),
    _col("effective_at", _TS, server_default=_NOW),
    _col("change_id", UUID(as_uuid=True), unique=True),
    _col("proposed_by", sa.Text),
    _col("approved_by", sa.Text, nullable=True),
    _col("reason", sa.Text),
)
retention_proposals = sa.Table(
    "retention_proposals",
    metadata,
    _col("change_id", UUID(as_uuid=True), primary_key=True),
    _col("category", sa.Text),
    _col("days", sa.Integer),
    _col("archive_days", sa.Integer),
    _col("reason", sa.Text),
    _col("proposed_by", sa.Text),
    _col("proposed_at", _TS, server_default=_NOW),
)
retention_decisions = sa.Table(
    "retention_decisions",
    metadata,
    _col(
        "change_id",
        UUID(as_uuid=True),
        sa.ForeignKey("retention_proposals.change_id"),
        primary_key=True,
    ),
    _col("decision", sa.Text),
    _col("decided_by", sa.Text),
    _col("decided_at", _TS, server_default=_NOW),
    _col("reason", sa.Text, nullable=True),
)
legal_holds = sa.Table(
    "legal_holds",
    metadata,
    _col("id", sa.BigInteger, primary_key=True),
    _col("category", sa.Text),
    _col("case_name", sa.Text),
    _col("reason", sa.Text),
    _col("placed_by", sa.Text),
    _col("placed_at", _TS, server_default=_NOW),
)
legal_hold_releases = sa.Table(
    "legal_hold_releases",
    metadata,
    _col("hold_id", sa.BigInteger, sa.ForeignKey("legal_holds.id"), primary_key=True),
    _col("reason", sa.Text),
    _col("released_by", sa.Text),
    _col("released_at", _TS, server_default=_NOW),
)
# A view: the holds without a release.
active_legal_holds = sa.Table(
    "active_legal_holds",
    metadata,
    sa.Column("id", sa.BigInteger),
    sa.Column("category", sa.Text),
    sa.Column("case_name", sa.Text),
    sa.Column("reason", sa.Text),
    sa.Column("placed_by", sa.Text),
    sa.Column("placed_at", _TS),
)
archives = sa.Table(
    "archives",
    metadata,
    _col("id", sa.BigInteger, primary_key=True),
    _col("category", sa.Text),
    _col("month", sa.Date),
    _col("first_seq", sa.BigInteger),
    _col("last_seq", sa.BigInteger),
    _col("row_count", sa.BigInteger),
    _col("first_prev_hash", BYTEA),
    _col("last_entry_hash", BYTEA),
    _col("first_recorded_at", _TS),
    _col("last_recorded_at", _TS),
    _col("path", sa.Text),
    _col("file_sha256", BYTEA),
    _col("manifest_sha256", BYTEA),
    _col("bytes", sa.BigInteger),
    _col("created_at", _TS, server_default=_NOW),
    _col("archived_event", UUID(as_uuid=True), nullable=True),
    _col("purged_at", _TS, nullable=True),
    _col("anchor_id", sa.BigInteger, sa.ForeignKey("purge_anchors.id"), nullable=True),
    _col("purged_event", UUID(as_uuid=True), nullable=True),
    _col("deleted_at", _TS, nullable=True),
    _col("deleted_event", UUID(as_uuid=True), nullable=True),
)

# --- 004_siem ----------------------------------------------------------------------------
siem_destinations = sa.Table(
    "siem_destinations",
    metadata,
    _col("id", sa.BigInteger, primary_key=True),
    _col("name", sa.Text),
    _col("transport", sa.Text),
    _col("format", sa.Text),
    _col("endpoint", sa.Text),
    _col("options", JSONB, server_default=sa.text("'{}'::jsonb")),
    # The HEC token or webhook HMAC key; the reader role cannot select it.
    _col("secret", sa.Text, nullable=True),
    sa.Column("has_secret", sa.Boolean, sa.Computed("secret IS NOT NULL", persisted=True)),
    _col("enabled", sa.Boolean, server_default=sa.true()),
    _col("created_at", _TS, server_default=_NOW),
    _col("updated_at", _TS, server_default=_NOW),
    _col("removed_at", _TS, nullable=True),
)
siem_cursors = sa.Table(
    "siem_cursors",
    metadata,
    _col("destination_id", sa.BigInteger, sa.ForeignKey("siem_destinations.id"), primary_key=True),
    _col("stream", sa.Text, primary_key=True),
    _col("position", sa.BigInteger, server_default=sa.text("0")),
    _col("delivered_at", _TS, nullable=True),
)
siem_state = sa.Table(
    "siem_state",
    metadata,
    _col("destination_id", sa.BigInteger, sa.ForeignKey("siem_destinations.id"), primary_key=True),
    _col("error_count", sa.BigInteger, server_default=sa.text("0")),
    _col("last_error", sa.Text, nullable=True),
    _col("last_error_at", _TS, nullable=True),
    _col("retry_at", _TS, nullable=True),
    _col("last_success_at", _TS, nullable=True),
    _col("heartbeat_at", _TS, nullable=True),
    # 008: who holds the destination's lease (the lock itself is a session advisory lock)
    _col("lease_holder", sa.Text, nullable=True),
    _col("lease_since", _TS, nullable=True),
)
siem_dead_letters = sa.Table(
    "siem_dead_letters",
    metadata,
    _col("id", sa.BigInteger, primary_key=True),
    _col("destination_id", sa.BigInteger, sa.ForeignKey("siem_destinations.id")),
    _col("stream", sa.Text),
    _col("position", sa.BigInteger),
    _col("item_key", sa.Text),
    _col("http_status", sa.Integer, nullable=True),
    _col("error", sa.Text),
    _col("payload", sa.Text),
    _col("created_at", _TS, server_default=_NOW),
)

# --- 005_query_indexes -------------------------------------------------------------------
# Events per UTC hour and (category, action, outcome): a derived cache kept by triggers.
event_rollup = sa.Table(
    "event_rollup",
    metadata,
    _col("hour", _TS, primary_key=True),
    _col("category", sa.Text, primary_key=True),
    _col("action", sa.Text, primary_key=True),
    _col("outcome", sa.Text, primary_key=True),
    _col("n", sa.BigInteger),
)


# --- 007_trust_boundary ------------------------------------------------------------------
signing_key_retirements = sa.Table(
    "signing_key_retirements",
    metadata,
    _col("key_id", sa.Text, sa.ForeignKey("signing_keys.key_id"), primary_key=True),
    _col("retired_at", _TS, server_default=_NOW),
    _col("retired_by", sa.Text),
    _col("reason", sa.Text),
)
retention_rules = sa.Table(
    "retention_rules",
    metadata,
    _col("one", sa.Boolean, primary_key=True, server_default=sa.true()),
    _col("floor_days", sa.Integer, server_default=sa.text("365")),
    _col("require_approval", sa.Boolean, server_default=sa.false()),
)

# --- 008_siem_redrive --------------------------------------------------------------------
# One row per re-drive attempt of a dead letter; insert-only.
siem_redrives = sa.Table(
    "siem_redrives",
    metadata,
    _col("id", sa.BigInteger, primary_key=True),
    _col("dead_letter_id", sa.BigInteger, sa.ForeignKey("siem_dead_letters.id")),
    _col("destination_id", sa.BigInteger, sa.ForeignKey("siem_destinations.id")),
    _col("requested_by", sa.Text),
    _col("reason", sa.Text, nullable=True),
    _col("outcome", sa.Text),
    _col("http_status", sa.Integer, nullable=True),
    _col("error", sa.Text, nullable=True),
    _col("attempted_at", _TS, server_default=_NOW),
)

# --- 010_merkle -----------------------------------------------------------------------------
# Complete subtrees of 256 leaves and more of each chain's Merkle tree; insert-only.
merkle_nodes = sa.Table(
    "merkle_nodes",
    metadata,
    _col("category", sa.Text, primary_key=True),
    _col("level", sa.SmallInteger, primary_key=True),
    _col("idx", sa.BigInteger, primary_key=True),
    _col("hash", sa.LargeBinary),
)
# The entry hashes of purged prefixes, a run of at most one tile per row; insert-only.
merkle_purged_leaves = sa.Table(
    "merkle_purged_leaves",
    metadata,
    _col("category", sa.Text, primary_key=True),
    _col("first_seq", sa.BigInteger, primary_key=True),
    _col("entry_hashes", sa.LargeBinary),
)

# --- 013_timestamps --------------------------------------------------------------------------
# RFC 3161 tokens of version-3 checkpoints, one per checkpoint and TSA; insert-only.
checkpoint_timestamps = sa.Table(
    "checkpoint_timestamps",
    metadata,
    _col("id", sa.BigInteger, primary_key=True),
    _col("checkpoint_id", sa.BigInteger, sa.ForeignKey("checkpoints.id")),
    _col("tsa_url", sa.Text),
    _col("token", BYTEA),
    _col("gen_time", _TS),
    _col("stamped_at", _TS, server_default=_NOW),
)
# What the stamping worker last saw of each TSA (errors, last success); updatable state.
timestamp_state = sa.Table(
    "timestamp_state",
    metadata,
    _col("tsa_url", sa.Text, primary_key=True),
    _col("failures", sa.BigInteger, server_default=sa.text("0")),
    _col("last_error", sa.Text, nullable=True),
    _col("last_error_at", _TS, nullable=True),
    _col("last_success_at", _TS, nullable=True),
    _col("last_round_at", _TS, nullable=True),
)
# --- 012_witness ----------------------------------------------------------------------------
# Each cosignature a witness returned, keyed by the checkpoint it cosigns; insert-only.
witness_cosignatures = sa.Table(
    "witness_cosignatures",
    metadata,
    _col("checkpoint_id", sa.BigInteger, sa.ForeignKey("checkpoints.id"), primary_key=True),
    _col("witness", sa.Text, primary_key=True),
    _col("key_hash", sa.LargeBinary, primary_key=True),
    _col("signature", sa.LargeBinary),
    _col("cosigned_at", _TS),
    _col("received_at", _TS, server_default=_NOW),
)
# The submitter's progress per witness and chain: cosigned size, last attempt and error.
witness_state = sa.Table(
    "witness_state",
    metadata,
    _col("witness", sa.Text, primary_key=True),
    _col("category", sa.Text, primary_key=True),
    _col("cosigned_size", sa.BigInteger, server_default=sa.text("0")),
    _col("cosigned_checkpoint_id", sa.BigInteger, sa.ForeignKey("checkpoints.id"), nullable=True),
    _col("cosigned_at", _TS, nullable=True),
    _col("last_attempt_at", _TS, nullable=True),
    _col("last_error", sa.Text, nullable=True),
    _col("last_error_at", _TS, nullable=True),
    _col("error_count", sa.BigInteger, server_default=sa.text("0")),
    _col("retry_at", _TS, nullable=True),
)
# --- 015_api_keys ---------------------------------------------------------------------------
# Keys of the HTTP API: SHA-256 of the secret only; changed only by a revocation, once.
api_keys = sa.Table(
    "api_keys",
    metadata,
    _col("key_id", sa.Text, primary_key=True),
    _col("name", sa.Text),
    _col("secret_hash", BYTEA),
    _col("prefix", sa.Text),
    _col("scopes", ARRAY(sa.Text)),
    _col("allow_cidrs", ARRAY(CIDR), server_default=sa.text("'{}'")),
    _col("rate", sa.Double),
    _col("burst", sa.Integer),
    _col("created_at", _TS, server_default=_NOW),
    _col("created_by", sa.Text),
    _col("revoked_at", _TS, nullable=True),
    _col("revoked_by", sa.Text, nullable=True),
    _col("rotated_from", sa.Text, sa.ForeignKey("api_keys.key_id"), nullable=True),
)
