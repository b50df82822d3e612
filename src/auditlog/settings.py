"""Every tunable of the package: ONE frozen :class:`Settings` with sections, read once.

Sections (each a frozen dataclass; every field has a default and a help line)::

    store       data directory, database URL, signing key, ingest caps, checkpoint cadence
    dashboard   statement timeout, row limits, the local operator's name
    export      export guard rails (rows, timeout, chunk size)
    retention   floor, ceiling, two-person approval, archive directory
    graph       Microsoft Graph client credentials for ``auditlog identity sync``
    siem        the ``auditlog stream`` worker's polling cadence
    timestamps  the RFC 3161 time-stamp authority of ``auditlog timestamp``
    witness     the witnesses ``auditlog witness submit`` asks to cosign, and the quorum
    roles       user / Entra group -> role (``[roles.users]``, ``[roles.groups]``)
    api         the HTTP ingestion service: address, body and batch caps, rates, proxies

Precedence, per setting: environment variable > ``auditlog.toml`` > default. The file is
``./auditlog.toml`` or the one ``AUDITLOG_CONFIG`` names; its tables are the sections
(``[store]``, ``[retention]``, ...), and the older flat ``[auditlog]`` table still sets
store, dashboard and export settings by name (a section table wins over it).

Environment names (:func:`env_name`): store, dashboard and export settings keep their historic
flat names ``AUDITLOG_<NAME>`` (``AUDITLOG_DATABASE_URL``, ``AUDITLOG_MAX_EXPORT_ROWS``), so
deployments do not break; the other sections are ``AUDITLOG_<SECTION>_<NAME>``
(``AUDITLOG_RETENTION_MIN_DAYS``, ``AUDITLOG_GRAPH_TENANT_ID``), as they were already named.

Values are coerced from the fields' type hints by one coercer (:func:`coerce`); a bad value or
an unknown setting raises :class:`~auditlog.errors.ConfigError` naming it. Library code takes
the settings (or a section) as an argument and never reads the environment itself.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from auditlog.errors import ConfigError

FLAT_SECTIONS = ("store", "dashboard", "export")
"""Sections whose environment names have no section part (``AUDITLOG_<NAME>``)."""
TRUE, FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


@dataclass(frozen=True)
class StoreSettings:
    """Where the log lives and the caps the writer enforces."""

    home: Path = field(
        default=Path(".auditlog"),
        metadata={"help": "data dir: embedded PostgreSQL (pgdata/), signing key"},
    )
    database_url: str | None = field(
        default=None,
        metadata={"help": "PostgreSQL >= 14 URL; unset = the embedded server under home"},
    )
    signing_key: str | None = field(
        default=None,
        metadata={"help": "Ed25519 private key, PEM; unset = <home>/signing_key.pem, created 0600"},
    )
    max_event_bytes: int = field(default=256 * 1024, metadata={"help": "cap on one event"})
    max_state_bytes: int = field(
        default=64 * 1024, metadata={"help": "cap on before / after, each"}
    )
    max_line_bytes: int = field(
        default=512 * 1024, metadata={"help": "cap on one NDJSON line, checked before parsing"}
    )
    clock_skew_seconds: int = field(
        default=300,
        metadata={"help": "occurred_at further than this from recorded_at is accepted but flagged"},
    )
    checkpoint_every: int = field(
        default=1000, metadata={"help": "sign a chain head at least every N entries..."}
    )
    checkpoint_seconds: int = field(default=60, metadata={"help": "...or every T seconds"})
    # --- the unsigned span (issue 10): verify flags a tail unsigned for longer than this
    checkpoint_slack_seconds: int = field(
        default=300,
        metadata={
            "help": "verify reports an unsigned span once the rows after the last checkpoint "
            "have waited checkpoint_seconds plus this long"
        },
    )
    # --- bounds of one event (issue 10): checked before any recursion, named by path -------
    max_json_depth: int = field(
        default=32,
        metadata={"help": "most nested objects/arrays in one event (the event object is 1)"},
    )
    max_object_keys: int = field(
        default=1000, metadata={"help": "most keys in any one JSON object of an event"}
    )
    occurred_past_days: int = field(
        default=7305,
        metadata={"help": "occurred_at at most this many days before the validating clock"},
    )
    occurred_future_hours: int = field(
        default=24,
        metadata={"help": "occurred_at at most this many hours after the validating clock"},
    )
    # --- group commit (issue 12): the caps of one group and of the queue behind it -----------
    group_max_events: int = field(
        default=1000,
        metadata={
            "help": "most events one group commit (one transaction) holds; a single larger "
            "request is committed alone"
        },
    )
    group_max_bytes: int = field(
        default=4 << 20,
        metadata={"help": "most bytes of canonical record text one group commit holds"},
    )
    queue_max_events: int = field(
        default=10_000,
        metadata={
            "help": "events waiting for the committer at most; when full, record() blocks "
            "and submit() fails with WriterBusy"
        },
    )
    # --- proofs (issue 11) -------------------------------------------------------------------
    origin: str = field(
        default="auditlog.local",
        metadata={
            "help": "this deployment's name in checkpoint notes: each chain's origin is "
            "<origin>/<category> (a host-like name, e.g. auditlog.example.com)"
        },
    )

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[!-~]+", self.origin) or "+" in self.origin:
            raise ConfigError(
                "setting store.origin: printable ASCII without spaces or '+', e.g. "
                f"auditlog.example.com (got {self.origin!r})"
            )
        # the depth ceiling keeps every recursive walk (encoders, verifiers) far from Python's
        # recursion limit
        for name, top in (("max_json_depth", 256), ("max_object_keys", 10**6)):
            if not 1 <= getattr(self, name) <= top:
                raise ConfigError(f"setting store.{name}: must be between 1 and {top}")
        for name in ("group_max_events", "group_max_bytes", "queue_max_events"):
            if getattr(self, name) < 1:
                raise ConfigError(f"setting store.{name}: must be at least 1")
        # the ceilings are a little over the span of years 1..9999 (all PostgreSQL stores here)
        for name, top in (("occurred_past_days", 4_000_000), ("occurred_future_hours", 10**8)):
            if not 0 <= getattr(self, name) <= top:
                raise ConfigError(f"setting store.{name}: must be between 0 and {top}")

    @property
    def key_path(self) -> Path:
        return self.home / "signing_key.pem"


@dataclass(frozen=True)
class DashboardSettings:
    """Guard rails of the dashboard's (and the reader role's) queries; the local operator."""

    statement_timeout_ms: int = field(
        default=30_000, metadata={"help": "statement timeout of the reader's connections"}
    )
    max_returned_rows: int = field(default=1000, metadata={"help": "rows a page fetches at most"})
    max_download_rows: int = field(
        default=200_000,
        metadata={"help": "rows a browser CSV download holds at most (the file is held in memory)"},
    )
    user: str | None = field(
        default=None,
        metadata={
            "help": "the local operator (CLI, dashboard without sign-in); unset = the OS user"
        },
    )


@dataclass(frozen=True)
class ExportSettings:
    """Export guard rails."""

    max_export_rows: int = field(
        default=5_000_000, metadata={"help": "most rows one export may hold (0 = no cap)"}
    )
    export_timeout_ms: int = field(
        default=600_000, metadata={"help": "statement timeout of an export's queries"}
    )
    export_chunk_bytes: int = field(
        default=1 << 20, metadata={"help": "size of the chunks an export is streamed in"}
    )

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            if getattr(self, f.name) < 0:
                raise ConfigError(f"setting {f.name}: must not be negative (0 disables the cap)")


@dataclass(frozen=True)
class RetentionSettings:
    """Guard rails of retention policies (see docs/retention.md)."""

    min_days: int = field(
        default=365, metadata={"help": "floor: no policy may keep events fewer days"}
    )
    max_days: int = field(default=3650, metadata={"help": "ceiling of a policy"})
    max_archive_days: int = field(default=3650, metadata={"help": "ceiling of the archive period"})
    require_approval: bool = field(
        default=False, metadata={"help": "a change needs a second compliance lead"}
    )
    archive_dir: Path | None = field(
        default=None, metadata={"help": "where archives go; unset = <home>/archives"}
    )

    def __post_init__(self) -> None:
        if self.min_days < 1:
            raise ConfigError(f"retention.min_days = {self.min_days}: must be at least 1")
        if self.max_days < self.min_days:
            raise ConfigError(
                f"retention.max_days = {self.max_days} is below retention."
                f"min_days = {self.min_days}; raise max_days"
            )

    def archive_root(self, home: Path) -> Path:
        return self.archive_dir if self.archive_dir is not None else home / "archives"


@dataclass(frozen=True)
class GraphSettings:
    """Microsoft Graph client credentials (application permissions) for identity sync."""

    tenant_id: str | None = field(default=None, metadata={"help": "Entra tenant id"})
    client_id: str | None = field(default=None, metadata={"help": "app registration's client id"})
    client_secret: str | None = field(default=None, metadata={"help": "its client secret"})
    base_url: str | None = field(
        default=None, metadata={"help": "Graph endpoint; unset = https://graph.microsoft.com"}
    )


@dataclass(frozen=True)
class SiemSettings:
    """The ``auditlog stream`` worker."""

    poll_seconds: float = field(
        default=2.0, metadata={"help": "polling fallback when no NOTIFY arrives, seconds"}
    )
    reload_seconds: float = field(
        default=5.0, metadata={"help": "how often destinations are re-read, seconds"}
    )


@dataclass(frozen=True)
class TimestampSettings:
    """The ``auditlog timestamp`` worker: which time-stamp authority (TSA) stamps checkpoints."""

    url: str | None = field(
        default=None,
        metadata={"help": "the TSA's http(s) URL (RFC 3161 over HTTP); unset = no stamping"},
    )
    anchor: Path | None = field(
        default=None,
        metadata={
            "help": "PEM file of the TSA's root CA certificate(s): tokens are verified "
            "against it before they are stored"
        },
    )
    timeout_seconds: float = field(
        default=10.0, metadata={"help": "how long to wait for the TSA's reply, seconds"}
    )
    poll_seconds: float = field(
        default=30.0, metadata={"help": "the worker's round cadence (and retry delay), seconds"}
    )

    def __post_init__(self) -> None:
        if self.url is not None and not re.match(r"https?://[^\s]+$", self.url):
            raise ConfigError(
                f"setting timestamps.url (AUDITLOG_TIMESTAMPS_URL): {self.url!r} is not an "
                "http:// or https:// URL; give the TSA's URL"
            )
        if self.timeout_seconds <= 0 or self.poll_seconds <= 0:
            raise ConfigError(
                "settings timestamps.timeout_seconds and timestamps.poll_seconds must be "
                "above 0 seconds"
            )


@dataclass(frozen=True)
class WitnessSettings:
    """The witnesses the log submits its checkpoints to (``auditlog witness submit``)."""

    servers: tuple[str, ...] = field(
        default=(),
        metadata={
            "help": "one entry per witness: '<vkey> <url>' (its cosignature key, type 0x04, "
            "whose name is the witness's name, then its URL)"
        },
    )
    quorum: int = field(
        default=0,
        metadata={"help": "cosignatures a checkpoint needs to count as witnessed; 0 = all"},
    )
    timeout_seconds: float = field(
        default=10.0, metadata={"help": "connect and read timeout per request, seconds"}
    )
    poll_seconds: float = field(
        default=5.0, metadata={"help": "how often the submitter looks for new checkpoints"}
    )
    retry_min_seconds: float = field(
        default=2.0, metadata={"help": "first back-off after a failed submission, seconds"}
    )
    retry_max_seconds: float = field(
        default=300.0, metadata={"help": "longest back-off between attempts, seconds"}
    )


@dataclass(frozen=True)
class ApiSettings:
    """The HTTP ingestion service (``auditlog serve``, docs/api.md)."""

    host: str = field(default="127.0.0.1", metadata={"help": "address the service listens on"})
    port: int = field(default=8600, metadata={"help": "port the service listens on"})
    max_batch_events: int = field(
        default=1000, metadata={"help": "most events one POST /v1/events may carry"}
    )
    max_body_bytes: int = field(
        default=8 * 1024 * 1024,
        metadata={"help": "largest request body, checked while it streams in (413 past it)"},
    )
    read_timeout_s: float = field(
        default=10.0,
        metadata={"help": "seconds a client has to send its whole request body (408 after)"},
    )
    default_rate: float = field(
        default=1000.0, metadata={"help": "events per second a new API key may send (--rate)"}
    )
    default_burst: int = field(
        default=2000, metadata={"help": "events a new API key may send at once (--burst)"}
    )
    max_page_events: int = field(
        default=1000, metadata={"help": "most events one GET /v1/events page returns"}
    )
    key_cache_seconds: float = field(
        default=5.0,
        metadata={
            "help": "how long a looked-up API key is trusted before it is read again "
            "(a revocation takes effect within this time)"
        },
    )
    trusted_proxies: tuple[str, ...] = field(
        default=(),
        metadata={"help": "CIDRs of the reverse proxies whose X-Forwarded-For is believed"},
    )

    def __post_init__(self) -> None:
        for name in ("max_batch_events", "max_body_bytes", "max_page_events", "default_burst"):
            if getattr(self, name) < 1:
                raise ConfigError(f"setting api.{name}: must be at least 1")
        for name in ("read_timeout_s", "default_rate"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"setting api.{name}: must be greater than 0")
        if self.key_cache_seconds < 0:
            raise ConfigError("setting api.key_cache_seconds: must not be negative")


Pairs = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class RolesSettings:
    """Who gets which role; checked against the role names by :mod:`auditlog.access`."""

    users: Pairs = field(
        default=(),
        metadata={"help": "user (UPN, e-mail, object id, local name) = role, e.g. ops=admin"},
    )
    groups: Pairs = field(default=(), metadata={"help": "Entra group object id = role"})


SECTIONS: dict[str, type] = {
    "store": StoreSettings,
    "dashboard": DashboardSettings,
    "export": ExportSettings,
    "retention": RetentionSettings,
    "graph": GraphSettings,
    "siem": SiemSettings,
    "timestamps": TimestampSettings,
    "witness": WitnessSettings,
    "roles": RolesSettings,
    "api": ApiSettings,
}


@dataclass(frozen=True)
class Settings:
    """The whole configuration: one frozen object with a section per concern."""

    store: StoreSettings = field(default_factory=StoreSettings)
    dashboard: DashboardSettings = field(default_factory=DashboardSettings)
    export: ExportSettings = field(default_factory=ExportSettings)
    retention: RetentionSettings = field(default_factory=RetentionSettings)
    graph: GraphSettings = field(default_factory=GraphSettings)
    siem: SiemSettings = field(default_factory=SiemSettings)
    timestamps: TimestampSettings = field(default_factory=TimestampSettings)
    witness: WitnessSettings = field(default_factory=WitnessSettings)
    roles: RolesSettings = field(default_factory=RolesSettings)
    api: ApiSettings = field(default_factory=ApiSettings)

    def replace(self, **sections: Mapping[str, Any]) -> Settings:
        """A copy with some settings changed, by section: ``s.replace(store={"home": p})``.

        Values are coerced like any other source; an unknown section or setting raises
        :class:`~auditlog.errors.ConfigError`.
        """
        changed = {}
        for name, values in _known_sections(sections).items():
            section = getattr(self, name)
            changed[name] = dataclasses.replace(section, **_coerced(name, values))
        return dataclasses.replace(self, **changed)


def env_name(section: str, name: str) -> str:
    """The environment variable of a setting, e.g. ``AUDITLOG_RETENTION_MIN_DAYS``."""
    prefix = "AUDITLOG_" if section in FLAT_SECTIONS else f"AUDITLOG_{section.upper()}_"
    return prefix + name.upper()


def help_of(section: str) -> list[tuple[str, Any, str]]:
    """``(name, default, help)`` of every setting of a section, in declaration order."""
    return [(f.name, f.default, f.metadata["help"]) for f in dataclasses.fields(SECTIONS[section])]


def load_settings(env: Mapping[str, str] | None = None, **overrides: Mapping[str, Any]) -> Settings:
    """Read the settings once: environment > ``auditlog.toml`` > default, then ``overrides``.

    Parameters
    ----------
    env
        The environment to read (default ``os.environ``); tests pass ``{}``.
    **overrides
        Per section, a mapping of setting -> value, e.g. ``store={"checkpoint_every": 5}``;
        applied last, coerced like the other sources.

    Raises
    ------
    ConfigError
        Naming the setting, for an unknown setting or section, a bad value, invalid TOML.
    """
    env = dict(os.environ if env is None else env)
    tables = _toml_tables(env)
    values = {name: _from_sources(name, env, tables) for name in SECTIONS}
    for name, given in _known_sections(overrides).items():
        values[name].update(_coerced(name, given))
    return Settings(**{name: SECTIONS[name](**v) for name, v in values.items()})


def _known_sections(sections: Mapping[str, Mapping[str, Any]]) -> Mapping[str, Mapping[str, Any]]:
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        raise ConfigError(
            f"unknown settings section(s) {', '.join(sorted(unknown))}; "
            f"known: {', '.join(SECTIONS)}"
        )
    return sections


def _coerced(section: str, given: Mapping[str, Any]) -> dict[str, Any]:
    hints = _hints(section)
    unknown = [name for name in given if name not in hints]
    if unknown:
        raise ConfigError(
            f"unknown setting {section}.{unknown[0]}; known in [{section}]: {', '.join(hints)}"
        )
    return {
        name: coerce(f"{section}.{name} ({env_name(section, name)})", value, hints[name])
        for name, value in given.items()
    }


def _hints(section: str) -> dict[str, Any]:
    cls = SECTIONS[section]
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _from_sources(
    section: str, env: Mapping[str, str], tables: Mapping[str, Any]
) -> dict[str, Any]:
    """The values the environment and the file give one section (defaults left out)."""
    given = dict(tables.get(section, {}))
    for name in _hints(section):
        raw = env.get(env_name(section, name))
        if raw is not None and raw.strip() != "":  # an empty variable means "unset"
            given[name] = raw
    _refuse_unknown_env(section, env)
    return _coerced(section, given)


def _refuse_unknown_env(section: str, env: Mapping[str, str]) -> None:
    if section in FLAT_SECTIONS:
        return  # flat names share AUDITLOG_ with unrelated variables (AUDITLOG_CONFIG, ...)
    prefix = env_name(section, "")
    known = {env_name(section, name) for name in _hints(section)}
    for name in env:
        if name.startswith(prefix) and name not in known:
            raise ConfigError(f"unknown setting {name}; known: {', '.join(sorted(known))}")


def _toml_tables(env: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """The section tables of ``auditlog.toml``, the flat ``[auditlog]`` table spread out."""
    path = Path(env.get("AUDITLOG_CONFIG") or "auditlog.toml")
    if not path.is_file():
        return {}
    try:
        data = tomllib.loads(path.read_text("utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc}); fix the file") from None
    unknown = set(data) - {*SECTIONS, "auditlog"}
    if unknown:
        raise ConfigError(
            f"{path}: unknown table(s) [{'], ['.join(sorted(unknown))}]; "
            f"known: [{'], ['.join(SECTIONS)}] and the older [auditlog]"
        )
    tables = {name: _table(path, name, data.get(name, {})) for name in SECTIONS}
    for name, value in _table(path, "auditlog", data.get("auditlog", {})).items():
        section = _flat_section_of(name, path)
        tables[section].setdefault(name, value)  # the section's own table wins
    return tables


def _table(path: Path, name: str, table: Any) -> dict[str, Any]:
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: {name} must be a table ([{name}]), not {table!r}")
    return dict(table)


def _flat_section_of(name: str, path: Path) -> str:
    for section in FLAT_SECTIONS:
        if name in _hints(section):
            return section
    flat = [n for s in FLAT_SECTIONS for n in _hints(s)]
    raise ConfigError(f"{path}: unknown setting auditlog.{name}; known: {', '.join(flat)}")


# --- coercion: one coercer for every section, driven by the type hints -----------------------


def coerce(name: str, value: Any, hint: Any) -> Any:
    """``value`` (text from the environment, or a TOML / Python value) as type ``hint``.

    Supports str, int, float, bool, Path, ``X | None``, ``tuple[X, ...]`` (a list, or text
    split on commas) and fixed tuples such as ``tuple[str, str]`` (``"a=b"``); a TOML table
    given for a tuple of pairs is taken as its items.

    Raises
    ------
    ConfigError
        Naming the setting and the bad value.
    """
    try:
        return _coerce(value, hint)
    except (TypeError, ValueError):
        raise ConfigError(
            f"setting {name}: {value!r} is not {_describe(hint)}; fix it in the environment "
            "or auditlog.toml"
        ) from None


def _coerce(value: Any, hint: Any) -> Any:
    args = typing.get_args(hint)
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        if value is None:
            return None
        return _coerce(value, next(a for a in args if a is not type(None)))
    if typing.get_origin(hint) is tuple:
        return _tuple(value, args)
    if hint is bool:
        return _bool(value)
    if hint in (int, float) and (
        isinstance(value, bool) or not isinstance(value, int | float | str)
    ):
        raise TypeError(value)
    if hint is int and isinstance(value, float):
        raise ValueError(value)  # 1.5 rows is not a row count; refuse rather than truncate
    if hint is str and not isinstance(value, str):
        raise TypeError(value)
    return hint(value.strip() if isinstance(value, str) and hint is not str else value)


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text not in TRUE + FALSE:
        raise ValueError(value)
    return text in TRUE


def _tuple(value: Any, args: tuple[Any, ...]) -> tuple[Any, ...]:
    if isinstance(value, dict):
        value = list(value.items())
    if len(args) == 2 and args[1] is Ellipsis:
        items = value.split(",") if isinstance(value, str) else value
        items = [i for i in items if not (isinstance(i, str) and not i.strip())]
        return tuple(_coerce(i, args[0]) for i in items)
    items = value.split("=", len(args) - 1) if isinstance(value, str) else value
    if len(items) != len(args):
        raise ValueError(value)
    return tuple(
        _coerce(i.strip() if isinstance(i, str) else i, a) for i, a in zip(items, args, strict=True)
    )


def _describe(hint: Any) -> str:
    if isinstance(hint, types.UnionType):
        return _describe(next(a for a in typing.get_args(hint) if a is not type(None)))
    if typing.get_origin(hint) is tuple:
        return "a comma-separated list of name=value" if hint == Pairs else f"a valid {hint}"
    names = {int: "a whole number", float: "a number", bool: "true or false", str: "text"}
    return names.get(hint, f"a valid {getattr(hint, '__name__', hint)}")
