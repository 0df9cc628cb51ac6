"""A task's log printed by ``weir tasks logs`` cannot drive the reader's terminal."""

from __future__ import annotations

from weir.terminal_text import printable


def test_control_characters_are_shown_escaped_but_newlines_and_tabs_kept() -> None:
    log = "ok\tdone\n\x1b[2J\x1b]0;pwned\x07over\rwrite\x9b31m\x00\x7f end\n"
    shown = printable(log)
    assert shown == "ok\tdone\n\\x1b[2J\\x1b]0;pwned\\aover\\rwrite\\x9b31m\\x00\\x7f end\n"
    assert all(ch in "\n\t" or ch.isprintable() for ch in shown)


def test_bidirectional_overrides_are_shown_and_other_text_is_untouched() -> None:
    assert printable("file\u202etxt.exe") == "file\\u202etxt.exe"
    assert printable("héllo wörld ✓ 日本") == "héllo wörld ✓ 日本"
