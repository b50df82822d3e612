#!/usr/bin/env bash
# `make run`: the HTTP API (auditlog serve) beside the dashboard, with a demo API key printed.
set -euo pipefail
BIN=${BIN:-.venv/bin}
"$BIN/auditlog" db upgrade
"$BIN/auditlog" demo --events 5000 --if-empty
# A fresh secret each run: the old demo key is rotated (only its hash was ever stored).
if "$BIN/auditlog" apikey list | grep -q '^demo '; then
  out=$("$BIN/auditlog" apikey rotate demo 2>/dev/null)
else
  out=$("$BIN/auditlog" apikey create demo --scope 'write:*' --scope read 2>/dev/null)
fi
key=$(printf '%s\n' "$out" | tail -n 1)
echo "API: http://127.0.0.1:8600 (docs/api.md); demo API key (write:*, read):"
echo "  $key"
"$BIN/auditlog" serve &
api=$!
trap 'kill "$api" 2>/dev/null || true' EXIT
"$BIN/streamlit" run app.py --server.headless=true
