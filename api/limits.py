"""ASGI middlewares that bound each request cheaply: body size and time to first response byte.

Both are plain ASGI (not BaseHTTPMiddleware) so that they see the raw `receive` stream: an
oversized body is refused from its Content-Length before a byte is read, and a chunked body is
cut off as soon as the running count passes the limit.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import ApiError, error_response

log = logging.getLogger("crossmedia.api")


class BodyTooLargeError(ApiError):
    def __init__(self, limit: int) -> None:
        super().__init__(
            413,
            f"Request body exceeds the limit of {limit} bytes (CROSSMEDIA_MAX_BODY_BYTES).",
            code="payload_too_large",
        )


class BodySizeLimitMiddleware:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = _header(scope, b"content-length")
        if length is not None:
            if not length.isdigit():
                await error_response(400, "Invalid Content-Length header.")(scope, receive, send)
                return
            if int(length) > self.max_bytes:
                exc = BodyTooLargeError(self.max_bytes)
                await error_response(413, exc.detail, exc.code, {"Connection": "close"})(
                    scope, receive, send
                )
                return

        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLargeError(self.max_bytes)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLargeError as exc:
            if started:
                raise
            await error_response(413, exc.detail, exc.code, {"Connection": "close"})(
                scope, receive, send
            )


class TimeoutMiddleware:
    """Answer 504 when no response has started within `timeout_s`.

    Work already running in a worker thread cannot be interrupted; it finishes in the background
    and its output is dropped. Once a response has started (e.g. a long media download) the
    request is left alone.
    """

    def __init__(self, app: ASGIApp, timeout_s: float) -> None:
        self.app = app
        self.timeout_s = timeout_s
        self._background: set[asyncio.Task[Any]] = set()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False
        timed_out = False

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if timed_out:
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        task = asyncio.ensure_future(self.app(scope, receive, guarded_send))
        done, _ = await asyncio.wait({task}, timeout=self.timeout_s)
        if done or started:
            await task
            return
        timed_out = True
        task.cancel()
        self._background.add(task)
        task.add_done_callback(self._reap)
        log.warning(
            "request %s %s timed out after %.1f s", scope["method"], scope["path"], self.timeout_s
        )
        await error_response(
            504,
            f"The request took longer than {self.timeout_s:g} s (CROSSMEDIA_REQUEST_TIMEOUT_S).",
            "timeout",
        )(scope, receive, send)

    def _reap(self, task: asyncio.Task[Any]) -> None:
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.debug("timed-out request ended with %r", task.exception())


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return value.decode("latin-1").strip()
    return None
