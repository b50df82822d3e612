"""Actor identity: the principals directory, CSV import, Graph sync and resolution at ingest.

Runs on the real PostgreSQL of ``conftest.py``; the Graph path runs against a local HTTP server
serving Graph-shaped pages.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from auditlog.errors import ConfigError, GraphError, InvalidFile
from auditlog.identity.directory import Directory, Principal, SyncResult
from auditlog.identity.graph import GraphClient, graph_client
from auditlog.identity.sync import demo_principals, load_csv, sync_from_graph
from auditlog.integrity.keys import Signer
from auditlog.model import Actor
from auditlog.settings import Settings, load_settings
from auditlog.store import AuditLog

TENANT = "0c1a2b3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"
OTHER_TENANT = "11111111-2222-4333-8444-555555555555"
ZOE = "5d2f7a4e-0b1c-4d3e-9f8a-7b6c5d4e3f21"
JOSE = "8a9b0c1d-2e3f-4a5b-8c6d-7e8f9a0b1c2d"
ENGINE_SP = "c3d4e5f6-a7b8-4c9d-8e0f-1a2b3c4d5e6f"
ENGINE_APP = "f0e1d2c3-b4a5-4968-8776-655443322110"

CSV_TEXT = f"""object_id,upn,mail,display_name,type,tenant_id,app_id
{ZOE},zoe.muller@contoso.com,Zoe.Mueller@Contoso.com,Zoë Müller,user,{TENANT},
{JOSE.upper()},jose.nunez@contoso.com,,José Ñúñez,user,{TENANT},
{ENGINE_SP},,,Policy Engine,service,{TENANT},{ENGINE_APP}
"""


def write_csv(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "principals.csv"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def directory(engine: Engine, tmp_path: Path) -> Directory:
    """A directory holding Zoë, José and the Policy Engine service principal."""
    directory = Directory(engine)
    directory.upsert(load_csv(write_csv(tmp_path, CSV_TEXT)))
    return directory


def event(actor: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "category": "user_activity",
        "action": "user.login",
        "outcome": "success",
        "occurred_at": datetime.now(UTC).isoformat(),
        "actor": actor,
        "target": {"type": "app", "id": "dashboard"},
        **extra,
    }


# --- CSV and lookup ----------------------------------------------------------------------


def test_csv_principals_are_found_by_upn_mail_or_object_id_in_any_case(
    directory: Directory,
) -> None:
    assert directory.lookup("ZOE.MULLER@contoso.com").object_id == ZOE  # type: ignore[union-attr]
    assert directory.lookup("zoe.mueller@contoso.com").object_id == ZOE  # type: ignore[union-attr]
    assert directory.lookup(ZOE.upper()).display_name == "Zoë Müller"  # type: ignore[union-attr]
    assert directory.lookup(JOSE).upn == "jose.nunez@contoso.com"  # type: ignore[union-attr]
    assert directory.lookup(ENGINE_APP).object_id == ENGINE_SP  # type: ignore[union-attr]
    assert directory.lookup("nobody@contoso.com") is None


def test_csv_rows_become_principals_with_empty_cells_as_none(tmp_path: Path) -> None:
    zoe, jose, engine_sp = load_csv(write_csv(tmp_path, "\ufeff" + CSV_TEXT))

    assert zoe == Principal(
        object_id=ZOE,
        type="user",
        upn="zoe.muller@contoso.com",
        mail="Zoe.Mueller@Contoso.com",
        display_name="Zoë Müller",
        tenant_id=TENANT,
        source="csv",
    )
    assert jose.object_id == JOSE
    assert jose.mail is None
    assert (engine_sp.type, engine_sp.upn, engine_sp.app_id) == ("service", None, ENGINE_APP)


@pytest.mark.parametrize(
    ("row", "column", "reason"),
    [
        (f"not-a-uuid,a@contoso.com,,A,user,{TENANT}", "object_id", "not a UUID"),
        (f"{uuid.uuid4()},a@contoso.com,,A,robot,{TENANT}", "type", "'user' or 'service'"),
        (f"{uuid.uuid4()},a@contoso.com,,A,user", "(row)", "5 cells, the header has 6"),
        (f"{ZOE},again@contoso.com,,A,user,{TENANT}", "object_id", "already given on line 2"),
    ],
)
def test_csv_bad_row_names_its_line_and_column(
    tmp_path: Path, row: str, column: str, reason: str
) -> None:
    text = f"object_id,upn,mail,display_name,type,tenant_id\n{ZOE},z@contoso.com,,Z,user,\n{row}\n"

    with pytest.raises(InvalidFile) as info:
        load_csv(write_csv(tmp_path, text))

    assert (info.value.line, info.value.column) == (3, column)
    assert reason in str(info.value)
    assert "line 3" in str(info.value)
    assert isinstance(info.value, ValueError)


def test_csv_header_missing_a_column_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidFile, match=r"line 1, column tenant_id: missing from the header"):
        load_csv(write_csv(tmp_path, "object_id,upn,mail,display_name,type\n"))


def test_csv_header_with_unknown_column_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidFile, match=r"column department: unknown or repeated column"):
        load_csv(write_csv(tmp_path, "object_id,upn,mail,display_name,type,tenant_id,department\n"))


def test_upserting_twice_updates_rows_instead_of_duplicating(
    directory: Directory, tmp_path: Path
) -> None:
    renamed = CSV_TEXT.replace("Zoë Müller", "Zoë Müller-Schmidt")

    written = directory.upsert(load_csv(write_csv(tmp_path, renamed)))

    assert written == 3
    assert len(directory.principals()) == 3
    assert directory.lookup(ZOE).display_name == "Zoë Müller-Schmidt"  # type: ignore[union-attr]


def test_reader_role_cannot_change_the_directory(
    directory: Directory, reader_engine: Engine
) -> None:
    assert len(Directory(reader_engine).principals()) == 3
    with pytest.raises(sa.exc.ProgrammingError, match="permission denied"):
        Directory(reader_engine).upsert(demo_principals(2))


# --- resolution --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "given",
    [
        {"upn": "Zoe.Muller@Contoso.com"},
        {"id": "zoe.mueller@contoso.com"},
        {"id": ZOE.upper()},
        {"entra_object_id": ZOE},
    ],
)
def test_resolver_fills_identity_from_upn_mail_or_object_id(
    directory: Directory, given: dict[str, str]
) -> None:
    resolved = directory.resolver()(Actor(type="user", **given))  # type: ignore[arg-type]

    assert resolved.resolved is True
    assert resolved.entra_object_id == ZOE
    assert resolved.display_name == "Zoë Müller"
    assert resolved.tenant_id == TENANT
    assert resolved.upn == given.get("upn", "zoe.muller@contoso.com")
    assert resolved.id == given.get("id")


def test_resolver_keeps_what_the_producer_sent(directory: Directory) -> None:
    actor = Actor(type="user", upn="ZOE.MULLER@contoso.com", display_name="Zoe (laptop)")

    resolved = directory.resolver()(actor)

    assert resolved.resolved is True
    assert (resolved.upn, resolved.display_name) == ("ZOE.MULLER@contoso.com", "Zoe (laptop)")
    assert resolved.entra_object_id == ZOE


def test_service_principal_resolves_by_app_id_and_keeps_the_given_type(
    directory: Directory,
) -> None:
    resolved = directory.resolver()(Actor(type="automation", id=ENGINE_APP))

    assert resolved.resolved is True
    assert resolved.type == "automation"
    assert (resolved.entra_object_id, resolved.display_name) == (ENGINE_SP, "Policy Engine")
    assert resolved.upn is None


def test_unknown_actor_is_kept_as_given_and_marked_unresolved(directory: Directory) -> None:
    actor = Actor(type="user", upn="mallory@fabrikam.com", display_name="Mallory")

    resolved = directory.resolver()(actor)

    assert resolved == actor.model_copy(update={"resolved": False})


@pytest.mark.parametrize(
    "given",
    [
        {"upn": "zoe.muller@contoso.com", "entra_object_id": JOSE},
        {"upn": "zoe.muller@contoso.com", "entra_object_id": str(uuid.UUID(int=1))},
        {"upn": "zoe.muller@contoso.com", "id": "jose.nunez@contoso.com"},
        {"upn": "zoe.muller@contoso.com", "tenant_id": OTHER_TENANT},
    ],
)
def test_actor_contradicting_the_directory_stays_unresolved(
    directory: Directory, given: dict[str, str]
) -> None:
    resolved = directory.resolver()(Actor(type="user", **given))  # type: ignore[arg-type]

    assert resolved.resolved is False
    assert resolved.display_name is None


def test_resolver_reads_the_directory_once_for_a_whole_batch(
    directory: Directory, engine: Engine
) -> None:
    resolve = directory.resolver(max_age_seconds=None)
    actors = [Actor(type="user", upn="zoe.muller@contoso.com"), Actor(type="user", id=JOSE)]
    statements: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_rest: Any) -> None:
        statements.append(statement)

    sa.event.listen(engine, "before_cursor_execute", count)
    try:
        results = [resolve(a) for a in actors * 10_000]
    finally:
        sa.event.remove(engine, "before_cursor_execute", count)

    assert all(r.resolved for r in results)
    assert len(statements) == 1


def test_refresh_picks_up_principals_added_after_the_first_load(directory: Directory) -> None:
    resolve = directory.resolver(max_age_seconds=None)
    newcomer = Principal(
        object_id=str(uuid.uuid4()),
        type="user",
        upn="new@contoso.com",
        display_name="New Hire",
        tenant_id=TENANT,
        source="csv",
    )
    assert resolve(Actor(type="user", upn="new@contoso.com")).resolved is False

    directory.upsert([newcomer])
    assert resolve.refresh() == 4

    assert resolve(Actor(type="user", upn="new@contoso.com")).display_name == "New Hire"


def test_audit_log_stores_the_resolved_actor(
    directory: Directory, engine: Engine, settings: Settings, signer: Signer
) -> None:
    log = AuditLog(engine, settings, signer=signer, resolve=directory.resolver())
    known = event({"type": "user", "upn": "ZOE.MULLER@contoso.com"}, event_id=str(uuid.uuid4()))
    unknown = event({"type": "user", "id": "someone@fabrikam.com"})

    log.record_many([known, unknown])
    assert log.record(known).duplicate  # a resend still matches what was stored

    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT actor FROM events ORDER BY seq")).scalars().all()
    assert rows[0] == {
        "type": "user",
        "id": None,
        "upn": "ZOE.MULLER@contoso.com",
        "display_name": "Zoë Müller",
        "entra_object_id": ZOE,
        "tenant_id": TENANT,
        "resolved": True,
    }
    assert rows[1]["resolved"] is False
    assert rows[1]["entra_object_id"] is None


# --- Microsoft Graph ---------------------------------------------------------------------


@dataclass
class FakeGraph:
    """Graph-shaped answers by (path, $skiptoken); the last answer of a list repeats."""

    url: str = ""
    routes: dict[tuple[str, str | None], list[tuple[int, dict[str, str], Any]]] = field(
        default_factory=dict
    )
    seen: list[tuple[str, str | None]] = field(default_factory=list)

    def page(self, path: str, token: str | None, *answers: tuple[int, dict[str, str], Any]) -> None:
        self.routes[(path, token)] = list(answers)

    def answer(self, path: str, auth: str | None) -> tuple[int, dict[str, str], Any]:
        split = urlsplit(path)
        token = parse_qs(split.query).get("$skiptoken", [None])[0]
        self.seen.append((f"{split.path}#{token}", auth))
        answers = self.routes.get((split.path, token))
        if not answers:
            return 404, {}, {"error": {"code": "Request_ResourceNotFound", "message": path}}
        return answers.pop(0) if len(answers) > 1 else answers[0]


def _handler(fake: FakeGraph) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            status, headers, body = fake.answer(self.path, self.headers.get("Authorization"))
            data = json.dumps(body).encode()
            self.send_response(status)
            for name, value in {**headers, "Content-Type": "application/json"}.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    return Handler


@pytest.fixture
def fake_graph() -> Iterator[FakeGraph]:
    fake = FakeGraph()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(fake))
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield fake
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.fixture
def graph(fake_graph: FakeGraph) -> Iterator[GraphClient]:
    client = GraphClient(
        TENANT,
        "client-id",
        "unused-secret",
        base_url=fake_graph.url,
        token_provider=lambda: "test-token",
        max_retries=2,
    )
    yield client
    client.close()


def user(oid: str, upn: str, name: str, mail: str | None = None) -> dict[str, Any]:
    return {
        "id": oid,
        "userPrincipalName": upn,
        "mail": mail,
        "displayName": name,
        "accountEnabled": True,
    }


def serve_tenant(fake: FakeGraph, users: list[dict[str, Any]], *, throttle: bool = False) -> None:
    """Users on two pages (the second throttled once when asked), one service principal."""
    first = {"value": users[:2], "@odata.nextLink": f"{fake.url}/v1.0/users?$skiptoken=p2"}
    fake.page("/v1.0/users", None, (200, {}, first))
    throttled = (429, {"Retry-After": "0"}, {"error": {"code": "TooManyRequests"}})
    second: tuple[int, dict[str, str], dict[str, Any]] = (200, {}, {"value": users[2:]})
    fake.page("/v1.0/users", "p2", *([throttled, second] if throttle else [second]))
    sp = {
        "id": ENGINE_SP,
        "appId": ENGINE_APP,
        "displayName": "Policy Engine",
        "accountEnabled": True,
    }
    fake.page("/v1.0/servicePrincipals", None, (200, {}, {"value": [sp]}))


USERS = [
    user(ZOE, "zoe.muller@contoso.com", "Zoë Müller", "zoe.muller@contoso.com"),
    user(JOSE, "jose.nunez@contoso.com", "José Ñúñez"),
    user("9f8e7d6c-5b4a-4938-8271-605f4e3d2c1b", "kwame.mensah@contoso.com", "Kwame Mensah"),
]


def test_graph_sync_follows_next_link_retries_throttling_and_sends_the_token(
    engine: Engine, fake_graph: FakeGraph, graph: GraphClient
) -> None:
    serve_tenant(fake_graph, USERS, throttle=True)
    directory = Directory(engine)

    result = sync_from_graph(directory, graph)

    assert result == SyncResult(users=3, service_principals=1, removed=0)
    assert [path for path, _ in fake_graph.seen] == [
        "/v1.0/users#None",
        "/v1.0/users#p2",
        "/v1.0/users#p2",
        "/v1.0/servicePrincipals#None",
    ]
    assert {auth for _, auth in fake_graph.seen} == {"Bearer test-token"}
    kwame = directory.lookup("KWAME.MENSAH@contoso.com")
    assert kwame is not None
    assert (kwame.source, kwame.tenant_id, kwame.account_enabled) == ("graph", TENANT, True)
    assert directory.lookup(ENGINE_APP).type == "service"  # type: ignore[union-attr]


def test_graph_sync_removes_principals_deleted_in_entra_but_keeps_csv_ones(
    engine: Engine, fake_graph: FakeGraph, graph: GraphClient
) -> None:
    directory = Directory(engine)
    csv_only = Principal(
        object_id=str(uuid.uuid4()),
        type="user",
        upn="contractor@contoso.com",
        tenant_id=TENANT,
        source="csv",
    )
    directory.upsert([csv_only])
    serve_tenant(fake_graph, USERS)
    sync_from_graph(directory, graph)

    serve_tenant(fake_graph, USERS[:2])
    result = sync_from_graph(directory, graph)

    assert result == SyncResult(users=2, service_principals=1, removed=1)
    assert directory.lookup("kwame.mensah@contoso.com") is None
    assert directory.lookup("contractor@contoso.com") == directory.lookup(csv_only.object_id)
    assert len(directory.principals()) == 4


def test_graph_permission_error_names_the_status_and_the_fix(
    engine: Engine, fake_graph: FakeGraph, graph: GraphClient
) -> None:
    denied = {"error": {"code": "Authorization_RequestDenied", "message": "Insufficient"}}
    fake_graph.page("/v1.0/users", None, (403, {}, denied))

    with pytest.raises(GraphError, match=r"403 Authorization_Request.*User\.Read") as info:
        sync_from_graph(Directory(engine), graph)

    assert info.value.http_status == 403


def test_graph_throttling_gives_up_after_bounded_retries(
    fake_graph: FakeGraph, graph: GraphClient
) -> None:
    fake_graph.page("/v1.0/users", None, (429, {"Retry-After": "0"}, {}))

    with pytest.raises(GraphError, match="429"):
        graph.users()

    assert len(fake_graph.seen) == 3  # the first try and max_retries=2 retries


def test_graph_next_link_to_another_host_is_refused(
    fake_graph: FakeGraph, graph: GraphClient
) -> None:
    page = {"value": [], "@odata.nextLink": "https://evil.example/v1.0/users?$skiptoken=2"}
    fake_graph.page("/v1.0/users", None, (200, {}, page))

    with pytest.raises(GraphError, match="nextLink outside"):
        graph.users()

    assert len(fake_graph.seen) == 1


def test_graph_object_with_a_bad_id_fails_the_sync_and_changes_nothing(
    directory: Directory, fake_graph: FakeGraph, graph: GraphClient
) -> None:
    serve_tenant(fake_graph, [*USERS[:2], user("42", "odd@contoso.com", "Odd")])

    with pytest.raises(GraphError, match=r"user \(42\) with a bad object_id"):
        sync_from_graph(directory, graph)

    assert len(directory.principals()) == 3


def test_graph_client_names_every_missing_setting_by_its_variable() -> None:
    with pytest.raises(ConfigError, match="AUDITLOG_GRAPH_CLIENT_ID, AUDITLOG_GRAPH_CLIENT_SECRET"):
        graph_client(load_settings({"AUDITLOG_GRAPH_TENANT_ID": TENANT}).graph)


def test_graph_client_takes_tenant_client_and_base_url_from_the_settings() -> None:
    env = {"AUDITLOG_GRAPH_TENANT_ID": TENANT.upper(), "AUDITLOG_GRAPH_CLIENT_ID": "app",
           "AUDITLOG_GRAPH_CLIENT_SECRET": "s3cret",
           "AUDITLOG_GRAPH_BASE_URL": "https://graph.microsoft.us/"}  # fmt: skip

    with graph_client(load_settings(env).graph) as client:
        assert (client.tenant_id, client.client_id) == (TENANT, "app")
        assert client.base_url == "https://graph.microsoft.us"
        assert client.authority == f"https://login.microsoftonline.com/{TENANT}"


def test_graph_token_failure_is_a_graph_error(fake_graph: FakeGraph) -> None:
    # msal (no token_provider) refuses a non-https authority before any network access.
    with (
        GraphClient(
            TENANT, "app", "secret", base_url=fake_graph.url, authority=f"{fake_graph.url}/{TENANT}"
        ) as client,
        pytest.raises(GraphError, match=r"could not get a token from http://127\.0\.0\.1"),
    ):
        client.users()

    assert fake_graph.seen == []


def test_graph_client_refuses_a_tenant_domain_instead_of_its_id() -> None:
    with pytest.raises(ConfigError, match="not a UUID"):
        GraphClient("contoso.onmicrosoft.com", "app", "secret")


# --- demo directory ----------------------------------------------------------------------


def test_demo_principals_are_deterministic_with_non_ascii_names_and_ascii_upns() -> None:
    people = demo_principals(30)

    assert people == demo_principals(30)
    users = [p for p in people if p.type == "user"]
    assert len(users) == 30
    assert [u.display_name for u in users[:2]] == ["Zoë Müller", "José Ñúñez"]
    assert users[1].upn == "jose.nunez@contoso.com"
    assert all(u.upn and u.upn.isascii() and u.upn.endswith("@contoso.com") for u in users)
    assert len({u.upn for u in users}) == 30
    assert {"Policy Engine", "Remediation Bot"} <= {p.display_name for p in people}


def test_demo_principals_resolve_when_loaded(engine: Engine) -> None:
    directory = Directory(engine)
    directory.upsert(demo_principals())

    resolved = directory.resolver()(Actor(type="user", upn="ZOE.MULLER@contoso.com"))

    assert resolved.resolved is True
    assert resolved.display_name == "Zoë Müller"
