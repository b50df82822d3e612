"""Proofs that leave the building: Merkle trees over the chains (RFC 9162), signed notes and
checkpoints (C2SP), witnesses' cosignatures and RFC 3161 time-stamps (docs/integrity.md)."""
