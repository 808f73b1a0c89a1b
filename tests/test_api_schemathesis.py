"""Property-based run of the OpenAPI schema with schemathesis (Python API, in-process ASGI).

At least 500 generated requests in total; every response must be non-5xx and conform to the
documented status codes, content types and schemas. The catalogue is a private copy (generated
DELETEs may remove its items).
"""

from __future__ import annotations

from typing import Any

import pytest

schemathesis = pytest.importorskip("schemathesis", reason="pip install schemathesis")

from api_support import COCO, build_engine, test_settings  # noqa: E402
from hypothesis import HealthCheck, settings  # noqa: E402
from schemathesis.checks import (  # noqa: E402
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from api.main import create_app  # noqa: E402

if not (COCO / "items.jsonl").is_file():
    pytest.skip(f"real test photos missing: {COCO}", allow_module_level=True)

_STATE: dict[str, Any] = {}


def _app() -> Any:
    if "app" not in _STATE:
        import tempfile

        engine, _ = build_engine(__import__("pathlib").Path(tempfile.mkdtemp(prefix="cm-st-")), n=3)
        _STATE["engine"] = engine
        _STATE["app"] = create_app(
            test_settings(engine.catalogue.data_dir, max_body_bytes=2 * 1024 * 1024),
            engine=engine,
        )
        _STATE["app"].state.engine = engine  # no lifespan under the ASGI transport
        _STATE["calls"] = 0
    return _STATE["app"]


schema = schemathesis.openapi.from_asgi("/openapi.json", _app())

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@schema.parametrize()
@settings(
    max_examples=70,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_api_conforms_to_its_schema(case: Any) -> None:
    _STATE["calls"] = _STATE.get("calls", 0) + 1
    per_op = _STATE.setdefault("per_op", {})
    per_op[case.operation.label] = per_op.get(case.operation.label, 0) + 1
    response = case.call_and_validate(checks=CHECKS)
    if 200 <= response.status_code < 300:
        ok = _STATE.setdefault("ok", {})
        ok[case.operation.label] = ok.get(case.operation.label, 0) + 1


def test_enough_requests_were_generated() -> None:
    if not _STATE.get("calls"):
        pytest.skip("the schema tests above were not selected in this run")
    print("schemathesis requests per operation:", _STATE["per_op"])
    assert _STATE["calls"] >= 500, _STATE["per_op"]
    # not only rejections: valid searches and item reads got through and were checked too
    print("2xx per operation:", _STATE.get("ok"))
    assert _STATE["ok"].get("POST /v1/search", 0) >= 20, _STATE.get("ok")
