"""Filling the directory: from a CSV file, from Microsoft Graph, or with demo principals."""

from __future__ import annotations

import csv
import random
import unicodedata
import uuid
from pathlib import Path
from typing import Any, Literal

import pydantic

from auditlog.errors import GraphError, InvalidFile
from auditlog.identity.directory import (
    CSV_COLUMNS,
    CSV_OPTIONAL_COLUMNS,
    DEMO_TENANT_ID,
    Directory,
    Principal,
    SyncResult,
)
from auditlog.identity.graph import GraphClient

# --- CSV ---------------------------------------------------------------------------------


def load_csv(path: str | Path) -> list[Principal]:
    """Read principals from a CSV file.

    Parameters
    ----------
    path
        A UTF-8 CSV file (a byte-order mark is allowed), RFC 4180 quoting. The first row is
        the header and must name the columns ``object_id,upn,mail,display_name,type,tenant_id``
        in any order; ``app_id`` and ``account_enabled`` (``true``/``false``) may be added.
        ``object_id`` is the Entra object id (a UUID, required); ``type`` is ``user`` or
        ``service`` (required); the other cells may be empty. Blank lines are skipped.

    Returns
    -------
    list of Principal
        One per row, with ``source="csv"``.

    Raises
    ------
    InvalidFile
        (a ``ValueError``) naming the line and column of the first bad cell, an unknown or
        missing header column, or an object id given twice.
    """
    path = Path(path)
    with path.open(encoding="utf-8-sig", newline="") as handle:
        reader = csv.reader(handle)
        try:
            header = _csv_header(path, next(reader, None))
            return _csv_rows(path, reader, header)
        except UnicodeDecodeError:
            raise InvalidFile(str(path), reader.line_num + 1, "(row)", "is not UTF-8") from None


def _csv_header(path: Path, row: list[str] | None) -> list[str]:
    if row is None:
        raise InvalidFile(
            str(path), 1, "(header)", f"file is empty; give the header {','.join(CSV_COLUMNS)}"
        )
    header = [cell.strip().lower() for cell in row]
    for name in header:
        if name not in CSV_COLUMNS + CSV_OPTIONAL_COLUMNS or header.count(name) > 1:
            raise InvalidFile(
                str(path),
                1,
                name or "(empty)",
                "unknown or repeated column; allowed: "
                + ",".join(CSV_COLUMNS + CSV_OPTIONAL_COLUMNS),
            )
    missing = [c for c in CSV_COLUMNS if c not in header]
    if missing:
        raise InvalidFile(str(path), 1, ",".join(missing), "missing from the header")
    return header


def _csv_rows(path: Path, reader: Any, header: list[str]) -> list[Principal]:
    out: list[Principal] = []
    seen: dict[str, int] = {}
    for row in reader:
        if not any(cell.strip() for cell in row):
            continue
        line = reader.line_num
        principal = _csv_principal(path, line, header, row)
        if principal.object_id in seen:
            raise InvalidFile(
                str(path),
                line,
                "object_id",
                f"{principal.object_id} was already given on line {seen[principal.object_id]}",
            )
        seen[principal.object_id] = line
        out.append(principal)
    return out


def _csv_principal(path: Path, line: int, header: list[str], row: list[str]) -> Principal:
    if len(row) != len(header):
        raise InvalidFile(
            str(path), line, "(row)", f"has {len(row)} cells, the header has {len(header)}"
        )
    values: dict[str, Any] = {name: cell.strip() for name, cell in zip(header, row, strict=True)}
    values["type"] = values["type"].lower()
    if "account_enabled" in values:
        values["account_enabled"] = _csv_bool(path, line, values["account_enabled"])
    try:
        return Principal(**values, source="csv")
    except pydantic.ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        column = str(err["loc"][0]) if err["loc"] else "(row)"
        reason = str(err["msg"]).removeprefix("Value error, ")
        raise InvalidFile(str(path), line, column, reason) from None


def _csv_bool(path: Path, line: int, cell: str) -> bool | None:
    known = {"": None, "true": True, "false": False, "1": True, "0": False}
    if cell.lower() not in known:
        raise InvalidFile(str(path), line, "account_enabled", f"{cell[:20]!r} is not true or false")
    return known[cell.lower()]


# --- Microsoft Graph ---------------------------------------------------------------------


