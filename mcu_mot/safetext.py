"""Strings from outside (a model file, a file name, a device) made safe for where they go.

Every name a .tflite holds (tensors, custom op codes, ...) and the model's file name are
untrusted: they must never change the meaning of generated C, break a one-line error, or
drive a terminal. This module is the one place that decides what such a string may look
like at each kind of sink:

- `clean_name(raw)`: at read time. Any bytes -> a printable, bounded, one-line str; the
  mapping is one to one (distinct names stay distinct) and keeps ordinary names as they are:
  backslashes are doubled, invalid UTF-8 bytes become \\xNN, non-printable characters
  (newlines, NUL, ANSI escapes, bidi controls...) become \\xNN / \\uNNNN / \\UNNNNNNNN, and
  a name longer than MAX_NAME characters is cut and tagged with a digest of the whole.
- `one_line(text)`: for messages shown to people (non-printables escaped, any str).
- `c_text(s, limit)`: the only form in which an external string may appear in generated C,
  inside a comment or a string literal: a conservative whitelist of printable ASCII (letters,
  digits, space and `_-.,:;/+=()@`), everything else replaced by `_`, bounded length. No `*`
  (so no comment opener or closer), no `?` (no trigraphs), no backslash (no line splice or
  escape), no quotes, no `%`/`#` (no directives, no format strings), no newline or
  non-ASCII.
- `c_ident(hint)`: letters, digits and `_` only, for the hint part of a C identifier.
- `check_c_fragment(text)`: a last guard on every value a C template renders.
"""

from __future__ import annotations

import hashlib
import re
import string

MAX_NAME = 256  # characters a name keeps at read time
_KEEP = 200  # ... of which this many when it is cut
C_NAME_LIMIT = 200  # bytes of a name in a C string literal (the wire protocol carries <= 255)
C_COMMENT_LIMIT = 96  # characters of a name in a C comment

_C_SAFE = frozenset(string.ascii_letters + string.digits + " _-.,:;/+=()@")


def _escape_char(ch: str) -> str:
    o = ord(ch)
    if ch == "\\":
        return "\\\\"
    if 0xDC80 <= o <= 0xDCFF:  # an invalid UTF-8 byte (surrogateescape)
        return f"\\x{o - 0xDC00:02x}"
    if ch.isprintable():
        return ch
    if o < 0x80:
        return f"\\x{o:02x}"
    if o < 0x10000:
        return f"\\u{o:04x}"
    return f"\\U{o:08x}"


def _escape(text: str) -> str:
    if text.isprintable() and "\\" not in text:
        return text
    return "".join(_escape_char(ch) for ch in text)


def clean_name(raw, fallback: str = "") -> str:
    """A name from a model file (bytes or str) as a printable, bounded, one-line str."""
    if raw is None:
        return fallback
    if isinstance(raw, (bytes, bytearray, memoryview)):
        data = bytes(raw)
        text = data.decode("utf-8", "surrogateescape")
    else:
        text = str(raw)
        data = text.encode("utf-8", "surrogatepass")
    if not text:
        return fallback
    out = _escape(text[: MAX_NAME + 1])  # a longer one is cut anyway: escape no more of it
    if len(text) > MAX_NAME or len(out) > MAX_NAME:
        digest = hashlib.sha256(data).hexdigest()[:12]  # of the whole name: distinct names stay distinct
        out = f"{out[:_KEEP]}...#{digest}"
    return out


def one_line(text, limit: int = 0) -> str:
    """Text for a one-line message: non-printable characters escaped (backslashes are left as
    they are, so a clean_name() stays as it is); cut to `limit` characters (0: no limit)."""
    text = str(text)
    out = text if text.isprintable() else "".join(c if c.isprintable() else _escape_char(c) for c in text)
    if limit and len(out) > limit:
        out = out[: max(0, limit - 3)] + "..."
    return out


def c_text(s, limit: int = C_NAME_LIMIT) -> str:
    """`s` as the inside of a C comment or string literal: whitelisted ASCII only, at most
    `limit` characters (cut ones end in "...")."""
    s = str(s)
    cut = len(s) > limit
    if cut:
        s = s[: max(0, limit - 3)]
    return "".join(c if c in _C_SAFE else "_" for c in s) + ("..." if cut else "")


def c_comment(s) -> str:
    return c_text(s, C_COMMENT_LIMIT)


def c_ident(hint, limit: int = 40) -> str:
    """Letters, digits and underscores from `hint` (at most `limit`), never empty."""
    base = re.sub(r"[^A-Za-z0-9_]", "_", str(hint)[: 4 * limit]).strip("_")[:limit]
    return base or "c"


# What a rendered value of a C template may never contain: quotes, backslashes, `?` (trigraphs),
# `#` and `%` (directives, also as the digraph %:), comment openers/closers, line comments, and
# anything outside printable ASCII except the newlines of array initializers.
_UNSAFE_FRAGMENT = re.compile(r"[\"'\\?#%]|/\*|\*/|//|[^\x20-\x7e\n]")


def check_c_fragment(text: str) -> str:
    """`text` unchanged if it cannot alter the C around it, else ValueError."""
    m = _UNSAFE_FRAGMENT.search(text)
    if m is not None:
        raise ValueError(
            f"unsafe text {one_line(m.group(0))!s} at {m.start()} in a generated C value {one_line(text, 60)!r}"
        )
    return text
