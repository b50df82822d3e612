"""Who is using the dashboard, and what their role lets them see and do.

Identity comes from one of two places:

- **OIDC sign-in** (``st.login``, e.g. Microsoft Entra ID): the claims of the ID token,
  read by :func:`oidc_identity` (``preferred_username``, ``email``, ``oid``, ``name``,
  ``tid``, ``groups``).
- **Local operator** (no ``[auth]`` section in ``.streamlit/secrets.toml``): the name in
  ``AUDITLOG_USER`` (setting ``dashboard.user``), or the operating-system user, given to
  :func:`local_identity`.

Roles come from the ``roles`` settings section (:mod:`auditlog.settings`), i.e. the ``[roles]``
table of ``auditlog.toml`` (the file ``AUDITLOG_CONFIG`` names, else ``./auditlog.toml``), turned
into a :class:`RolesConfig` by :func:`roles_config`::

    [roles.users]               # UPN, e-mail, Entra object id or local user name -> role
    "alice@contoso.com" = "compliance_lead"
    "ops" = "admin"

    [roles.groups]              # Entra group object id -> role
    "0f8fad5b-d9cb-469f-a165-70867728950e" = "auditor"

Keys match case-insensitively. A user entry wins over group entries; among several groups the
most privileged role wins (admin > compliance_lead > auditor). No match means no role, and a
user with no role sees nothing but a message saying so. Without any ``[roles]`` table, a
*local operator* is an ``admin`` (they already run the process and hold its database
credentials); a signed-in OIDC user never gets a role that is not configured.

What each role may use is the table :data:`PERMISSIONS` (page or action -> roles).
"""

from __future__ import annotations

import getpass
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, cast, get_args

from auditlog.errors import ConfigError, PermissionDenied
from auditlog.settings import RolesSettings

Role = Literal["auditor", "compliance_lead", "admin"]
ROLES: tuple[Role, ...] = get_args(Role)
PRECEDENCE: tuple[Role, ...] = ("admin", "compliance_lead", "auditor")
_ALL: frozenset[Role] = frozenset(ROLES)

PERMISSIONS: dict[str, frozenset[Role]] = {
    # pages
    "timeline": _ALL,
    "correlation": _ALL,
    "diff": _ALL,
    "integrity": _ALL,
    "export": _ALL,
    "retention": _ALL,
    # DESIGN.md: API keys are the platform admin's to configure; nobody else sees the page.
    "api_keys": frozenset({"admin"}),
    # actions
    "export.download": _ALL,
    "integrity.verify": _ALL,
    # DESIGN.md: retention and legal holds are the compliance lead's; an admin configures the
    # platform (SIEM, keys, identity) but does not decide how long evidence is kept.
    "retention.change": frozenset({"compliance_lead"}),
    "legal_hold.change": frozenset({"compliance_lead"}),
    "siem.configure": frozenset({"admin"}),
    "api_keys.manage": frozenset({"admin"}),
    "identity.sync": frozenset({"admin"}),
}
"""Page or action name -> the roles that may use it. Anything not listed is refused."""


@dataclass(frozen=True)
class Identity:
    """The person using the dashboard, as the sign-in names them."""

    user: str
    display_name: str | None = None
    upn: str | None = None
    email: str | None = None
    object_id: str | None = None
    tenant_id: str | None = None
    groups: tuple[str, ...] = ()
    method: Literal["oidc", "local"] = "local"

    def keys(self) -> list[str]:
        """Every name ``[roles.users]`` may know this user by."""
        found = (self.user, self.upn, self.email, self.object_id)
        return list(dict.fromkeys(k for k in found if k))

    def actor(self) -> dict[str, Any]:
        """The audit-event actor for this user (the store's resolver fills in the rest)."""
        upn = self.upn or (self.user if "@" in self.user else None)
        actor = {
            "type": "user",
            "id": self.user,
            "upn": upn,
            "display_name": self.display_name,
            "entra_object_id": self.object_id,
            "tenant_id": self.tenant_id,
        }
        return {k: v for k, v in actor.items() if v is not None}


def local_identity(user: str | None = None) -> Identity:
    """The local operator: ``user`` (setting ``dashboard.user``), else the OS user."""
    return Identity(user=(user or "").strip() or getpass.getuser(), method="local")


