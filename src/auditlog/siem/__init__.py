"""SIEM destinations and streaming: formats, transports, delivery worker, status.

See docs/siem.md. ``auditlog`` core modules do not import this package; it imports them.
"""
