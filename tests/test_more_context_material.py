"""--context files and --context-text read and checked before anything is sent: one InputError naming the
file for each problem, media held in memory only below the limit, and a content digest that ignores names."""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

import pytest

from gembulk.context import load_context
from gembulk.context.material import TEXT_SOURCE
from gembulk.errors import ExitCode, InputError
from gembulk.records import MediaPart, SharedPart

PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 56


def write(path: Path, data: bytes) -> str:
    path.write_bytes(data)
    return str(path)


@pytest.mark.parametrize(
    ("name", "data", "message"),
    [
        (
            "notes.txt",
            b"caf\xe9 au lait",
            "--context {path}: not UTF-8 text (invalid continuation byte at byte 3)",
        ),
        ("notes.md", b"  \n\t\n", "--context {path}: the file is empty"),
        ("empty.pdf", b"", "--context {path}: the file is empty"),
        ("data.unknownext", b"hello", "--context {path}: cannot tell its media type from the extension"),
        ("bom-only.txt", b"\xef\xbb\xbf\n", "--context {path}: the file is empty"),
    ],
)
def test_a_file_that_cannot_be_context_is_one_input_error(
    tmp_path: Path, name: str, data: bytes, message: str
) -> None:
    path = write(tmp_path / name, data)
    with pytest.raises(InputError) as raised:
        load_context([path], None, None, hold_below=1 << 20)
    assert raised.value.message == message.format(path=path)
    assert raised.value.exit_code == ExitCode.USAGE


def test_an_unknown_extension_says_which_ones_work(tmp_path: Path) -> None:
    with pytest.raises(InputError) as raised:
        load_context([write(tmp_path / "blob.bin9", b"x")], None, None, hold_below=0)
    assert raised.value.hint is not None and ".txt or .md" in raised.value.hint


@pytest.mark.parametrize(
    ("kind", "said"),
    [
        ("missing", "no such file"),
        ("dangling link", "no such file"),
        ("directory", "not a regular file"),
        ("fifo", "not a regular file"),
    ],
)
def test_what_is_not_a_file_says_what_it_is(tmp_path: Path, kind: str, said: str) -> None:
    path = tmp_path / "thing.txt"
    if kind == "directory":
        path.mkdir()
    elif kind == "dangling link":
        path.symlink_to(tmp_path / "gone.txt")
    elif kind == "fifo":
        os.mkfifo(path)  # never opened: reading one would wait for a writer
    with pytest.raises(InputError, match=rf"^--context .*thing\.txt: {said}$"):
        load_context([str(path)], None, None, hold_below=0)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc/self/mem is Linux's")
def test_a_file_that_fails_to_read_says_so_without_a_traceback(tmp_path: Path) -> None:
    # /proc/self/mem is a regular file whose first page cannot be read (EIO), for root too.
    link = tmp_path / "memory.txt"
    link.symlink_to("/proc/self/mem")
    with pytest.raises(InputError, match=r"^--context .*memory\.txt: cannot read it \(Input/output error\)$"):
        load_context([str(link)], None, None, hold_below=0)


def test_text_files_and_the_text_option_keep_their_order_and_sources(tmp_path: Path) -> None:
    first = write(tmp_path / "a.md", "\ufeff# Title\n".encode())  # a BOM is not part of the text
    second = write(tmp_path / "b.json", b'{"k": 1}')  # JSON goes as text
    context = load_context([first, second], "and then this", "be brief", hold_below=0)
    assert [(item.source, item.text) for item in context.items] == [
        (first, "# Title\n"),
        (second, '{"k": 1}'),
        (TEXT_SOURCE, "and then this"),
    ]
    assert all(item.is_text and item.mime_type is None for item in context.items)
    assert context.items[0].sha256 == hashlib.sha256("\ufeff# Title\n".encode()).hexdigest()  # of the bytes
    assert context.system == "be brief" and context.media_bytes == 0
    assert context.describe() == "2 files and --context-text"
    assert [item.inline_part() for item in context.items][2] == SharedPart(text="and then this")


@pytest.mark.parametrize(("hold_below", "held"), [(len(PNG), True), (len(PNG) - 1, False)])
def test_a_medium_is_held_in_memory_only_up_to_the_limit(tmp_path: Path, hold_below: int, held: bool) -> None:
    path = write(tmp_path / "chart.png", PNG)
    (item,) = load_context([path], None, None, hold_below=hold_below).items
    assert (item.mime_type, item.size, item.text) == ("image/png", len(PNG), None)
    assert item.path == os.path.realpath(path)
    assert (item.data is not None) is held
    assert item.sha256 == hashlib.sha256(PNG).hexdigest()  # the same digest, read now or later
    assert item.inline_part() == SharedPart(media=MediaPart("image/png", data=PNG))


def test_a_link_is_read_for_what_it_points_to(tmp_path: Path) -> None:
    target = write(tmp_path / "real.pdf", b"%PDF-1.4 body")
    link = tmp_path / "alias.pdf"
    link.symlink_to(target)
    (item,) = load_context([str(link)], None, None, hold_below=0).items
    assert item.source == str(link) and item.path == os.path.realpath(target)
    assert item.mime_type == "application/pdf"


def test_the_digest_is_the_content_not_the_names(tmp_path: Path) -> None:
    one = write(tmp_path / "one.txt", b"shared words")
    two = write(tmp_path / "two.txt", b"shared words")
    other = write(tmp_path / "other.txt", b"other words")
    digest = load_context([one], None, "s", hold_below=0).sha256
    assert load_context([two], None, "s", hold_below=0).sha256 == digest  # renamed: the same context
    changed = [
        load_context([other], None, "s", hold_below=0),  # other words
        load_context([one], None, "t", hold_below=0),  # another system instruction
        load_context([one], None, None, hold_below=0),  # none at all
        load_context([one, other], None, "s", hold_below=0),
        load_context([other, one], None, "s", hold_below=0),  # the order counts too
    ]
    digests = {context.sha256 for context in changed}
    assert digest not in digests and len(digests) == len(changed)


def test_text_and_a_medium_with_the_same_bytes_differ(tmp_path: Path) -> None:
    text = write(tmp_path / "same.txt", PNG[8:] + b"x")
    medium = write(tmp_path / "same.png", PNG[8:] + b"x")
    assert (
        load_context([text], None, None, hold_below=0).sha256
        != load_context([medium], None, None, hold_below=0).sha256
    )


def test_the_local_estimate_counts_text_and_media(tmp_path: Path) -> None:
    text = write(tmp_path / "t.txt", b"x" * 10)  # 10 characters
    medium = write(tmp_path / "m.png", PNG)
    context = load_context([text, medium], "yy", "zzz", hold_below=0)  # 10 + 2 + 3 = 15 characters
    assert context.local_tokens() == 4 + 258  # ceil(15 / 4), and one medium at an image's count
    assert context.media_bytes == len(PNG)
    assert context.describe() == "2 files and --context-text"
    assert load_context([medium], None, None, hold_below=0).describe() == "1 file"
    assert load_context([], "only text", None, hold_below=0).describe() == "--context-text"
