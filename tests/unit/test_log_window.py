"""Byte ranges of a log never split a UTF-8 character, and always move on."""

from __future__ import annotations

from app.api.v1.task_logs import utf8_window

TEXT = "aé🌍b".encode()  # 1 + 2 + 4 + 1 bytes


def test_a_page_ends_before_a_character_it_would_split() -> None:
    assert utf8_window(TEXT, 0, 2) == (0, 1)
    assert utf8_window(TEXT, 1, 5) == (1, 3)


def test_an_offset_inside_a_character_moves_back_to_its_start() -> None:
    assert utf8_window(TEXT, 4, 100) == (3, 8)
    assert utf8_window(TEXT, 2, 2) == (1, 3)


def test_a_page_smaller_than_a_character_still_returns_it() -> None:
    assert utf8_window(TEXT, 3, 1) == (3, 7)


def test_offsets_past_the_end_return_nothing() -> None:
    assert utf8_window(TEXT, 50, 10) == (8, 8)
    assert utf8_window(b"", 0, 10) == (0, 0)


def test_walking_pages_rebuilds_the_text() -> None:
    pieces, offset = [], 0
    while offset < len(TEXT):
        start, end = utf8_window(TEXT, offset, 3)
        pieces.append(TEXT[start:end].decode())
        offset = end
    assert "".join(pieces) == TEXT.decode()
