"""size: read a firmware ELF (pyelftools) and split flash and RAM by what uses them.

flash = every byte the image programs (the file size of the PT_LOAD segments:
text + rodata + the .data image), RAM = the memory size of the writable
PT_LOAD segments (.data + .bss + stack + heap + .noinit). Symbols split them:

  flash: weights (the model's constant arrays, mmw_*), kernels (functions and
         tables of firmware/kernels), model (the generated code, kernel
         parameter structs mmp_* and info tables), runtime (the rest: startup,
         drivers, protocol, libc, literals, padding)
  RAM:   arena (mm_arena), stack (.stack), heap (.heap), static (the rest)

Each split adds up exactly to its total. With a board, every memory region's
use (from the first to the last byte placed in it, as the linker counts) and
any overflow are reported too.
"""
from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

from .. import ROOT, MotError

KERNEL_DIR = ROOT / "firmware" / "kernels"
PF_W = 0x2
SHF_WRITE = 0x1
SHF_ALLOC = 0x2


@lru_cache(maxsize=1)
def kernel_symbols() -> tuple[frozenset, frozenset]:
    """(global function names defined in firmware/kernels/*.c, the kernel source file names)."""
    names, files = set(), set()
    pat = re.compile(r"^(?!static\b)[A-Za-z_][\w \t\*]*?\b(mm_\w+)\s*\(")
    for p in KERNEL_DIR.glob("*.c"):
        files.add(p.name)
        for line in p.read_text(errors="replace").splitlines():
            m = pat.match(line)
            if m and not line.rstrip().endswith(";"):
                names.add(m.group(1))
    return frozenset(names), frozenset(files)


def _category(name: str, local_file: str | None) -> str:
    kfuncs, kfiles = kernel_symbols()
    if name.startswith("mmw_"):
        return "weights"
    if name == "mm_arena":
        return "arena"
    if name in kfuncs or (local_file is not None and local_file in kfiles):
        return "kernels"
    if name.startswith(("mmp_", "model_")) or local_file == "model.c":
        return "model"
    return "runtime"


def size_report(elf_path, board=None) -> dict:
    """Flash and RAM of a firmware ELF, split into weights / kernels / model / runtime and
    arena / stack / heap / static; with `board` (a name or Board), per-region use and overflow."""
    from elftools.common.exceptions import ELFError
    from elftools.elf.elffile import ELFFile

    elf_path = Path(elf_path)
    if not elf_path.is_file():
        raise MotError(f"no such ELF file: {elf_path}")
    if board is None:
        board = _board_beside(elf_path)
    try:
        with open(elf_path, "rb") as f:
            elf = ELFFile(f)
            if elf["e_machine"] != "EM_ARM":
                raise MotError(f"{elf_path} is not an Arm ELF ({elf['e_machine']})")
            segs = [(s["p_vaddr"], s["p_paddr"], s["p_filesz"], s["p_memsz"], s["p_flags"])
                    for s in elf.iter_segments() if s["p_type"] == "PT_LOAD" and s["p_memsz"] > 0]
            sections = {}
            for i, s in enumerate(elf.iter_sections()):
                if s["sh_flags"] & SHF_ALLOC and s["sh_size"] > 0:
                    sections[i] = (s.name, s["sh_type"], s["sh_flags"], s["sh_addr"], s["sh_size"])
            syms = []
            symtab = elf.get_section_by_name(".symtab")
            if symtab is not None:
                cur_file = None
                for sym in symtab.iter_symbols():
                    t = sym["st_info"]["type"]
                    if t == "STT_FILE":
                        cur_file = Path(sym.name).name
                        continue
                    if t not in ("STT_FUNC", "STT_OBJECT") or sym["st_size"] == 0:
                        continue
                    shndx = sym["st_shndx"]
                    if not isinstance(shndx, int) or shndx not in sections:
                        continue
                    local = sym["st_info"]["bind"] == "STB_LOCAL"
                    syms.append((sym.name, shndx, sym["st_value"] & ~1 if t == "STT_FUNC" else sym["st_value"],
                                 sym["st_size"], cur_file if local else None))
    except ELFError as e:
        raise MotError(f"{elf_path}: not a readable ELF file ({e})") from None

    flash_bytes = sum(filesz for _, _, filesz, _, _ in segs)
    ram_bytes = sum(memsz for _, _, _, memsz, flags in segs if flags & PF_W)

    flash = {"weights": 0, "kernels": 0, "model": 0}
    ram = {"arena": 0, "stack": 0, "heap": 0}
    symbols = []
    seen = set()
    for name, shndx, addr, size, local_file in syms:
        if (shndx, addr) in seen:          # aliases (weak vectors) count once
            continue
        seen.add((shndx, addr))
        sname, stype, sflags, _, _ = sections[shndx]
        cat = _category(name, local_file)
        in_flash = stype != "SHT_NOBITS"
        in_ram = bool(sflags & SHF_WRITE)
        if in_flash and cat in flash:
            flash[cat] += size
        if in_ram and cat == "arena":
            ram["arena"] += size
        symbols.append({"name": name, "bytes": size, "category": cat, "section": sname})
    for sname, _, _, _, size in sections.values():
        if sname == ".stack":
            ram["stack"] += size
        elif sname == ".heap":
            ram["heap"] += size
    flash["runtime"] = flash_bytes - sum(flash.values())
    ram["static"] = ram_bytes - sum(ram.values())
    if flash["runtime"] < 0 or ram["static"] < 0:   # symbols overlapping: should not happen
        raise MotError(f"{elf_path}: symbol sizes exceed the segments; cannot split")

    symbols.sort(key=lambda s: -s["bytes"])
    rep = {
        "elf": str(elf_path),
        "flash_bytes": flash_bytes,
        "ram_bytes": ram_bytes,
        "flash": flash,
        "ram": ram,
        "sections": {name: size for name, _, _, _, size in sections.values()},
        "top_symbols": symbols[:20],
    }
    if board is not None:
        from .boards import load_board
        board = load_board(board)
        rep["board"] = board.name
        rep["regions"] = region_usage(segs, board)
    return rep


