"""Which CMSIS-NN source files a set of called functions needs.

The library is not compiled as a whole: starting from the functions the
generated model.c calls, follow the identifiers each source file (and each
inline function of the public/internal headers) mentions to the files that
define them, until nothing new turns up. The index is built from the text of
the checkout (comments stripped), once per checkout and process. Files that
are only reached through code a target does not compile (an MVE-only branch on
a Cortex-M4) are compiled anyway; they cost build time, never flash
(-ffunction-sections, --gc-sections).
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

from mcu_mot.errors import MotError

_COMMENTS = re.compile(r"/\*.*?\*/|//[^\n]*", re.DOTALL)
_IDENT = re.compile(r"\b[A-Za-z_]\w*\b")
# a function definition or a global const table starting in column 0 (CMSIS-NN style)
_DEF_FN = re.compile(
    r"^(?!static\b)(?!typedef\b)[A-Za-z_][\w \t\*]*?\b([A-Za-z_]\w*)\s*\(([^;{]*)\)\s*\{", re.MULTILINE
)
_DEF_TABLE = re.compile(r"^(?:const\s+)?[A-Za-z_]\w*\s+([A-Za-z_]\w*)\s*\[[^\]]*\]\s*=", re.MULTILINE)
_INLINE = re.compile(r"__STATIC_(?:FORCE)?INLINE\b[^;{(]*?\b([A-Za-z_]\w*)\s*\([^;{]*\)\s*\{")
_KEYWORDS = {"if", "for", "while", "switch", "return", "sizeof"}


def _strip(text: str) -> str:
    return _COMMENTS.sub(" ", text)


def _body(text: str, brace: int) -> str:
    """The text from the `{` at `brace` to its matching `}`."""
    depth = 0
    for i in range(brace, len(text)):
        c = text[i]
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return text[brace : i + 1]
    return text[brace:]


@functools.lru_cache(maxsize=4)
def _index(root: str):
    """(definer: symbol -> file, refs: file -> identifiers, inline: header function -> identifiers)."""
    base = Path(root)
    definer: dict[str, Path] = {}
    refs: dict[Path, frozenset] = {}
    for path in sorted((base / "Source").rglob("*.c")):
        text = _strip(path.read_text(errors="replace"))
        for m in _DEF_FN.finditer(text):
            if m.group(1) not in _KEYWORDS:
                definer.setdefault(m.group(1), path)
        for m in _DEF_TABLE.finditer(text):
            definer.setdefault(m.group(1), path)
        refs[path] = frozenset(_IDENT.findall(text))
    inline: dict[str, frozenset] = {}
    for path in sorted((base / "Include").rglob("*.h")):
        text = _strip(path.read_text(errors="replace"))
        for m in _INLINE.finditer(text):
            inline.setdefault(m.group(1), frozenset(_IDENT.findall(_body(text, m.end() - 1))))
    return definer, refs, inline


def sources_for(root, functions) -> list[Path]:
    """The Source/**/*.c files that define `functions` and everything they reach."""
    definer, refs, inline = _index(str(Path(root).resolve()))
    missing = [f for f in functions if f not in definer]
    if missing:
        raise MotError(
            f"CMSIS-NN at {root} does not define {', '.join(sorted(missing))} "
            "(an older or newer CMSIS-NN than this mcu_mot supports?)"
        )
    files: set[Path] = set()
    seen: set[str] = set()
    todo = list(functions)
    while todo:
        sym = todo.pop()
        if sym in seen:
            continue
        seen.add(sym)
        if sym in inline:
            todo.extend(s for s in inline[sym] if s not in seen)
        path = definer.get(sym)
        if path is not None and path not in files:
            files.add(path)
            todo.extend(s for s in refs[path] if s not in seen)
    return sorted(files)
