"""`push` against a small HTTP server that answers like Grafana's API does (not a mock of Kafka,
PostgreSQL or Prometheus): idempotent uploads, and a clear error for each way it can go wrong."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from runstream.deploy import grafana
from runstream.deploy.grafana import GrafanaPushError, GrafanaTarget

READER = grafana.PostgresSource("127.0.0.1:15432", "runstream", "runstream_reader", "secret")


@dataclass
class FakeGrafana:
    """Grafana's state, and an answer forced for every request (status, body)."""

    datasources: dict[str, dict[str, Any]] = field(default_factory=dict)
    dashboards: dict[str, dict[str, Any]] = field(default_factory=dict)
    folders: set[str] = field(default_factory=set)
    forced: tuple[int, dict[str, Any]] | None = None
    forced_on: str = ""
    tokens_seen: list[str] = field(default_factory=list)

    def answer(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        if self.forced and path.startswith(self.forced_on):
            return self.forced
        for prefix, handle in (
            ("/api/folders", self.folder),
            ("/api/datasources", self.datasource),
            ("/api/dashboards/db", self.dashboard),
        ):
            if path.startswith(prefix):
                return handle(method, path.rsplit("/", 1)[1], body)
        return 404, {"message": f"no route {method} {path}"}

    def folder(self, method: str, uid: str, body: Any) -> tuple[int, Any]:
        if method == "POST":
            self.folders.add(body["uid"])
            return 200, {"uid": body["uid"]}
        return (200, {"uid": uid}) if uid in self.folders else (404, {"message": "not found"})

    def datasource(self, method: str, uid: str, body: Any) -> tuple[int, Any]:
        if method in ("POST", "PUT"):
            self.datasources[body["uid"]] = body
            return 200, {"message": "Datasource saved"}
        found = self.datasources.get(uid)
        return (200, found) if found else (404, {"message": "Data source not found"})

    def dashboard(self, method: str, _: str, body: Any) -> tuple[int, Any]:
        assert method == "POST"
        assert body["overwrite"] is True
        self.dashboards[body["dashboard"]["uid"]] = body
        return 200, {"status": "success", "uid": body["dashboard"]["uid"], "version": 1}


@pytest.fixture
def fake() -> Iterator[tuple[FakeGrafana, str]]:
    state = FakeGrafana()

    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length)) if length else None
            state.tokens_seen.append(self.headers.get("Authorization", ""))
            status, answer = state.answer(self.command, self.path, body)
            payload = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = do_PUT = _serve

        def log_message(self, format: str, *args: object) -> None:
            """Quiet."""

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state, f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()
    thread.join(5)


def push(url: str, **credentials: str) -> grafana.PushReport:
    target = GrafanaTarget(url=url, timeout=5, **(credentials or {"token": "t0ken"}))
    boards = list(grafana.dashboard_models().values())
    return grafana.push(target, grafana.datasources("http://127.0.0.1:19090", READER), boards)


def test_push_creates_then_updates_in_place(fake: tuple[FakeGrafana, str]) -> None:
    state, url = fake
    first = push(url)
    assert first.datasources == ["runstream-prometheus (created)", "runstream-postgres (created)"]
    second = push(url, user="admin", password="admin")
    assert second.datasources == ["runstream-prometheus (updated)", "runstream-postgres (updated)"]
    assert set(state.datasources) == {"runstream-prometheus", "runstream-postgres"}
    assert set(state.dashboards) == {
        "runstream-training-run",
        "runstream-experiment",
        "runstream-pipeline",
    }
    assert all(body["folderUid"] == "runstream" for body in state.dashboards.values())
    assert state.datasources["runstream-postgres"]["secureJsonData"] == {"password": "secret"}
    assert "Bearer t0ken" in state.tokens_seen
    assert any(seen.startswith("Basic ") for seen in state.tokens_seen)


def test_unreachable_grafana_says_so() -> None:
    with socket.socket() as sock:  # a port the OS just gave out, and nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(GrafanaPushError, match="cannot reach Grafana") as caught:
        push(f"http://127.0.0.1:{port}")
    assert caught.value.kind == "unreachable"


@pytest.mark.parametrize(
    ("status", "body", "where", "kind", "words"),
    [
        (
            401,
            {"message": "invalid API key"},
            "/api/folders",
            "unauthorized",
            "refused the credentials",
        ),
        (403, {"message": "Permissions needed"}, "/api/datasources", "forbidden", "Admin role"),
        (
            412,
            {
                "message": "The dashboard has been changed by someone else",
                "status": "version-mismatch",
            },
            "/api/dashboards",
            "conflict",
            "changed by someone else",
        ),
    ],
)
def test_grafana_refusals_become_clear_errors(
    fake: tuple[FakeGrafana, str],
    status: int,
    body: dict[str, Any],
    where: str,
    kind: str,
    words: str,
) -> None:
    state, url = fake
    state.forced, state.forced_on = (status, body), where
    with pytest.raises(GrafanaPushError, match=words) as caught:
        push(url)
    assert caught.value.kind == kind


def test_bad_credentials_options_fail_early() -> None:
    with pytest.raises(ValueError, match="not both"):
        GrafanaTarget("http://127.0.0.1:3000", token="t", user="u", password="p")
    with pytest.raises(ValueError, match="give both"):
        GrafanaTarget("http://127.0.0.1:3000", user="u")