def _board_beside(elf_path: Path):
    """The board of a `mcu-mot build` output directory (its build.json), if this ELF is one."""
    import json
    cfg = elf_path.parent / "build.json"
    try:
        name = json.loads(cfg.read_text()).get("board")
    except (OSError, ValueError):
        return None
    from .boards import board_names
    return name if name in board_names() else None


def region_usage(segs, board) -> dict:
    """Per memory region: origin, length, used (first to last byte placed, as the linker
    counts), free, overflow (bytes past the end, 0 if it fits)."""
    ends: dict[str, int] = {}
    for vaddr, paddr, filesz, memsz, flags in segs:
        ranges = []
        if filesz:
            ranges.append((paddr, filesz))           # bytes programmed (load address)
        if flags & PF_W or vaddr != paddr:
            ranges.append((vaddr, memsz))            # bytes occupied at run time
        elif not filesz:
            ranges.append((vaddr, memsz))
        for start, size in ranges:
            r = board.region_of(start)
            if r is not None:
                ends[r.name] = max(ends.get(r.name, r.origin), start + size)
    out = {}
    for r in board.memory:
        used = ends.get(r.name, r.origin) - r.origin
        out[r.name] = {"use": r.use, "origin": r.origin, "length": r.length, "used": used,
                       "free": max(0, r.length - used), "overflow": max(0, used - r.length)}
    return out


def overflows(rep: dict) -> list[tuple[str, dict]]:
    return [(name, r) for name, r in rep.get("regions", {}).items() if r["overflow"] > 0]


def fit_message(rep: dict, model: str = "model") -> str | None:
    """One line naming each overflowing region and by how much, or None if everything fits."""
    parts = []
    for name, r in overflows(rep):
        if r["use"] == "ram":
            f = rep["ram"]
            detail = (f"arena {f['arena']} + stack {f['stack']} + heap {f['heap']} + static {f['static']} bytes")
            parts.append(f"RAM region '{name}' ({r['length']} bytes) overflows by {r['overflow']} bytes ({detail})")
        else:
            f = rep["flash"]
            detail = (f"weights {f['weights']} + kernels {f['kernels']} + model {f['model']} + "
                      f"runtime {f['runtime']} bytes")
            parts.append(f"flash region '{name}' ({r['length']} bytes) overflows by {r['overflow']} bytes ({detail})")
    if not parts:
        return None
    return f"{model} does not fit {rep.get('board', 'the board')}: " + "; ".join(parts)


def print_size_report(rep: dict, console=None) -> None:
    """A rich table of the flash and RAM split (and the board's regions when known)."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()

    def pct(n, total):
        return f"{100.0 * n / total:5.1f} %" if total else "-"

    t = Table(title=f"{Path(rep['elf']).name}" + (f" on {rep['board']}" if rep.get("board") else ""))
    t.add_column("memory")
    t.add_column("part")
    t.add_column("bytes", justify="right")
    t.add_column("share", justify="right")
    for part in ("weights", "kernels", "model", "runtime"):
        t.add_row("flash", part, f"{rep['flash'][part]:,}", pct(rep["flash"][part], rep["flash_bytes"]))
    t.add_row("flash", "[b]total[/b]", f"[b]{rep['flash_bytes']:,}[/b]", "", end_section=True)
    for part in ("arena", "stack", "heap", "static"):
        t.add_row("RAM", part, f"{rep['ram'][part]:,}", pct(rep["ram"][part], rep["ram_bytes"]))
    t.add_row("RAM", "[b]total[/b]", f"[b]{rep['ram_bytes']:,}[/b]", "")
    console.print(t)
    if rep.get("regions"):
        r = Table(title="memory regions")
        for c in ("region", "use", "origin", "size", "used", "free", "fill"):
            r.add_column(c, justify="left" if c in ("region", "use") else "right")
        for name, g in rep["regions"].items():
            fill = pct(g["used"], g["length"])
            if g["overflow"]:
                fill = f"[red]overflow {g['overflow']:,}[/red]"
            r.add_row(name, g["use"], f"0x{g['origin']:08x}", f"{g['length']:,}", f"{g['used']:,}",
                      f"{g['free']:,}", fill)
        console.print(r)
