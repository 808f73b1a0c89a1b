"""Issue 11 finding 10: slow clients over a real socket. A client that sends its request headers a
byte at a time (slowloris), or nothing, is disconnected after the header timeout; normal and
kept-alive requests still work."""

from __future__ import annotations

import select
import socket
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from api_support import LiveServer, needs_coco, shared_engine, test_settings

from api.main import create_app
from api.server import uvicorn_options

pytestmark = needs_coco

HEADER_TIMEOUT_S = 1.0
REQUEST = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: slow-client\r\n\r\n"


def server_options(**overrides: Any) -> dict[str, Any]:
    settings = test_settings("unused", header_timeout_s=HEADER_TIMEOUT_S, **overrides)
    options = uvicorn_options(settings)
    return {k: options[k] for k in ("http", "timeout_keep_alive")}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    engine, _ = shared_engine(tmp_path_factory)
    app = create_app(test_settings(engine.catalogue.data_dir), runtime=engine)
    with LiveServer(app, **server_options(keep_alive_s=3.0)) as s:
        yield s


def _closed(sock: socket.socket) -> bool:
    readable, _, _ = select.select([sock], [], [], 0)
    if not readable:
        return False
    try:
        return sock.recv(1024) == b""
    except ConnectionResetError:
        return True


def slowloris(port: int, interval_s: float, give_up_s: float) -> tuple[float | None, int]:
    """Send REQUEST's headers one byte per `interval_s`; (seconds until the server closed the
    connection or None, bytes sent)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        t0 = time.monotonic()
        for sent, byte in enumerate(REQUEST[:-2]):  # never completes the headers
            if _closed(sock):
                return time.monotonic() - t0, sent
            if time.monotonic() - t0 > give_up_s:
                return None, sent
            try:
                sock.sendall(bytes([byte]))
            except (BrokenPipeError, ConnectionResetError):
                return time.monotonic() - t0, sent
            time.sleep(interval_s)
        return None, len(REQUEST) - 2


def test_slow_headers_are_disconnected_after_the_timeout(server: LiveServer) -> None:
    closed_after, sent = slowloris(server.port, interval_s=0.25, give_up_s=6 * HEADER_TIMEOUT_S)
    assert closed_after is not None, f"still connected after {sent} bytes"
    assert HEADER_TIMEOUT_S * 0.9 <= closed_after <= HEADER_TIMEOUT_S + 2.0
    assert httpx.get(server.url + "/healthz").status_code == 200


def test_an_idle_connection_is_closed_too(server: LiveServer) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.settimeout(HEADER_TIMEOUT_S + 3)
        assert sock.recv(1024) == b""  # closed by the server, not by our timeout


def test_kept_alive_connection_serves_requests_then_times_out_slow_headers(
    server: LiveServer,
) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        for _ in range(2):  # two complete requests on one connection, a pause between them
            sock.sendall(REQUEST)
            reply = b""
            while not reply.endswith(b'{"status":"ok"}'):
                chunk = sock.recv(4096)
                assert chunk, reply
                reply += chunk
            assert reply.startswith(b"HTTP/1.1 200")
            time.sleep(HEADER_TIMEOUT_S * 1.5)  # idle but within keep-alive: still open
        t0 = time.monotonic()
        sock.sendall(REQUEST[:5])  # a third request that never finishes its headers
        sock.settimeout(HEADER_TIMEOUT_S + 3)
        assert sock.recv(1024) == b""
        assert time.monotonic() - t0 <= HEADER_TIMEOUT_S + 2.0
