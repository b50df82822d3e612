"""A small Microsoft Graph client: client-credentials token, paging, throttling.

It reads the two collections the directory needs (``/v1.0/users`` and
``/v1.0/servicePrincipals``) and returns Graph's objects as dicts; ``auditlog.identity`` turns
them into principals. Tokens come from msal (``acquire_token_for_client``) unless a
``token_provider`` is injected. Paging follows ``@odata.nextLink`` (only on ``base_url``: the
bearer token is never sent elsewhere); 429/503 are retried as ``Retry-After`` says, a bounded
number of times. Every failure raises :class:`~auditlog.errors.GraphError`; missing settings
raise :class:`~auditlog.errors.ConfigError`.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx

from auditlog.errors import ConfigError, GraphError
from auditlog.settings import GraphSettings, env_name

GRAPH_URL = "https://graph.microsoft.com"
USERS_PATH = "/v1.0/users?$select=id,userPrincipalName,mail,displayName,accountEnabled&$top=999"
SERVICE_PRINCIPALS_PATH = (
    "/v1.0/servicePrincipals?$select=id,appId,displayName,accountEnabled&$top=999"
)


def _as_uuid(text: str) -> str | None:
    try:
        return str(uuid.UUID(text))
    except ValueError:
        return None


class GraphClient:
    """Reads users and service principals from Microsoft Graph with client credentials.

    Parameters
    ----------
    tenant_id
        The directory (tenant) id, a UUID; it is stored with every principal synced.
    client_id, client_secret
        An app registration with the application permissions ``User.Read.All`` and
        ``Application.Read.All`` (admin consented).
    base_url
        Graph's root; another cloud's (``https://graph.microsoft.us``) or a test server.
    authority
        The token authority; default ``https://login.microsoftonline.com/<tenant_id>``.
    http
        The ``httpx.Client`` to send with; default one owned (and closed) by this client.
    token_provider
        Returns a bearer token; replaces msal (tests, or tokens from elsewhere).
    max_retries
        How often a 429/503 answer is retried, waiting as its ``Retry-After`` says
        (or 1, 2, 4... seconds when it has none).
    max_retry_wait
        The longest single wait, in seconds, whatever ``Retry-After`` asks for.
    """

    def __init__(
        self,
        tenant_id: str,
        client_id: str,
        client_secret: str,
        *,
        base_url: str = GRAPH_URL,
        authority: str | None = None,
        http: httpx.Client | None = None,
        token_provider: Callable[[], str] | None = None,
        max_retries: int = 4,
        max_retry_wait: float = 60.0,
    ) -> None:
        if _as_uuid(tenant_id) is None:
            raise ConfigError(
                f"Graph tenant id {tenant_id!r} is not a UUID; give the directory "
                "(tenant) id from the Entra overview page, not a domain name"
            )
        self.tenant_id = _as_uuid(tenant_id) or tenant_id
        self.client_id = client_id
        self._client_secret = client_secret
        self.base_url = base_url.rstrip("/")
        self.authority = authority or f"https://login.microsoftonline.com/{self.tenant_id}"
        self._owns_http = http is None
        self.http = http or httpx.Client(timeout=30.0)
        self._token_provider = token_provider or self._msal_token
        self._msal_app: Any = None
        self.max_retries = max_retries
        self.max_retry_wait = max_retry_wait

    def __enter__(self) -> GraphClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the HTTP client if this object created it."""
        if self._owns_http:
            self.http.close()

    def _msal_token(self) -> str:
        import msal

        try:
            if self._msal_app is None:
                self._msal_app = msal.ConfidentialClientApplication(
                    self.client_id, client_credential=self._client_secret, authority=self.authority
                )
            result = self._msal_app.acquire_token_for_client(scopes=[f"{self.base_url}/.default"])
        except (ValueError, OSError) as exc:
            raise GraphError(f"could not get a token from {self.authority}: {exc}") from exc
        if "access_token" not in result:
            raise GraphError(
                f"Entra ID refused a token for client {self.client_id}: {result.get('error')}: "
                f"{result.get('error_description')}; check AUDITLOG_GRAPH_CLIENT_ID and "
                "AUDITLOG_GRAPH_CLIENT_SECRET"
            )
        return str(result["access_token"])

    def users(self) -> list[dict[str, Any]]:
        """Every user in the tenant as Graph sends it (follows ``@odata.nextLink``)."""
        return list(self.items(USERS_PATH))

    def service_principals(self) -> list[dict[str, Any]]:
        """Every service principal in the tenant as Graph sends it."""
        return list(self.items(SERVICE_PRINCIPALS_PATH))

    def items(self, path: str) -> Iterator[dict[str, Any]]:
        """The objects of a Graph collection, page after page until no ``@odata.nextLink``."""
        url: str | None = self.base_url + path
        seen: set[str] = set()
        while url is not None:
            seen.add(url)
            page = self.get_json(url)
            values = page.get("value")
            if not isinstance(values, list) or not all(isinstance(v, dict) for v in values):
                raise GraphError(
                    f"Graph page {url} has no 'value' list of objects; is {self.base_url} Graph?"
                )
            yield from values
            url = self._next_link(page, seen)

    def _next_link(self, page: dict[str, Any], seen: set[str]) -> str | None:
        link = page.get("@odata.nextLink")
        if link is None:
            return None
        # The bearer token goes with the request: never follow a link to another host.
        if not isinstance(link, str) or not link.startswith(self.base_url + "/"):
            raise GraphError(f"Graph sent a nextLink outside {self.base_url}: {str(link)[:200]!r}")
        if link in seen:
            raise GraphError(f"Graph sent a nextLink that loops back to {link[:200]!r}")
        return link

    def get_json(self, url: str) -> dict[str, Any]:
        """GET ``url`` with the bearer token, retrying 429/503 as Retry-After says."""
        for attempt in range(self.max_retries + 1):
            response = self._send(url)
            if response.status_code not in (429, 503) or attempt == self.max_retries:
                break
            time.sleep(_retry_delay(response, attempt, self.max_retry_wait))
        if response.is_error:
            raise _graph_http_error(response)
        try:
            body = response.json()
        except ValueError:
            raise GraphError(f"Graph answered {url} with something that is not JSON") from None
        if not isinstance(body, dict):
            raise GraphError(f"Graph answered {url} with JSON that is not an object")
        return body

    def _send(self, url: str) -> httpx.Response:
        headers = {
            "Authorization": f"Bearer {self._token_provider()}",
            "Accept": "application/json",
        }
        try:
            return self.http.get(url, headers=headers)
        except httpx.HTTPError as exc:
            raise GraphError(f"could not reach Microsoft Graph at {self.base_url}: {exc}") from exc


def _retry_delay(response: httpx.Response, attempt: int, cap: float) -> float:
    try:
        wait = float(response.headers.get("Retry-After", ""))
    except ValueError:
        wait = 2.0**attempt  # absent, or an HTTP date: back off exponentially
    return min(max(wait, 0.0), cap)


def _graph_http_error(response: httpx.Response) -> GraphError:
    code, message = "", response.text[:300]
    try:
        error = response.json().get("error", {})
        code, message = error.get("code", ""), error.get("message", message)
    except (ValueError, AttributeError):
        pass
    hint = {
        401: "; the token was refused: check the client id, secret and tenant",
        403: "; grant the app User.Read.All and Application.Read.All (application "
        "permissions) with admin consent",
        429: "; Graph kept throttling, try again later",
    }.get(response.status_code, "")
    return GraphError(
        f"Microsoft Graph answered {response.status_code} {code} for {response.request.url.path}: "
        f"{message}{hint}",
        response.status_code,
    )


def graph_client(settings: GraphSettings) -> GraphClient:
    """A GraphClient from the ``graph`` settings (``AUDITLOG_GRAPH_TENANT_ID``, ``_CLIENT_ID``,
    ``_CLIENT_SECRET`` and, optional, ``_BASE_URL``).

    Raises
    ------
    ConfigError
        Naming every required setting that is missing or empty.
    """
    names = ("tenant_id", "client_id", "client_secret")
    missing = [env_name("graph", n) for n in names if not getattr(settings, n)]
    if missing:
        raise ConfigError(f"Graph sync needs {', '.join(missing)}; set them, or sync with --csv")
    return GraphClient(
        str(settings.tenant_id),
        str(settings.client_id),
        str(settings.client_secret),
        base_url=settings.base_url or GRAPH_URL,
    )
