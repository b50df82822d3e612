"""auditlog: a tamper-evident, hash-chained audit log on PostgreSQL.

The core package; importable and testable without Streamlit. Entry points: ``AuditLog``
(``auditlog.store``), ``verify_database`` (``auditlog.integrity``), the ``auditlog`` CLI.
"""

__version__ = "0.1.0"
