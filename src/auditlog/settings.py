"""Guard rails and locations, loaded once from the environment and ``auditlog.toml``.

Precedence: environment variable ``AUDITLOG_<NAME>`` > ``[auditlog]`` table in
``auditlog.toml`` (in the working directory or ``AUDITLOG_CONFIG``) > default.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from auditlog.errors import ConfigError


@dataclass(frozen=True)
class Settings:
    """Every tunable of the package, with its default and a help line."""

    home: Path = field(default=Path(".auditlog"), metadata={"help": "data dir: embedded db, keys"})
    database_url: str | None = field(
        default=None, metadata={"help": "PostgreSQL URL; unset = embedded server under home"}
    )
    max_event_bytes: int = field(default=256 * 1024, metadata={"help": "cap on one event"})
    max_state_bytes: int = field(default=64 * 1024, metadata={"help": "cap on before / after"})
    max_line_bytes: int = field(
        default=512 * 1024, metadata={"help": "cap on one NDJSON line, checked before parsing"}
    )
    clock_skew_seconds: int = field(
        default=300, metadata={"help": "occurred_at this far from recorded_at is flagged"}
    )
    checkpoint_every: int = field(default=1000, metadata={"help": "sign a head every N entries"})
    checkpoint_seconds: int = field(default=60, metadata={"help": "...or every T seconds"})
    signing_key: str | None = field(
        default=None, metadata={"help": "Ed25519 private key, PEM; unset = key file under home"}
    )
    statement_timeout_ms: int = field(default=30_000, metadata={"help": "per query, dashboard"})
    max_returned_rows: int = field(default=1000, metadata={"help": "rows a page fetches at most"})

    @property
    def key_path(self) -> Path:
        return self.home / "signing_key.pem"


def _coerce(name: str, value: Any, typ: Any) -> Any:
    text = str(typ)
    try:
        if "Path" in text:
            return Path(value)
        if "int" in text:
            return int(value)
    except ValueError as exc:
        raise ConfigError(f"setting {name}: {value!r} is not a valid {text}") from exc
    return str(value)


def load_settings(env: dict[str, str] | None = None, **overrides: Any) -> Settings:
    """Build the settings from env, ``auditlog.toml`` and keyword overrides."""
    env = dict(os.environ if env is None else env)
    toml_path = Path(env.get("AUDITLOG_CONFIG", "auditlog.toml"))
    table: dict[str, Any] = {}
    if toml_path.is_file():
        table = tomllib.loads(toml_path.read_text("utf-8")).get("auditlog", {})
    values: dict[str, Any] = {}
    for f in dataclasses.fields(Settings):
        raw = env.get(f"AUDITLOG_{f.name.upper()}", table.get(f.name))
        if raw is not None and raw != "":
            values[f.name] = _coerce(f.name, raw, f.type)
    types = {f.name: f.type for f in dataclasses.fields(Settings)}
    for name, value in overrides.items():
        if name not in types:
            raise ConfigError(f"unknown setting {name!r}; known: {', '.join(types)}")
        values[name] = value if value is None else _coerce(name, value, types[name])
    return Settings(**values)
