"""API keys of the HTTP ingestion service: the secret format, scopes, management, refusals.

keys       token format (``alk_<key_id>_<secret>``), hashing, scopes, allow-lists
admin      create / list / rotate / revoke (each an audit event), for the CLI and dashboard
refusals   refused uses as audit events, repeats coalesced per key, reason and minute
"""
