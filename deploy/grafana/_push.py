"""`push`: upload the datasources and dashboards to a running Grafana through grafana-client.

Idempotent: datasources are created or updated in place (found by uid), dashboards are saved with
`overwrite`. Grafana's answers become `GrafanaPushError`s that say what to do.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import niquests
from grafana_client.api import GrafanaApi
from grafana_client.client import GrafanaClientError, GrafanaException, GrafanaTimeoutError

from runstream._errors import ConfigError, RunstreamError

FOLDER_UID = "runstream"
FOLDER_TITLE = "runstream"


class GrafanaPushError(RunstreamError):
    """Grafana could not be reached or refused an upload. `kind` says which."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True, slots=True)
class GrafanaTarget:
    """A Grafana and how to sign in: an API token, or a user and password."""

    url: str
    token: str | None = field(default=None, repr=False)
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    timeout: float = 10.0

    def __post_init__(self) -> None:
        if not self.url.startswith(("http://", "https://")):
            raise ConfigError(f"url={self.url!r}: expected http(s)://host:port")
        if self.token and (self.user or self.password):
            raise ConfigError("token and user/password: give one way to sign in, not both")
        if bool(self.user) != bool(self.password):
            raise ConfigError("user and password: give both, or use a token")

    def client(self) -> Any:
        """A grafana-client `GrafanaApi` for this target."""
        credential: str | tuple[str, str] | None = self.token
        if self.user and self.password:
            credential = (self.user, self.password)
        return GrafanaApi.from_url(self.url, credential=credential, timeout=self.timeout)


@dataclass(frozen=True, slots=True)
class PushReport:
    """What `push` did."""

    datasources: list[str]
    dashboards: list[str]


def push(
    target: GrafanaTarget,
    datasources: Sequence[dict[str, Any]],
    dashboards: Sequence[dict[str, Any]],
) -> PushReport:
    """Create or update every datasource, then save every dashboard into the runstream folder."""
    api = target.client()
    try:
        _ensure_folder(api)
        pushed = [_put_datasource(api, source) for source in datasources]
        saved = [_put_dashboard(api, board) for board in dashboards]
    except (niquests.RequestException, GrafanaException) as exc:
        raise _explain(exc, target.url) from exc
    return PushReport(datasources=pushed, dashboards=saved)


def _ensure_folder(api: Any) -> None:
    try:
        api.folder.get_folder(FOLDER_UID)
    except GrafanaClientError as exc:
        if exc.status_code != 404:
            raise
        api.folder.create_folder(FOLDER_TITLE, uid=FOLDER_UID)


def _put_datasource(api: Any, source: dict[str, Any]) -> str:
    uid = source["uid"]
    try:
        api.datasource.get_datasource_by_uid(uid)
    except GrafanaClientError as exc:
        if exc.status_code != 404:
            raise
        api.datasource.create_datasource(source)
        return f"{source['name']} (created)"
    api.datasource.update_datasource_by_uid(uid, source)
    return f"{source['name']} (updated)"


def _put_dashboard(api: Any, board: dict[str, Any]) -> str:
    body = {
        "dashboard": {**board, "id": None},
        "folderUid": FOLDER_UID,
        "overwrite": True,
        "message": "runstream grafana push",
    }
    api.dashboard.update_dashboard(body)
    return str(board.get("title", board.get("uid")))


def _explain(exc: Exception, url: str) -> GrafanaPushError:
    """Turn a transport error or a Grafana answer into advice."""
    if isinstance(exc, niquests.RequestException | GrafanaTimeoutError) or (
        isinstance(exc, GrafanaException) and exc.status_code == 0
    ):
        return GrafanaPushError("unreachable", f"cannot reach Grafana at {url}: {exc}")
    status = exc.status_code if isinstance(exc, GrafanaException) else 0
    detail = _message(exc)
    if status == 401:
        return GrafanaPushError(
            "unauthorized",
            f"Grafana at {url} refused the credentials (401): check the token or user/password",
        )
    if status == 403:
        return GrafanaPushError(
            "forbidden",
            f"Grafana at {url} answered 403 ({detail}): the token or user needs the Admin role "
            "(datasources) and Editor rights on the runstream folder",
        )
    if status == 412:
        return GrafanaPushError(
            "conflict",
            f"Grafana at {url} answered 412 ({detail}): another dashboard with the same title or "
            "uid exists elsewhere, or it was changed since; delete or rename it, then push again",
        )
    return GrafanaPushError("rejected", f"Grafana at {url} answered {status}: {detail}")


def _message(exc: Exception) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("message") or response.get("status") or response)
    return str(response or exc)
