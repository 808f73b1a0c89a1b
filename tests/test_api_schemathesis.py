"""Property-based run of the OpenAPI schema with schemathesis (Python API, in-process ASGI).

At least 1,000 generated requests in total (`CROSSMEDIA_FUZZ_EXAMPLES` per operation, default
150); every response must be non-5xx and conform to the documented status codes, content types
and schemas. The catalogue is a private copy (generated DELETEs may remove its items); it is built
only when these tests run, not at collection. With `CROSSMEDIA_FUZZ_RESULTS=PATH` the counts
(cases, per operation, 2xx, 5xx) are written there as JSON, e.g.
benchmarks/results/schemathesis.json; they are printed either way.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from api_support import build_engine, needs_coco, test_settings
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from api.main import create_app

pytestmark = [needs_coco, pytest.mark.slow]

EXAMPLES = int(os.environ.get("CROSSMEDIA_FUZZ_EXAMPLES", "150"))
MIN_CASES = 1000
_STATE: dict[str, Any] = {"calls": 0, "per_op": {}, "ok": {}, "5xx": [], "t0": None}

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


class _AppUnderTest:
    """ASGI app that forwards to the real app, which the module fixture builds only when these
    tests run (collection must not build a catalogue or load a model)."""

    target: Any = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.target(scope, receive, send)


APP = _AppUnderTest()
# The schema of an app that is built but never started: no engine, no lifespan.
schema = schemathesis.openapi.from_dict(create_app(test_settings("unused")).openapi())
schema.app = APP


@pytest.fixture(scope="module", autouse=True)
def _app_under_test(tmp_path_factory: pytest.TempPathFactory) -> Any:
    engine, _ = build_engine(tmp_path_factory.mktemp("schemathesis"), n=3)
    settings_ = test_settings(engine.catalogue.data_dir, max_body_bytes=2 << 20)
    APP.target = create_app(settings_, runtime=engine)
    yield
    APP.target = None
    engine.close()


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_api_conforms_to_its_schema(case: Any) -> None:
    label = case.operation.label
    _STATE["t0"] = _STATE["t0"] or time.monotonic()
    _STATE["calls"] += 1
    _STATE["per_op"][label] = _STATE["per_op"].get(label, 0) + 1
    response = case.call()
    if 200 <= response.status_code < 300:
        _STATE["ok"][label] = _STATE["ok"].get(label, 0) + 1
    if response.status_code >= 500:
        _STATE["5xx"].append(f"{label}: {response.status_code}")
    case.validate_response(response, checks=CHECKS)


def test_enough_requests_were_generated() -> None:
    if not _STATE["calls"]:
        pytest.skip("the schema tests above were not selected in this run")
    summary = {
        "cases": _STATE["calls"],
        "server_errors_5xx": len(_STATE["5xx"]),
        "examples_per_operation_setting": EXAMPLES,
        "cases_per_operation": _STATE["per_op"],
        "2xx_per_operation": _STATE["ok"],
        "seconds": round(time.monotonic() - _STATE["t0"], 1),
    }
    print("schemathesis:", json.dumps(summary))
    if os.environ.get("CROSSMEDIA_FUZZ_RESULTS"):
        Path(os.environ["CROSSMEDIA_FUZZ_RESULTS"]).write_text(json.dumps(summary, indent=2) + "\n")
    assert _STATE["5xx"] == [], _STATE["5xx"]
    if EXAMPLES >= 150:  # a quick local run may ask for fewer
        assert _STATE["calls"] >= MIN_CASES, _STATE["per_op"]
    # not only rejections: valid searches and item reads got through and were checked too
    assert _STATE["ok"].get("POST /v1/search", 0) >= 20, _STATE["ok"]
