"""Prometheus text exposition written by hand: request counts, a latency histogram, item counts."""

from __future__ import annotations

import threading
import time
from collections import defaultdict

from starlette.types import ASGIApp, Message, Receive, Scope, Send

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Metrics:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: dict[tuple[str, str, str], int] = defaultdict(int)
        self.buckets: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0] * len(BUCKETS))
        self.sums: dict[tuple[str, str], float] = defaultdict(float)
        self.counts: dict[tuple[str, str], int] = defaultdict(int)

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        with self._lock:
            self.requests[(method, route, str(status))] += 1
            key = (method, route)
            row = self.buckets[key]
            for i, bound in enumerate(BUCKETS):
                if seconds <= bound:
                    row[i] += 1
            self.sums[key] += seconds
            self.counts[key] += 1

    def render(self, item_counts: dict[str, int] | None = None) -> str:
        lines = [
            "# HELP crossmedia_http_requests_total HTTP requests by method, route and status.",
            "# TYPE crossmedia_http_requests_total counter",
        ]
        with self._lock:
            for (method, route, status), n in sorted(self.requests.items()):
                labels = _labels(method=method, route=route, status=status)
                lines.append(f"crossmedia_http_requests_total{{{labels}}} {n}")
            lines += [
                "# HELP crossmedia_http_request_duration_seconds Time to the full response.",
                "# TYPE crossmedia_http_request_duration_seconds histogram",
            ]
            for (method, route), row in sorted(self.buckets.items()):
                base = _labels(method=method, route=route)
                for bound, n in zip(BUCKETS, row, strict=True):
                    lines.append(
                        f'crossmedia_http_request_duration_seconds_bucket{{{base},le="{bound:g}"}} {n}'
                    )
                total = self.counts[(method, route)]
                lines.append(
                    f'crossmedia_http_request_duration_seconds_bucket{{{base},le="+Inf"}} {total}'
                )
                lines.append(
                    f"crossmedia_http_request_duration_seconds_sum{{{base}}} "
                    f"{self.sums[(method, route)]:.6f}"
                )
                lines.append(f"crossmedia_http_request_duration_seconds_count{{{base}}} {total}")
        if item_counts is not None:
            lines += [
                "# HELP crossmedia_items Items in the catalogue by modality.",
                "# TYPE crossmedia_items gauge",
            ]
            for modality, n in sorted(item_counts.items()):
                lines.append(f"crossmedia_items{{{_labels(modality=modality)}}} {n}")
        return "\n".join(lines) + "\n"


def _labels(**labels: str) -> str:
    def esc(v: str) -> str:
        return v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")

    return ",".join(f'{k}="{esc(v)}"' for k, v in labels.items())


class MetricsMiddleware:
    """Counts every HTTP request under its route template (never the raw path: ids would explode
    the label set)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500
        t0 = time.perf_counter()

        async def recording_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, recording_send)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or (
                "/static" if scope.get("path", "").startswith("/static/") else "<unmatched>"
            )
            self.metrics.observe(scope["method"], template, status, time.perf_counter() - t0)
