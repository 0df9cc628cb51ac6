"""Text from the service made safe to print on a terminal.

A task's log is whatever the task wrote: escape sequences in it would drive the reader's terminal
(move the cursor, rewrite lines already shown, set the window title, and on some terminals worse).
Every control character but newline and tab, and the Unicode bidirectional overrides that reorder
what is shown, is printed as a visible escape instead (``\\x1b``, ``\\r``, ``\\u202e``).
"""

from __future__ import annotations

__all__ = ["printable"]

_NAMED = {"\r": "\\r", "\b": "\\b", "\f": "\\f", "\v": "\\v", "\a": "\\a"}
_BIDI = [*range(0x200E, 0x2010), *range(0x202A, 0x202F), *range(0x2066, 0x206A)]
_CONTROLS = [*range(0x00, 0x20), 0x7F, *range(0x80, 0xA0)]


def _escape(code: int) -> str:
    char = chr(code)
    if char in _NAMED:
        return _NAMED[char]
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


_TABLE = {code: _escape(code) for code in (*_CONTROLS, *_BIDI) if chr(code) not in "\n\t"}


def printable(text: str) -> str:
    """``text`` with control characters (but ``\\n`` and ``\\t``) shown as escapes."""
    return text.translate(_TABLE)
