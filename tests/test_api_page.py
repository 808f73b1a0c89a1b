"""The web page in a real browser: Debian's chromium driven by Playwright against uvicorn."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from api_support import COCO, LiveServer, needs_coco, shared_engine, test_settings

from api.main import create_app
from api.runtime import Runtime

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

pytestmark = [
    pytest.mark.slow,
    needs_coco,
    pytest.mark.skipif(
        not CHROMIUM.exists(), reason="Debian chromium missing: apt-get install -y chromium"
    ),
]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    engine, _ = shared_engine(tmp_path_factory)
    with LiveServer(create_app(test_settings(engine.catalogue.data_dir), runtime=engine)) as s:
        yield s


@pytest.fixture(scope="module")
def playwright() -> Iterator[Any]:
    # Not skipped when missing: with chromium present, a missing test dependency is a failure.
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:  # one per process: it runs its own event loop
        yield p


@pytest.fixture(scope="module")
def browser(playwright: Any) -> Iterator[Any]:
    b = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
    yield b
    b.close()


@pytest.fixture()
def console_errors() -> list[str]:
    return []


@pytest.fixture()
def page(browser: Any, server: LiveServer, console_errors: list[str]) -> Iterator[Any]:
    context = browser.new_context()
    pg = context.new_page()
    errors = console_errors
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    pg.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    pg.goto(server.url + "/")
    yield pg
    context.close()
    assert not errors, errors  # no JS exceptions, no CSP violations, no failed loads


def _image_cards_loaded(page: Any) -> int:
    return page.evaluate(
        "() => [...document.querySelectorAll('.card[data-modality=image] img')]"
        ".filter(i => i.complete && i.naturalWidth > 0).length"
    )


def test_text_query_shows_images_and_opens_one(page: Any) -> None:
    page.locator("#stats").filter(has_text="image").wait_for()
    page.check("input[name=target][value=image]")
    page.fill("#q", "people sitting at a table with a cake")
    page.click("#go")
    page.locator(".card[data-modality=image]").first.wait_for()
    page.wait_for_function(
        "() => [...document.querySelectorAll('.card img')].every(i => i.complete && i.naturalWidth)"
    )
    assert _image_cards_loaded(page) >= 5
    assert re.search(r"\d+ result\(s\)", page.inner_text("#message"))
    assert "encode" in page.inner_text("#timings")
    assert "score" in page.inner_text(".card .score >> nth=0")

    page.click(".card[data-modality=image] >> nth=0")
    dialog = page.locator("#detail")
    dialog.wait_for(state="visible")
    page.wait_for_function(
        "() => { const i = document.querySelector('#detail img'); "
        "return i && i.complete && i.naturalWidth > 32; }"
    )
    assert "image/jpeg" in dialog.inner_text()


def test_upload_image_query_shows_results(page: Any) -> None:
    photo = sorted((COCO / "images").glob("*.jpg"))[0]
    page.set_input_files("#file", str(photo))
    page.locator("#query-preview img").wait_for()
    page.locator(".card").first.wait_for()
    page.wait_for_function(
        "() => /result\\(s\\) for/.test(document.querySelector('#message').textContent)"
    )
    assert page.locator(".card").count() >= 5
    assert photo.name in page.inner_text("#message")


def test_errors_are_shown_clearly(page: Any, console_errors: list[str]) -> None:
    page.set_input_files(
        "#file", files=[{"name": "broken.jpg", "mimeType": "image/jpeg", "buffer": b"nope"}]
    )
    page.wait_for_function("() => document.querySelector('#message').className === 'error'")
    assert "Not a recognised image" in page.inner_text("#message")
    assert console_errors == [
        "Failed to load resource: the server responded with a status of 415 "
        "(Unsupported Media Type)"
    ]
    console_errors.clear()  # the expected one


def test_protected_server_uses_the_stored_api_key(
    browser: Any, tmp_path_factory: pytest.TempPathFactory
) -> None:
    engine: Runtime = shared_engine(tmp_path_factory)[0]
    settings = test_settings(engine.catalogue.data_dir, api_keys="page-key-123:read")
    with LiveServer(create_app(settings, runtime=engine)) as server:
        context = browser.new_context()
        pg = context.new_page()
        pg.goto(server.url + "/")
        pg.fill("#q", "a cat")
        pg.click("#go")
        pg.wait_for_function("() => document.querySelector('#message').className === 'error'")
        assert "API key" in pg.inner_text("#message")
        pg.click("#key-box summary")
        pg.fill("#api-key", "page-key-123")
        pg.click("#key-save")
        pg.check("input[name=target][value=image]")
        pg.click("#go")
        pg.wait_for_function(
            "() => [...document.querySelectorAll('.card img')].filter(i => i.complete && "
            "i.naturalWidth > 0 && i.src.startsWith('blob:')).length >= 5"
        )
        assert pg.evaluate("() => localStorage.getItem('crossmedia.apiKey')") == "page-key-123"
        context.close()


def test_audio_results_play_and_audio_files_query(page: Any) -> None:
    page.check("input[name=target][value=audio]")
    page.fill("#q", "someone says seven")
    page.click("#go")
    player = page.locator(".card[data-modality=audio] audio").first
    player.wait_for()
    page.evaluate(
        "() => { const a = document.querySelector('.card audio'); a.preload = 'metadata'; "
        "a.load(); }"
    )
    # the browser reads the FLAC through the media endpoint (Range requests) and decodes it
    page.wait_for_function("() => document.querySelector('.card audio').duration > 0.1")

    clip = sorted((COCO.parent / "fsdd" / "audio").glob("*.flac"))[0]
    page.set_input_files("#file", str(clip))
    page.locator("#query-preview audio").wait_for()
    page.wait_for_function(
        "() => /result\\(s\\) for/.test(document.querySelector('#message').textContent)"
    )
    assert page.locator(".card[data-modality=audio]").count() >= 1


def test_microphone_recording_becomes_an_audio_query(playwright: Any, server: LiveServer) -> None:
    """Chromium's fake microphone (a beep) through MediaRecorder -> WAV -> /v1/search."""
    args = [*CHROMIUM_ARGS, "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"]
    b = playwright.chromium.launch(executable_path=str(CHROMIUM), args=args)
    try:
        context = b.new_context()
        context.grant_permissions(["microphone"], origin=server.url)
        pg = context.new_page()
        pg.goto(server.url + "/")
        pg.check("input[name=target][value=audio]")
        pg.locator("#record").wait_for()
        pg.click("#record")
        pg.wait_for_function("() => document.querySelector('#record').textContent.includes('Stop')")
        pg.wait_for_timeout(1200)
        pg.click("#record")
        pg.locator("#query-preview audio").wait_for()
        pg.wait_for_function(
            "() => /result\\(s\\) for recording\\.wav/.test("
            "document.querySelector('#message').textContent)"
        )
        assert pg.locator(".card[data-modality=audio]").count() >= 1
    finally:
        b.close()
