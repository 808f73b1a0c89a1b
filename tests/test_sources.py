"""Sources: manifests (JSON lines and CSV) with bad lines reported by line number, and folder
walks that recognise media by content."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image

from indexer.sources import Entry, FolderSource, ManifestSource, SourceError, open_source
from retrieval.modality import Modality


def _jpeg() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (7, 11), (10, 200, 30)).save(buf, format="JPEG")
    return buf.getvalue()


def _write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_jsonl_manifest_good_and_bad_lines(tmp_path: Path) -> None:
    (tmp_path / "img").mkdir()
    manifest = _write_lines(
        tmp_path / "items.jsonl",
        [
            '{"id": "a", "image": "img/a.jpg", "captions": ["a cat", "  ", "a cat on a mat "], "lens": 35}',
            '{"id": "b", "image": "img/b.jpg", "caption": "one caption"}',
            "",
            '{"id": "c", "image": "img/c.jpg", "captions": ',  # invalid JSON
            '["not", "an", "object"]',
            '{"id": "d", "label": "cat"}',  # nothing to index
            '{"id": "e", "image": "img/e.jpg", "captions": "ok", "text": 7}',
            '{"id": "f", "image": "img/f.jpg", "captions": [1, 2]}',
            '{"id": "g", "image": 5}',
            '{"image": "img/h.jpg"}',  # no id: the media path is the key
            '{"id": 9, "text": "a standalone note"}',
            '{"id": "j", "audio": "snd/j.flac", "image": "img/j.jpg", "captions": []}',
        ],
    )
    src = open_source(manifest)
    assert isinstance(src, ManifestSource)
    assert len(src) == 11  # non-blank lines
    entries = list(src)
    by_where = {e.where: e for e in entries}
    assert list(by_where) == [f"items.jsonl:{n}" for n in (1, 2, 4, 5, 6, 7, 8, 9, 10, 11, 12)]

    errors = {e.where: e.error for e in entries if e.error}
    assert set(errors) == {f"items.jsonl:{n}" for n in (4, 5, 6, 7, 8, 9)}
    assert errors["items.jsonl:4"].startswith("invalid JSON")
    assert "JSON object" in errors["items.jsonl:5"]
    assert "no 'image', 'audio', 'text' or 'captions'" in errors["items.jsonl:6"]
    assert "'text' must be a string" in errors["items.jsonl:7"]
    assert "'captions' must be a list of strings" in errors["items.jsonl:8"]
    assert "'image' must be a path string" in errors["items.jsonl:9"]
    assert by_where["items.jsonl:6"].key == "d"
    # Keys of unparsable lines are unique per line, so each is recorded separately.
    assert by_where["items.jsonl:4"].key != by_where["items.jsonl:5"].key

    a = by_where["items.jsonl:1"]
    assert a.key == "a" and a.error is None
    assert [(m.modality, m.path) for m in a.media] == [(Modality.IMAGE, tmp_path / "img" / "a.jpg")]
    assert a.captions == ["a cat", "a cat on a mat"]
    assert a.attrs == {"lens": 35}
    assert by_where["items.jsonl:2"].captions == ["one caption"]
    h = by_where["items.jsonl:10"]
    assert h.key == str(tmp_path / "img" / "h.jpg") and h.media[0].path.is_absolute()
    note = by_where["items.jsonl:11"]
    assert note.key == "9" and note.text == "a standalone note" and note.media == []
    j = by_where["items.jsonl:12"]
    # Image first whatever the field order: the pipeline gives the image the entry's key.
    assert [m.modality for m in j.media] == [Modality.IMAGE, Modality.AUDIO]


def test_manifest_media_paths_resolve_relative_to_the_manifest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sub = tmp_path / "set"
    sub.mkdir()
    manifest = _write_lines(
        sub / "items.jsonl",
        [
            '{"id": "x", "image": "../photos/x.jpg"}',
            f'{{"id": "y", "image": "{tmp_path}/abs.jpg"}}',
        ],
    )
    monkeypatch.chdir(tmp_path.parent)
    x, y = list(
        ManifestSource(Path(manifest.relative_to(tmp_path.parent)), allow_outside=[tmp_path])
    )
    assert x.media[0].path == tmp_path / "photos" / "x.jpg"
    assert y.media[0].path == tmp_path / "abs.jpg"


def test_csv_manifest(tmp_path: Path) -> None:
    manifest = tmp_path / "items.csv"
    manifest.write_text(
        "id,image,captions,label\n"
        "a,img/a.jpg,a dog|a brown dog| ,dog\n"
        "b,img/b.jpg,,cat\n"
        "c,,,\n"
        "d,,just one,\n",
        encoding="utf-8",
    )
    src = open_source(manifest)
    assert isinstance(src, ManifestSource) and len(src) == 4
    a, b, c, d = list(src)
    assert (a.where, a.key, a.captions, a.attrs) == (
        "items.csv:2",
        "a",
        ["a dog", "a brown dog"],
        {"label": "dog"},
    )
    assert a.media[0].path == tmp_path / "img" / "a.jpg"
    assert b.captions == [] and b.attrs == {"label": "cat"} and b.error is None
    assert c.where == "items.csv:4" and c.error is not None and "no 'image'" in c.error
    assert d.media == [] and d.captions == ["just one"] and d.error is None


def test_folder_walk_sniffs_content(tmp_path: Path) -> None:
    jpeg = _jpeg()
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "photo.dat").write_bytes(jpeg)  # a JPEG with a misleading name
    (tmp_path / "a.jpg").write_bytes(jpeg)
    (tmp_path / "fake.jpg").write_text("I am text, not a photo.")  # reported: not media
    (tmp_path / "notes.txt").write_text("  a note about the photos \n", encoding="utf-8")
    (tmp_path / "empty.txt").write_text("   \n")
    (tmp_path / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    (tmp_path / "sound.flac").write_bytes(b"fLaC\x00\x00\x00\x22" + b"\x00" * 40)
    (tmp_path / ".hidden.jpg").write_bytes(jpeg)
    (tmp_path / ".cache").mkdir()
    (tmp_path / ".cache" / "thumb.jpg").write_bytes(jpeg)
    (tmp_path / "b" / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")

    src = open_source(tmp_path)
    assert isinstance(src, FolderSource)
    assert len(src) == 7  # every non-hidden file, media or not
    entries = list(src)
    ok = {e.where: e for e in entries if e.error is None}
    bad = {e.where: e.error for e in entries if e.error}
    assert list(ok) == ["a.jpg", "notes.txt", "sound.flac", "b/photo.dat"]
    assert ok["a.jpg"].media[0].modality == Modality.IMAGE
    assert ok["a.jpg"].media[0].mime == "image/jpeg"
    assert ok["a.jpg"].key == str(tmp_path / "a.jpg")
    assert ok["b/photo.dat"].media[0].modality == Modality.IMAGE
    assert ok["b/photo.dat"].attrs == {"file": "b/photo.dat"}
    assert ok["sound.flac"].media[0].modality == Modality.AUDIO
    assert ok["notes.txt"].text == "a note about the photos" and ok["notes.txt"].media == []
    assert list(bad) == ["empty.txt", "fake.jpg", "latin1.txt"]
    assert "not UTF-8" in str(bad["latin1.txt"]) and "0xe9" in str(bad["latin1.txt"])
    assert "only whitespace" in str(bad["empty.txt"])
    assert "named .jpg but the content is text, not an image" in str(bad["fake.jpg"])
    assert all("hidden" not in e.where and "cache" not in e.where for e in entries)
    # Hidden names are left out, but counted: .hidden.jpg, .cache, b/.DS_Store.
    assert src.notes == [
        (str(tmp_path), "3 hidden files or folders (names starting with '.') not indexed")
    ]


def test_open_source_errors(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="does not exist"):
        open_source(tmp_path / "nope")
    other = tmp_path / "photo.jpg"
    other.write_bytes(_jpeg())
    with pytest.raises(SourceError, match="not a manifest"):
        open_source(other)


def test_entry_defaults_are_independent() -> None:
    a, b = Entry(key="a"), Entry(key="b")
    a.captions.append("x")
    assert b.captions == []


@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
def test_manifest_with_a_byte_order_mark(tmp_path: Path, suffix: str) -> None:
    """Spreadsheet exports start with a UTF-8 BOM; the first column must still be `id`."""
    manifest = tmp_path / f"items{suffix}"
    body = (
        '{"id": "a", "image": "a.jpg", "captions": ["x"]}\n'
        if suffix == ".jsonl"
        else "id,image,captions\na,a.jpg,x\n"
    )
    manifest.write_bytes(b"\xef\xbb\xbf" + body.encode("utf-8"))
    (entry,) = list(open_source(manifest))
    assert entry.error is None and entry.key == "a" and entry.attrs == {}
    assert entry.captions == ["x"]


def test_manifest_paths_are_confined_to_its_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Finding 3a: an absolute, `../` or symlinked path out of the manifest's folder is refused
    per entry, naming --allow-outside; the roots passed are the only ones added."""
    monkeypatch.delenv("CROSSMEDIA_MEDIA_ROOTS", raising=False)
    home, elsewhere = tmp_path / "set", tmp_path / "elsewhere"
    (home / "img").mkdir(parents=True)
    elsewhere.mkdir()
    (elsewhere / "x.jpg").write_bytes(_jpeg())
    (home / "img" / "in.jpg").write_bytes(_jpeg())
    (home / "img" / "link.jpg").symlink_to(elsewhere / "x.jpg")
    manifest = _write_lines(
        home / "items.jsonl",
        [
            '{"id": "in", "image": "img/in.jpg"}',
            '{"id": "up", "image": "../elsewhere/x.jpg"}',
            f'{{"id": "abs", "image": "{elsewhere / "x.jpg"}"}}',
            '{"id": "link", "image": "img/link.jpg"}',
            '{"id": "passwd", "image": "/etc/passwd"}',
        ],
    )
    src = open_source(manifest)
    assert src.media_roots == [home.resolve()]
    by_key = {e.key: e for e in src}
    assert by_key["in"].error is None
    for key in ("up", "abs", "link", "passwd"):
        assert "outside" in str(by_key[key].error) and "--allow-outside" in str(by_key[key].error)

    allowed = open_source(manifest, allow_outside=[elsewhere])
    assert allowed.media_roots == [home.resolve(), elsewhere.resolve()]
    errors = {e.key: e.error for e in allowed}
    assert errors == {
        "in": None,
        "up": None,
        "abs": None,
        "link": None,
        "passwd": errors["passwd"],
    } and "outside" in str(errors["passwd"])
    monkeypatch.setenv("CROSSMEDIA_MEDIA_ROOTS", str(elsewhere))
    assert ManifestSource(manifest).media_roots == [home.resolve(), elsewhere.resolve()]


