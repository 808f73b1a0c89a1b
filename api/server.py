"""`serve()`: run the API and page with uvicorn (wired into the CLI as `crossmedia serve`)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from api.process import passive_openmp
from api.settings import Settings, load_settings

log = logging.getLogger("crossmedia.api")


def serve(
    data_dir: str | Path | None = None,
    host: str | None = None,
    port: int | None = None,
    model: str | None = None,
    *,
    settings_file: str | Path | None = None,
    log_level: str = "info",
) -> None:
    """Serve the catalogue in `data_dir`. Arguments left as None come from CROSSMEDIA_* variables,
    the settings file, then defaults (127.0.0.1:8000, the default model).

    Raises SystemExit with the fix when settings are invalid, e.g. a non-loopback host without
    API keys.
    """
    import uvicorn

    from api.main import create_app

    overrides: dict[str, Any] = {
        k: v
        for k, v in {"data_dir": data_dir, "host": host, "port": port, "model": model}.items()
        if v is not None
    }
    try:
        settings: Settings = load_settings(settings_file, **overrides)
    except ValidationError as exc:
        messages = "; ".join(
            str(e.get("msg", "")).removeprefix("Value error, ") for e in exc.errors()
        )
        raise SystemExit(f"crossmedia serve: invalid settings: {messages}") from exc
    # The lifespan logs the open-on-loopback warning, for every entry point.
    configure_process(settings)
    uvicorn.run(create_app(settings), **uvicorn_options(settings), log_level=log_level)


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """How `serve` runs uvicorn: bind address, slow-client timeouts (header deadline and
    keep-alive), no proxy headers."""
    from api.http_protocol import with_header_timeout

    return {
        "host": settings.host,
        "port": settings.port,
        "http": with_header_timeout(settings.header_timeout_s),
        "timeout_keep_alive": settings.keep_alive_s,
        "proxy_headers": False,
        "timeout_graceful_shutdown": 10,
    }


def app_from_env() -> Any:
    """An app built from CROSSMEDIA_* settings, for `uvicorn --factory api.server:app_from_env`
    (e.g. several worker processes behind one port). uvicorn's command line cannot take the
    header-deadline protocol `serve` uses (api.http_protocol); pass `--timeout-keep-alive 5` and
    put a proxy with a header timeout in front, or run `crossmedia serve`."""
    from api.main import create_app

    settings = load_settings()
    configure_process(settings)
    return create_app(settings)


def configure_process(settings: Settings) -> None:
    """Process-wide choices that belong to whoever owns the process: the server entry points,
    never `create_app` (tests build many apps inside one pytest process)."""
    passive_openmp()
    if settings.torch_threads is not None:
        import torch

        torch.set_num_threads(settings.torch_threads)