def oidc_identity(claims: Mapping[str, Any]) -> Identity:
    """The signed-in user from OIDC ID-token claims (``st.user``), Entra ID names first.

    Raises
    ------
    PermissionDenied
        When the claims name nobody (no ``preferred_username``, ``email``, ``oid`` or ``sub``).
    """
    upn = _text(claims.get("preferred_username")) or _text(claims.get("upn"))
    email = _text(claims.get("email"))
    oid = _text(claims.get("oid"))
    user = upn or email or oid or _text(claims.get("sub"))
    if user is None:
        raise PermissionDenied(
            "the identity provider's token names no user (no preferred_username, email, oid "
            "or sub claim); check the app registration's token configuration"
        )
    groups = claims.get("groups") or ()
    if isinstance(groups, str):
        groups = (groups,)
    return Identity(
        user=user,
        display_name=_text(claims.get("name")),
        upn=upn,
        email=email,
        object_id=oid,
        tenant_id=_text(claims.get("tid")),
        groups=tuple(str(g) for g in groups),
        method="oidc",
    )


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return str(value).strip() or None


@dataclass(frozen=True)
class RolesConfig:
    """The ``[roles]`` table: lower-cased user keys and group ids, each -> a role."""

    users: Mapping[str, Role] = field(default_factory=dict)
    groups: Mapping[str, Role] = field(default_factory=dict)
    configured: bool = False

    def role_for(self, user: str | Iterable[str], groups: Iterable[str] = ()) -> Role | None:
        """The role of a user known by ``user`` (one name or several) in ``groups``."""
        names = [user] if isinstance(user, str) else list(user)
        for name in names:
            role = self.users.get(name.strip().lower())
            if role is not None:
                return role
        found = {self.groups.get(g.strip().lower()) for g in groups}
        return next((r for r in PRECEDENCE if r in found), None)

    def role_of(self, identity: Identity) -> Role | None:
        """The role of ``identity``; a local operator is admin when no roles are configured."""
        if not self.configured and identity.method == "local":
            return "admin"
        return self.role_for(identity.keys(), identity.groups)


def parse_roles(table: Mapping[str, Any], where: str = "auditlog.toml") -> RolesConfig:
    """Validate a ``[roles]`` table (``users`` and ``groups`` sub-tables of name -> role).

    Raises
    ------
    ConfigError
        Naming the entry, when a sub-table is unknown or a role is not one of :data:`ROLES`.
    """
    if not isinstance(table, Mapping):
        raise ConfigError(f"{where} [roles] must be a table with users and groups sub-tables")
    unknown = set(table) - {"users", "groups"}
    if unknown:
        raise ConfigError(
            f"{where} [roles]: unknown key(s) {', '.join(sorted(unknown))}; put user names "
            "under [roles.users] and Entra group ids under [roles.groups]"
        )
    parts = {name: _role_map(table[name], f"{where} [roles.{name}]") for name in table}
    return RolesConfig(parts.get("users", {}), parts.get("groups", {}), configured=True)


def _role_map(table: Any, where: str) -> dict[str, Role]:
    if not isinstance(table, Mapping):
        raise ConfigError(f"{where} must be a table of name = role")
    out: dict[str, Role] = {}
    for name, role in table.items():
        if role not in ROLES:
            raise ConfigError(
                f"{where} {name!r} = {role!r}: not a role; use one of {', '.join(ROLES)}"
            )
        out[str(name).strip().lower()] = cast(Role, role)
    return out


def roles_config(section: RolesSettings) -> RolesConfig:
    """The :class:`RolesConfig` of the ``roles`` settings; no entries = nothing configured.

    Raises
    ------
    ConfigError
        Naming the entry whose role is not one of :data:`ROLES`.
    """
    if not (section.users or section.groups):
        return RolesConfig()
    table = {"users": dict(section.users), "groups": dict(section.groups)}
    return parse_roles(table, "auditlog.toml / AUDITLOG_ROLES_*")


def role_for(user: str | Iterable[str], groups: Iterable[str], config: RolesConfig) -> Role | None:
    """The role ``config`` gives ``user`` (or any of its names) in ``groups``, or None."""
    return config.role_for(user, groups)


def allowed(role: Role | None, page_or_action: str) -> bool:
    """Whether ``role`` may use a page or action of :data:`PERMISSIONS`.

    Raises
    ------
    ValueError
        When ``page_or_action`` is not in :data:`PERMISSIONS` (add it there first).
    """
    if page_or_action not in PERMISSIONS:
        raise ValueError(
            f"unknown page or action {page_or_action!r}; add it to auditlog.access.PERMISSIONS "
            f"(known: {', '.join(PERMISSIONS)})"
        )
    return role is not None and role in PERMISSIONS[page_or_action]


def require(role: Role | None, page_or_action: str) -> None:
    """Raise :class:`PermissionDenied` unless ``role`` may use ``page_or_action``."""
    if not allowed(role, page_or_action):
        who = f"the {role} role" if role else "a user with no role"
        may = ", ".join(sorted(PERMISSIONS[page_or_action]))
        raise PermissionDenied(f"{who} may not use {page_or_action!r}; it needs one of: {may}")