def test_folder_symlinks_out_of_the_folder_are_refused(tmp_path: Path) -> None:
    root, elsewhere = tmp_path / "photos", tmp_path / "elsewhere"
    root.mkdir()
    elsewhere.mkdir()
    (elsewhere / "x.jpg").write_bytes(_jpeg())
    (root / "in.jpg").write_bytes(_jpeg())
    (root / "out.jpg").symlink_to(elsewhere / "x.jpg")
    (root / "inner.jpg").symlink_to(root / "in.jpg")
    (root / "linked_dir").symlink_to(elsewhere)
    (root / "loop.jpg").symlink_to(root / "loop.jpg")
    src = FolderSource(root, allow_outside=())
    assert src.media_roots == [root.resolve()]
    errors = {e.where: e.error for e in src}
    assert errors["in.jpg"] is None and errors["inner.jpg"] is None
    assert "outside" in str(errors["out.jpg"]) and "--allow-outside" in str(errors["out.jpg"])
    assert "outside" in str(errors["linked_dir"])
    assert "symlink loop" in str(errors["loop.jpg"])
    errors = {e.where: e.error for e in FolderSource(root, allow_outside=[elsewhere])}
    assert errors["out.jpg"] is None and "not followed" in str(errors["linked_dir"])


def test_bad_manifest_lines_are_skipped_not_fatal(tmp_path: Path) -> None:
    """Finding 4: a non-UTF-8 line, a symlink loop and an overlong line are each one skipped
    entry with its line number; the good lines around them are read."""
    (tmp_path / "a.jpg").write_bytes(_jpeg())
    (tmp_path / "loop.jpg").symlink_to(tmp_path / "loop.jpg")
    lines = [
        b'{"id": "a", "image": "a.jpg"}',
        b'{"id": "b", "caption": "caf\xe9"}',
        b'{"id": "loop", "image": "loop.jpg"}',
        b'{"id": "long", "caption": "' + b"x" * (1024 * 1024 + 10) + b'"}',
        b'{"id": "nul", "image": "a\\u0000.jpg"}',
        b"[" * 100_000,
        b'{"id": "z", "caption": "last"}',
    ]
    manifest = tmp_path / "items.jsonl"
    manifest.write_bytes(b"\n".join(lines) + b"\n")
    src = ManifestSource(manifest)
    assert len(src) == 7
    entries = list(src)
    assert [e.where for e in entries] == [f"items.jsonl:{n}" for n in range(1, 8)]
    errors = [e.error for e in entries]
    assert errors[0] is None and errors[6] is None and entries[6].captions == ["last"]
    assert "not UTF-8 (byte 0xe9 at column 28)" in str(errors[1])
    assert "symlink loop" in str(errors[2]) and entries[2].key == "loop"
    assert "line longer than 1048576 bytes" in str(errors[3])
    assert "bad path" in str(errors[4])
    assert "invalid JSON" in str(errors[5])


