"""auditlog: a tamper-evident, hash-chained audit log on PostgreSQL.

The core package, importable and testable without Streamlit. Its public API is what this
module names; everything else is reached through its subpackage (see CONTRIBUTING.md)::

    AuditLog          append events (auditlog.store), hash-chained per category
    Filters           the timeline's filter set (auditlog.query.filters)
    verify_database   check every chain, column, checkpoint and anchor (auditlog.integrity)
    AuditLogError     the base of every error the package raises (auditlog.errors)
    __version__       the installed distribution's version (pyproject.toml is its one source)

The command line is ``auditlog`` (or ``python -m auditlog``).
"""

from importlib.metadata import PackageNotFoundError, version

from auditlog.errors import AuditLogError
from auditlog.integrity.database import verify_database
from auditlog.query.filters import Filters
from auditlog.store import AuditLog

try:
    __version__ = version("auditlog")
except PackageNotFoundError:  # pragma: no cover - running from a source tree never installed
    __version__ = "0+unknown"

__all__ = ["AuditLog", "AuditLogError", "Filters", "__version__", "verify_database"]
