"""The HTTP ingestion and pull API (``auditlog serve``): Starlette on uvicorn.

app        the routes, their wiring (engines, log, limits), :func:`serve`
auth       Bearer API keys: lookup (cached), scopes, source allow-list, rate per key
body       the request body: streamed under a byte cap and a read timeout, split into events
ingest     POST /v1/events: validation, idempotency, receipts
read       GET /v1/events, /v1/checkpoints, /v1/events/{id}/proof
problems   RFC 9457 problem details; every error a client sees is one
metrics    Prometheus metrics (/metrics)
schemas    the pydantic models of the answers, and the OpenAPI 3.1 document
"""