def test_bad_csv_lines_are_skipped_not_fatal(tmp_path: Path) -> None:
    manifest = tmp_path / "items.csv"
    manifest.write_bytes(
        b"id,image,captions\n"
        b"a,,first\n"
        b"b,,caf\xe9\n"
        b'c,,"two\nlines"\n'
        b"d,," + b"y" * (1024 * 1024 + 5) + b"\n"
        b"e,,last\n"
    )
    entries = list(ManifestSource(manifest))
    got = [(e.where, e.key if e.error is None else None, e.error) for e in entries]
    assert [w for w, _, _ in got] == [
        "items.csv:2",
        "items.csv:3",
        "items.csv:4",
        "items.csv:6",
        "items.csv:7",
    ]
    assert [k for _, k, _ in got] == ["a", None, "c", None, "e"]
    assert "not UTF-8" in str(got[1][2]) and "line longer" in str(got[3][2])
    assert entries[2].captions == ["two\nlines"]


def test_folder_reports_every_file_it_does_not_index(tmp_path: Path) -> None:
    """Finding 10a: a zero-byte .jpg, a text file named .jpg and an unsupported file used to be
    skipped silently in a folder while the same file in a manifest was reported."""
    (tmp_path / "zero.jpg").write_bytes(b"")
    (tmp_path / "text.jpg").write_text("hello")
    (tmp_path / "noise.png").write_bytes(bytes(range(256)) * 3)
    (tmp_path / "data.bin").write_bytes(b"\x00\x01\x02")
    (tmp_path / "ok.jpg").write_bytes(_jpeg())
    errors = {e.where: e.error for e in FolderSource(tmp_path)}
    assert errors["ok.jpg"] is None
    assert errors["zero.jpg"] == "empty file (0 bytes)"
    assert errors["text.jpg"] == "named .jpg but the content is text, not an image"
    assert errors["noise.png"] == "named .png but the content is binary data, not an image"
    assert "unsupported file type (.bin" in str(errors["data.bin"])
