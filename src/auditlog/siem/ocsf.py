"""OCSF 1.3 mapping of audit events: Authentication (3002), Account Change (3001) or API
Activity (6003), chosen from the action; checkpoints and test messages as Base Event (0).

``metadata.uid`` is the event_id, ``metadata.correlation_uid`` the correlation_id,
``metadata.sequence`` the seq and ``metadata.log_name`` the category; the API key that
submitted the event (``source``) is ``actor.app_name`` (its name) and ``actor.app_uid`` (its
id). ``unmapped.auditlog``
holds the full stored record, so the SIEM copy verifies with the rule of docs/integrity.md.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

VERSION = "1.3.0"
AUTH_VERBS = {"login": 1, "logon": 1, "signed_in": 1, "logout": 2, "logoff": 2, "signed_out": 2}
AUTH_NOUNS = {"auth", "authentication", "session", "signin"}
ACCOUNT_NOUNS = {"rbac", "account", "user", "group", "role", "principal", "api_key", "member"}
ACCOUNT_VERBS = {
    "created": 1,
    "enabled": 2,
    "password_changed": 3,
    "password_reset": 4,
    "disabled": 5,
    "deleted": 6,
    "removed": 6,
    "role_assigned": 7,
    "assigned": 7,
    "granted": 7,
    "added": 7,
    "attached": 7,
    "role_removed": 8,
    "role_revoked": 8,
    "unassigned": 8,
    "revoked": 8,
    "detached": 8,
    "locked": 9,
    "mfa_enabled": 10,
    "mfa_disabled": 11,
}
ACCOUNT_NAMES = {
    1: "Create",
    2: "Enable",
    3: "Password Change",
    4: "Password Reset",
    5: "Disable",
    6: "Delete",
    7: "Attach Policy",
    8: "Detach Policy",
    9: "Lock",
    10: "MFA Factor Enable",
    11: "MFA Factor Disable",
    99: "Other",
}
API_VERBS = {
    "created": 1,
    "requested": 1,
    "added": 1,
    "viewed": 2,
    "read": 2,
    "listed": 2,
    "downloaded": 2,
    "exported": 2,
    "searched": 2,
    "updated": 3,
    "changed": 3,
    "decided": 3,
    "executed": 3,
    "approved": 3,
    "rejected": 3,
    "assigned": 3,
    "deleted": 4,
    "removed": 4,
    "purged": 4,
}
API_NAMES = {1: "Create", 2: "Read", 3: "Update", 4: "Delete", 99: "Other"}
AUTH_NAMES = {1: "Logon", 2: "Logoff", 99: "Other"}
SEVERITY = {"success": (1, "Informational"), "failure": (2, "Low"), "denied": (3, "Medium")}
USER_TYPES = {"user": 1, "system": 3}


def classify(action: str) -> tuple[int, str, int, str, int, str]:
    """(class_uid, class_name, category_uid, category_name, activity_id, activity_name)."""
    noun, verb = action.split(".", 1)[0], action.rsplit(".", 1)[-1]
    if verb in AUTH_VERBS or noun in AUTH_NOUNS:
        act = AUTH_VERBS.get(verb, 99)
        return 3002, "Authentication", 3, "Identity & Access Management", act, AUTH_NAMES[act]
    if noun in ACCOUNT_NOUNS:
        act = ACCOUNT_VERBS.get(verb, 99)
        return 3001, "Account Change", 3, "Identity & Access Management", act, ACCOUNT_NAMES[act]
    act = API_VERBS.get(verb, 99)
    return 6003, "API Activity", 6, "Application Activity", act, API_NAMES[act]


def _ms(rfc3339: str) -> int:
    return int(datetime.fromisoformat(rfc3339).timestamp() * 1000)


def _drop_none(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v is not None}


def _first(*values: Any) -> Any:
    # The first value given, even an empty string: a stored "" reads back as "", not as the
    # next field's value (the same choice as the CEF mapping).
    return next((v for v in values if v is not None), None)


def user(actor: dict[str, Any]) -> dict[str, Any]:
    """An OCSF User object from an audit actor."""
    kind = actor.get("type")
    return _drop_none(
        {
            "uid": _first(actor.get("id"), actor.get("entra_object_id"), actor.get("upn")),
            "uid_alt": actor.get("entra_object_id"),
            "name": _first(actor.get("display_name"), actor.get("upn"), actor.get("id")),
            "email_addr": actor.get("upn"),
            "type": kind,
            "type_id": USER_TYPES.get(str(kind), 99),
            "org": {"uid": actor["tenant_id"]} if actor.get("tenant_id") else None,
        }
    )


def _resource(target: dict[str, Any]) -> dict[str, Any]:
    return _drop_none(
        {"type": target.get("type"), "uid": target.get("id"), "name": target.get("name")}
    )


def _metadata(record: dict[str, Any], product_version: str) -> dict[str, Any]:
    return _drop_none(
        {
            "version": VERSION,
            "product": {"name": "auditlog", "vendor_name": "auditlog", "version": product_version},
            "uid": record["event_id"],
            "correlation_uid": record.get("correlation_id"),
            "sequence": record["seq"],
            "log_name": record["category"],
            "event_code": record["action"],
            "logged_time": _ms(record["recorded_at"]),
        }
    )


def _class_fields(cls: int, record: dict[str, Any], src: dict[str, Any]) -> dict[str, Any]:
    target = record["target"]
    if cls == 3002:  # the actor authenticates to the target service
        return {
            "user": user(record["actor"]),
            "src_endpoint": src,
            "service": _drop_none({"uid": target.get("id"), "name": target.get("name")}),
        }
    if cls == 3001:  # the target is the account changed
        return {
            "user": _drop_none(
                {"uid": target.get("id"), "name": target.get("name"), "type": target.get("type")}
            )
        }
    return {
        "api": {"operation": record["action"]},
        "src_endpoint": src,
        "resources": [_resource(target)],
    }


def _actor(record: dict[str, Any]) -> dict[str, Any]:
    """The OCSF actor: the user, and the service that submitted the event (its API key) as
    ``app_name`` / ``app_uid``, "the client application or service that initiated the
    activity", beside the user."""
    out: dict[str, Any] = {"user": user(record["actor"])}
    src = record.get("source")
    if isinstance(src, dict):
        out |= _drop_none({"app_name": src.get("name"), "app_uid": src.get("id")})
    return out


