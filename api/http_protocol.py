"""uvicorn's h11 protocol with a deadline for request headers (uvicorn has none).

A client that opens a connection and then sends its request headers a byte at a time (slowloris),
or nothing at all, would hold a connection and its buffers for ever: uvicorn's keep-alive timer
runs only between requests, and any byte received cancels it. Here a timer starts when a
connection opens and when the first byte of a next request arrives on a kept-alive connection;
if the headers are not complete when it fires, the connection is closed.

    uvicorn.Config(app, http=with_header_timeout(10.0), timeout_keep_alive=5)

`crossmedia serve` does this (api.server.uvicorn_options); uvicorn's own command line accepts
only its built-in protocols, so `uvicorn --factory` runs without the header deadline.
"""

from __future__ import annotations

import asyncio
import logging

from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger("crossmedia.api")


class HeaderTimeoutH11(H11Protocol):
    header_timeout_s = 10.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._header_timer: asyncio.TimerHandle | None = None
        self._arm_header_timer()

    def data_received(self, data: bytes) -> None:
        if self._header_timer is None and (self.cycle is None or self.cycle.response_complete):
            self._arm_header_timer()  # the first byte of a next request on a kept-alive connection
        super().data_received(data)
        if self._header_timer is not None and self.cycle is not self._waiting_after:
            self._disarm_header_timer()  # the headers are in: a new request cycle began

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_header_timer()
        super().connection_lost(exc)

    def _arm_header_timer(self) -> None:
        self._waiting_after = self.cycle
        self._header_timer = self.loop.call_later(self.header_timeout_s, self._header_timeout)

    def _disarm_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _header_timeout(self) -> None:
        self._header_timer = None
        if self.cycle is self._waiting_after and not self.transport.is_closing():
            log.info(
                "closing a connection from %s: no complete request headers in %.1f s",
                self.client,
                self.header_timeout_s,
            )
            self.transport.close()


def with_header_timeout(seconds: float) -> type[HeaderTimeoutH11]:
    """The protocol class with its own deadline, for `uvicorn.Config(http=...)`."""
    return type("HeaderTimeoutH11", (HeaderTimeoutH11,), {"header_timeout_s": seconds})