def sync_from_graph(directory: Directory, client: GraphClient) -> SyncResult:
    """Replace the tenant's Graph-sourced principals with what Graph lists now.

    All pages are fetched before anything is written, so a failed sync changes nothing.
    Principals from CSV or demo data are left alone.

    Raises
    ------
    GraphError
        Graph or the token endpoint failed, or Graph sent an object with a bad field.
    """
    users = [_from_graph(item, "user", client.tenant_id) for item in client.users()]
    services = [_from_graph(s, "service", client.tenant_id) for s in client.service_principals()]
    _, removed = directory.replace([*users, *services], source="graph", tenant_id=client.tenant_id)
    return SyncResult(users=len(users), service_principals=len(services), removed=removed)


_GRAPH_FIELDS = {"object_id": "id", "upn": "userPrincipalName", "mail": "mail",
                 "display_name": "displayName", "app_id": "appId",
                 "account_enabled": "accountEnabled"}  # fmt: skip


def _from_graph(item: dict[str, Any], kind: Literal["user", "service"], tenant: str) -> Principal:
    fields = {ours: item.get(theirs) for ours, theirs in _GRAPH_FIELDS.items()}
    try:
        return Principal.model_validate(
            {**fields, "type": kind, "tenant_id": tenant, "source": "graph"}
        )
    except pydantic.ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        where = err["loc"][0] if err["loc"] else "field"
        raise GraphError(
            f"Graph sent a {kind} ({str(item.get('id'))[:60]}) with a bad {where}: {err['msg']}"
        ) from None


# --- demo data ---------------------------------------------------------------------------

_FIRST = ("Zoë", "José", "Aisha", "Bjørn", "Chen", "Daniela", "Émile", "Fatima", "Grace", "Hiro",
          "Ingrid", "Kwame", "Lena", "Mateo", "Nadia", "Oskar", "Priya", "Quinn", "Rosa", "Sven",
          "Tomasz", "Uma", "Viktor", "Wen", "Yusuf")  # fmt: skip
_LAST = ("Müller", "Ñúñez", "Andersen", "Bauer", "Costa", "Dubois", "Evans", "Fischer", "García",
         "Haddad", "Ito", "Jensen", "Kowalski", "Nakamura", "O'Brien", "Patel", "Rossi",
         "Schmidt", "Tanaka", "Wójcik")  # fmt: skip
_SERVICES = (
    "Policy Engine",
    "Remediation Bot",
    "Access Review Runner",
    "Config Sync",
    "SIEM Forwarder",
)
_FOLD = str.maketrans({"ø": "o", "æ": "ae", "ß": "ss", "ł": "l", "đ": "d", "'": ""})


def _login(first: str, last: str) -> str:
    text = unicodedata.normalize("NFKD", f"{first}.{last}".lower().translate(_FOLD))
    return "".join(ch for ch in text if ch.isascii() and (ch.isalnum() or ch in ".-"))


def _demo_uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def demo_principals(
    n_users: int = 30, tenant_id: str = DEMO_TENANT_ID, *, seed: int = 7
) -> list[Principal]:
    """A deterministic directory for demos: ``n_users`` users at contoso.com, then services.

    The first users are "Zoë Müller" and "José Ñúñez" (non-ASCII names, ASCII UPNs); a few
    users are disabled or have no mail. The same arguments always give the same principals.
    """
    rng = random.Random(seed)
    out: list[Principal] = []
    logins: set[str] = set()
    for i in range(n_users):
        first, last = (_FIRST[i], _LAST[i]) if i < 2 else (rng.choice(_FIRST), rng.choice(_LAST))
        login = _login(first, last)
        while login in logins:
            login = f"{_login(first, last)}{rng.randrange(2, 100)}"
        logins.add(login)
        upn = f"{login}@contoso.com"
        out.append(
            Principal(
                object_id=_demo_uuid(rng),
                type="user",
                upn=upn,
                mail=None if i % 11 == 10 else upn,
                display_name=f"{first} {last}",
                tenant_id=tenant_id,
                account_enabled=i % 13 != 12,
                source="demo",
            )
        )
    for name in _SERVICES:
        out.append(
            Principal(
                object_id=_demo_uuid(rng),
                type="service",
                display_name=name,
                tenant_id=tenant_id,
                account_enabled=True,
                source="demo",
                app_id=_demo_uuid(rng),
            )
        )
    return out