def event(record: dict[str, Any], product_version: str) -> dict[str, Any]:
    """The OCSF event of one audit record (record form, with its hashes)."""
    cls, cls_name, cat, cat_name, act, act_name = classify(record["action"])
    sev_id, sev = SEVERITY.get(record["outcome"], (99, "Other"))
    ok = record["outcome"] == "success"
    src = _drop_none({"ip": record.get("source_ip")})
    out: dict[str, Any] = {
        "class_uid": cls,
        "class_name": cls_name,
        "category_uid": cat,
        "category_name": cat_name,
        "activity_id": act,
        "activity_name": act_name,
        "type_uid": cls * 100 + act,
        "type_name": f"{cls_name}: {act_name}",
        "severity_id": sev_id,
        "severity": sev,
        "status_id": 1 if ok else 2,
        "status": "Success" if ok else "Failure",
        "status_detail": record["outcome"],
        "time": _ms(record["occurred_at"]),
        "time_dt": record["occurred_at"],
        "timezone_offset": record.get("occurred_offset", 0),
        "message": record["action"],
        "metadata": _metadata(record, product_version),
        "actor": _actor(record),
        **_class_fields(cls, record, src),
        "unmapped": {"auditlog": record},
    }
    if record.get("user_agent") is not None:
        out["http_request"] = {"user_agent": record["user_agent"]}
    return out


def other(kind: str, data: dict[str, Any], product_version: str) -> dict[str, Any]:
    """A checkpoint or test message as an OCSF Base Event (class 0), data in ``unmapped``."""
    when = data.get("signed_at") or data.get("sent_at")
    meta = {
        "version": VERSION,
        "event_code": f"auditlog.{kind}",
        "product": {"name": "auditlog", "vendor_name": "auditlog", "version": product_version},
    }
    if kind == "checkpoint":
        meta.update(uid=f"checkpoint:{data['category']}:{data['seq']}", log_name=data["category"])
    return {
        "class_uid": 0,
        "class_name": "Base Event",
        "category_uid": 0,
        "category_name": "Uncategorized",
        "activity_id": 99,
        "activity_name": "Other",
        "type_uid": 99,
        "severity_id": 1,
        "severity": "Informational",
        "status_id": 1,
        "status": "Success",
        "time": _ms(when) if when else 0,
        "message": f"auditlog.{kind}",
        "metadata": meta,
        "unmapped": {f"auditlog_{kind}": data},
    }
