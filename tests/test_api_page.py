"""The web page in a real browser: Debian's chromium driven by Playwright against uvicorn."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from api_support import (
    COCO,
    N_PHOTOS,
    LiveServer,
    coco_entries,
    needs_coco,
    shared_engine,
    test_settings,
)

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


# --- hybrid search on the page: modes, matched captions, filters, the search in the URL ---


def _search(page: Any, text: str, target: str = "any") -> None:
    page.check(f"input[name=target][value={target}]")
    page.fill("#q", text)
    page.click("#go")
    page.wait_for_function(
        "() => /result\\(s\\) for/.test(document.querySelector('#message').textContent)"
    )


def _card_labels(page: Any) -> list[str]:
    return page.locator(".card[data-modality=image] .label").all_inner_texts()


def test_text_query_shows_media_cards_with_the_matched_caption_marked(page: Any) -> None:
    _search(page, "people sitting at a table with a cake", target="image")
    first = page.locator(".card[data-modality=image]").first
    assert first.locator(".thumb img").count() == 1
    # the COCO photo of the family and the cake, shown with one of its captions
    caption = first.locator(".match q").inner_text()
    assert "cake" in caption.lower(), caption
    marks = [m.lower() for m in first.locator(".match mark").all_inner_texts()]
    assert "cake" in marks and "table" in marks
    assert "a" not in marks and "with" not in marks  # one-letter and function words are not marked
    assert re.fullmatch(r"caption · (vector|lexical)", first.locator(".via").inner_text())
    assert page.locator(".card[data-modality=text]").count() == 0  # images only, as asked
    assert page.inner_text("#query-info") == "mode: hybrid"  # auto: the server chose hybrid (words)


def test_marks_are_whole_words_and_case_insensitive(page: Any) -> None:
    marked = page.evaluate(
        """async () => {
            const q = await import('/static/query.js');
            const nodes = q.highlighted('Cake, cakes and CAKE: a cat', q.queryWords('cake A and'));
            return nodes.map(n => n.nodeName === 'MARK' ? '[' + n.textContent + ']' : n.textContent)
                        .join('');
        }"""
    )
    assert marked == "[Cake], cakes and [CAKE]: a cat"


def test_mode_switch_reaches_the_api(page: Any) -> None:
    page.fill("#q", "cake")
    with page.expect_request("**/v1/search") as request:
        page.click("#go")
    assert "mode" not in request.value.post_data_json  # auto: the server decides
    page.locator("#query-info").filter(has_text="mode: hybrid").wait_for()  # what auto chose

    with page.expect_request("**/v1/search") as request:
        page.check("input[name=mode][value=lexical]")  # a change re-runs the search
    assert request.value.post_data_json["mode"] == "lexical"
    page.locator("#query-info").filter(has_text="mode: lexical").wait_for()  # echoed
    assert "mode=lexical" in page.url

    with page.expect_request("**/v1/search") as request:
        page.check("input[name=mode][value=vector]")
    assert request.value.post_data_json["mode"] == "vector"
    page.locator("#query-info").filter(has_text="mode: vector").wait_for()


def test_a_filter_narrows_the_results(page: Any) -> None:
    _search(page, "a man with a dog on a table", target="image")
    assert {"even", "odd"} <= set(_card_labels(page))

    page.fill("#where", "label=odd")
    with page.expect_request("**/v1/search") as request:
        page.click("#go")
    assert request.value.post_data_json["where"] == {"label": {"=": "odd"}}
    page.wait_for_function(
        "() => [...document.querySelectorAll('.card .label')].every(l => l.textContent === 'odd')"
    )
    assert set(_card_labels(page)) == {"odd"}
    assert "where=label%3Dodd" in page.url

    page.fill("#where", "label in even|nothing, width>=1")
    with page.expect_request("**/v1/search") as request:
        page.click("#go")
    assert request.value.post_data_json["where"] == {
        "label": {"in": ["even", "nothing"]},
        "width": {">=": 1},
    }
    page.wait_for_function(
        "() => [...document.querySelectorAll('.card .label')].every(l => l.textContent === 'even')"
    )
    assert set(_card_labels(page)) == {"even"}


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("", {}),
        ("label=cat", {"label": {"=": "cat"}}),
        ("duration>=2, duration<10.5", {"duration": {">=": 2, "<": 10.5}}),
        ("label in cat|dog", {"label": {"in": ["cat", "dog"]}}),
        ("label in cat,dog; attrs.n != 3", {"label": {"in": ["cat", "dog"]}, "attrs.n": {"!=": 3}}),
        ("code=\"007\", title='a, b'", {"code": {"=": "007"}, "title": {"=": "a, b"}}),
        ("created_at >= 2026-01-31", {"created_at": {">=": "2026-01-31"}}),
    ],
)
def test_filter_syntax(page: Any, line: str, expected: dict[str, Any]) -> None:
    parsed = page.evaluate(
        "async (line) => (await import('/static/query.js')).parseWhere(line)", line
    )
    assert parsed == expected


def test_bad_filters_show_an_error_at_the_filter_box(page: Any, console_errors: list[str]) -> None:
    page.fill("#q", "cake")
    page.fill("#where", "label ~ cat")
    page.click("#go")
    error = page.locator("#where-error")
    error.wait_for()
    assert "Cannot read the filter “label ~ cat”" in error.inner_text()
    assert page.get_attribute("#where", "aria-invalid") == "true"
    assert page.locator(".card").count() == 0  # nothing was sent

    page.fill("#where", "duration>=soon")  # readable, but the engine refuses it: a 422
    assert not error.is_visible()  # editing clears the old error
    page.click("#go")
    page.locator("#where-error").filter(has_text="duration is a number").wait_for()
    assert "did not accept the filter" in page.inner_text("#message")
    assert page.get_attribute("#message", "class") == "error"
    assert console_errors == [
        "Failed to load resource: the server responded with a status of 422 (Unprocessable Entity)"
    ]
    console_errors.clear()  # the expected one


def test_a_search_url_runs_the_search_and_is_kept(page: Any, server: LiveServer) -> None:
    page.goto(server.url + "/?q=cake&target=image&mode=lexical&where=label%3Deven&k=10")
    page.locator(".card[data-modality=image]").first.wait_for()
    assert page.input_value("#q") == "cake"
    assert page.is_checked("input[name=target][value=image]")
    assert page.is_checked("input[name=mode][value=lexical]")
    assert page.input_value("#where") == "label=even"
    assert page.input_value("#k") == "10"
    assert page.inner_text("#query-info") == "mode: lexical"
    assert set(_card_labels(page)) == {"even"}
    assert "cake" in page.locator(".card .match q").first.inner_text().lower()

    # a new search from the form replaces the query in the URL; reloading runs it again
    page.fill("#q", "boat in the water")
    page.click("#go")
    page.wait_for_url(re.compile(r"q=boat\+in\+the\+water"))
    assert "target=image" in page.url and "mode=lexical" in page.url
    page.reload()
    page.locator(".card .match mark").first.wait_for()
    assert page.input_value("#q") == "boat in the water"
    assert "boat" in [m.lower() for m in page.locator(".card .match mark").all_inner_texts()]
    page.go_back()  # the previous search, from history
    page.wait_for_function("() => document.querySelector('#q').value === 'cake'")


def test_html_in_a_caption_is_shown_as_text(page: Any, server: LiveServer) -> None:
    caption = '<img src=x id=injected><b>quokka</b> & "wombat" <script>window.pwned=1</script>'
    photo = COCO / coco_entries(N_PHOTOS + 2)[-1]["image"]
    up = page.request.post(
        server.url + "/v1/items",
        multipart={
            "file": {"name": photo.name, "mimeType": "image/jpeg", "buffer": photo.read_bytes()},
            "captions": caption,
        },
    )
    assert up.status == 201, up.text()
    item = up.json()["id"]
    try:
        page.check("input[name=mode][value=lexical]")
        _search(page, "quokka wombat", target="image")
        card = page.locator(f".card[data-id='{item}']")
        assert card.locator(".match q").inner_text() == caption
        assert card.locator(".match mark").all_inner_texts() == ["quokka", "wombat"]
        assert card.locator("b, script, #injected").count() == 0
        assert card.locator("img").count() == 1  # the thumbnail only
        assert page.evaluate("() => window.pwned") is None
    finally:
        assert page.request.delete(f"{server.url}/v1/items/{item}").ok


def test_spoken_query_shows_what_was_heard(page: Any) -> None:
    """The test catalogue has no speech model, so the answer to a recording is a canned one: a
    transcript echoed by the server and an audio hit matched through a caption."""
    canned = {
        "results": [
            {
                "id": 90,
                "modality": "audio",
                "score": 0.5,
                "attrs": {"label": "seven"},
                "matched": [
                    {"id": 91, "text": "a dog barks", "channel": "vector", "score": 0.4},
                    {"id": 92, "text": "Someone says SEVEN", "channel": "transcript", "score": 0.9},
                ],
            }
        ],
        "timings_ms": {"total": 1.0},
        "query": {
            "modality": "audio",
            "target": "audio",
            "k": 20,
            "rerank": False,
            "mode": None,
            "transcript": " someone says seven",
        },
    }
    page.route("**/v1/search", lambda route: route.fulfill(json=canned))
    clip = sorted((COCO.parent / "fsdd" / "audio").glob("*.flac"))[0]
    page.set_input_files("#file", str(clip))
    page.locator(".card[data-modality=audio]").wait_for()
    assert page.inner_text("#query-info .heard") == "heard: “someone says seven”"
    match = page.locator(".card .match")
    assert match.locator("q").inner_text() == "Someone says SEVEN"  # the one with heard words
    assert match.locator("mark").all_inner_texts() == ["Someone", "says", "SEVEN"]
    assert match.locator(".via").inner_text() == "caption · transcript"


def test_search_quality_panel_shows_the_last_eval(page: Any) -> None:
    """Issue 17: the last `crossmedia eval` (GET /v1/stats info.last_eval) on an info panel, with
    the drift warning marked."""
    last = {
        "model": "starter",
        "at": "2026-12-01T10:00:00Z",
        "tasks": {
            "text_to_image": {
                "gallery": 239,
                "queries": 1195,
                "chance_R@10": 0.0418,
                "first_stage": {"R@1": 0.721, "R@5": 0.877, "R@10": 0.922},
                "reranked": {"R@1": 0.727, "R@5": 0.883, "R@10": 0.921},
            }
        },
        "drift": {"image": {"available": True, "warning": True, "note": "Warning: far away."}},
    }
    stats = {"counts": {"image": 239}, "model": "starter", "reranker": True, "info": {}}
    page.route(
        "**/v1/stats", lambda route: route.fulfill(json={**stats, "info": {"last_eval": last}})
    )
    page.reload()
    panel = page.locator("#eval-panel")
    panel.wait_for(state="visible")
    page.click("#eval-panel summary")
    body = page.locator("#eval-body")
    assert "72.1%" in body.inner_text() and "first stage" in body.inner_text()
    assert body.locator("tr").count() == 3  # header, first stage, re-ranked
    assert body.locator("p.error").inner_text() == "Drift (image): Warning: far away."


def test_one_per_duplicate_switch_reaches_the_api(page: Any) -> None:
    page.fill("#q", "cake")
    with page.expect_request("**/v1/search") as request:
        page.click("#go")
    assert "collapse" not in request.value.post_data_json  # off by default
    page.locator(".card").first.wait_for()
    with page.expect_request("**/v1/search") as request:
        page.check("#collapse")  # a change re-runs the search
    assert request.value.post_data_json["collapse"] is True
    page.locator(".card").first.wait_for()
