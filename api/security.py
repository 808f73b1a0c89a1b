"""API keys (Authorization: Bearer <key>) with read/write scopes, and per-caller rate limits.

Keys are compared by SHA-256 digest with `hmac.compare_digest`, so lookups do not leak timing
about key prefixes. With no keys configured the server is open (settings allow that only on a
loopback address) and callers are told apart by client address for rate limiting.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import threading
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.errors import ApiError
from api.settings import Scope, Settings

bearer_scheme = HTTPBearer(
    auto_error=False,
    description="API key from CROSSMEDIA_API_KEYS; scopes `read` (search, get) and `write` "
    "(upload, delete). Not needed when the server runs without keys on loopback.",
)


@dataclass(frozen=True)
class Principal:
    """Who is calling: a key's id (a digest prefix, never the key) or an anonymous address."""

    id: str
    scopes: frozenset[Scope]


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


class KeyRing:
    def __init__(self, keys: dict[str, frozenset[Scope]]) -> None:
        self._keys = [(_digest(k), frozenset(s)) for k, s in keys.items()]

    @property
    def enabled(self) -> bool:
        return bool(self._keys)

    def lookup(self, key: str) -> Principal | None:
        digest = _digest(key)
        found: Principal | None = None
        for known, scopes in self._keys:  # no early exit: constant work per lookup
            if hmac.compare_digest(known, digest):
                found = Principal(id="key:" + known.hex()[:12], scopes=scopes)
        return found


class TokenBucketLimiter:
    """In-memory token buckets per caller: `rate` tokens per second, up to `burst`."""

    def __init__(self, per_minute: float, burst: int, clock: Callable[[], float] = time.monotonic):
        self.rate = per_minute / 60.0
        self.burst = float(burst)
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    def acquire(self, caller: str) -> float:
        """Take one token; 0.0 when allowed, else the seconds until a token is available."""
        if not self.enabled:
            return 0.0
        now = self._clock()
        with self._lock:
            tokens, last = self._buckets.get(caller, (self.burst, now))
            tokens = min(self.burst, tokens + (now - last) * self.rate)
            if tokens >= 1.0:
                self._buckets[caller] = (tokens - 1.0, now)
                return 0.0
            self._buckets[caller] = (tokens, now)
            if len(self._buckets) > 100_000:  # bound memory under address churn
                self._buckets = {caller: (tokens, now)}
            return (1.0 - tokens) / self.rate


def _anonymous(request: Request) -> Principal:
    host = request.client.host if request.client else "unknown"
    return Principal(id="addr:" + host, scopes=frozenset(("read", "write")))


def authenticate(request: Request, credentials: HTTPAuthorizationCredentials | None) -> Principal:
    keyring: KeyRing = request.app.state.keyring
    if not keyring.enabled:
        return _anonymous(request)
    if credentials is None or not credentials.credentials:
        raise ApiError(
            401,
            "Missing API key. Send it as 'Authorization: Bearer <key>'.",
            headers={"WWW-Authenticate": "Bearer"},
        )
    principal = keyring.lookup(credentials.credentials)
    if principal is None:
        raise ApiError(401, "Unknown API key.", headers={"WWW-Authenticate": "Bearer"})
    return principal


def require_scope(
    scope: Scope,
) -> Callable[..., Coroutine[Any, Any, Principal]]:
    """Dependency factory: authenticate, check `scope`, then charge the caller's rate limit."""

    async def dependency(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
    ) -> Principal:
        principal = authenticate(request, credentials)
        if scope not in principal.scopes:
            raise ApiError(
                403, f"This API key lacks the '{scope}' scope.", code="insufficient_scope"
            )
        limiter: TokenBucketLimiter = request.app.state.rate_limiter
        wait = limiter.acquire(principal.id)
        if wait > 0:
            raise ApiError(
                429,
                f"Rate limit exceeded; retry in {math.ceil(wait)} s.",
                headers={"Retry-After": str(math.ceil(wait))},
            )
        return principal

    dependency.__name__ = f"require_{scope}"
    return dependency


def build_security_state(settings: Settings) -> tuple[KeyRing, TokenBucketLimiter]:
    return KeyRing(settings.api_keys), TokenBucketLimiter(
        settings.rate_limit_per_minute, settings.rate_limit_burst
    )
