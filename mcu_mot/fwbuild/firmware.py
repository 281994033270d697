"""build: model.tflite + board -> DIR/firmware.elf and DIR/report.json, with SCons.

`prepare()` writes the generated sources (model.c/h, startup.c, linker.ld, boot2 where the
board needs one) and DIR/build.json, each only when its content changed; `build()` then runs
SCons (`python -m SCons -f SConstruct MM_CONFIG=DIR/build.json`), which decides what to
recompile from content signatures: a second build with no change runs no compiler and no
linker. A model that does not fit the board's memories fails with a MotError naming the
region and the overflow in bytes, measured on the ELF against the board file.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined

from mcu_mot.boards import Board, load_board
from mcu_mot.codegen.compile import generate
from mcu_mot.errors import MotError
from mcu_mot.fileio import atomic_write
from mcu_mot.fwbuild.boot2 import boot2_source
from mcu_mot.fwbuild.size import fit_message, size_report
from mcu_mot.resources import KERNELS, RUNTIME, SCONSTRUCT, TEMPLATES
from mcu_mot.safedirs import ensure_build_dir
from mcu_mot.version import __version__

RUNTIME_DIR = RUNTIME
KERNEL_DIR = KERNELS
TEMPLATE_DIR = TEMPLATES
HOOKS = RUNTIME_DIR / "mm_profile_hooks.h"
TOOLCHAIN = "arm-none-eabi-gcc"

COMMON_CFLAGS = [
    "-O2",
    "-g",
    "-Wall",
    "-ffunction-sections",
    "-fdata-sections",
    "-ffp-contract=off",
    "-fwrapv",
    "-fno-common",
]
C_STD = ["-std=gnu11", "-Wtrigraphs"]
# mcu_mot's own sources (model.c, startup.c, kernels, runtime) build warning-free; CMSIS-NN's
# files and the user's extra sources keep COMMON_CFLAGS alone
OWN_CFLAGS = ["-Wextra", "-Werror"]


# ---------------------------------------------------------------- helpers


def find_toolchain() -> str:
    """Absolute path of arm-none-eabi-gcc, or a one-line MotError naming the Debian packages."""
    cc = shutil.which(TOOLCHAIN)
    if cc is None:
        raise MotError(
            f"{TOOLCHAIN} not found on PATH: install the Debian packages gcc-arm-none-eabi and libnewlib-arm-none-eabi"
        )
    return cc


def _check_newlib(cc: str) -> None:
    out = subprocess.run([cc, "-print-file-name=nano.specs"], capture_output=True, text=True).stdout.strip()
    if not os.path.isabs(out):
        raise MotError(f"{cc} has no newlib-nano (nano.specs): install the Debian package libnewlib-arm-none-eabi")


def write_if_changed(path: Path, data) -> bool:
    """Write text/bytes atomically unless the file already holds exactly that; True if written."""
    data = data.encode() if isinstance(data, str) else data
    try:
        if path.read_bytes() == data:
            return False
    except OSError:
        pass
    atomic_write(path, data)
    return True


def _env():
    return Environment(
        loader=FileSystemLoader(str(TEMPLATE_DIR)), undefined=StrictUndefined, keep_trailing_newline=True
    )


V8M = ("cortex-m33", "cortex-m55")
V6M = ("cortex-m0plus",)


def render_startup(board: Board) -> str:
    v6 = board.cpu in V6M
    v8 = board.cpu in V8M
    core = [
        "NMI_Handler",
        "HardFault_Handler",
        None if v6 else "MemManage_Handler",
        None if v6 else "BusFault_Handler",
        None if v6 else "UsageFault_Handler",
        "SecureFault_Handler" if v8 else None,
        None,
        None,
        None,
        "SVC_Handler",
        None if v6 else "DebugMon_Handler",
        None,
        "PendSV_Handler",
        "SysTick_Handler",
    ]
    handlers = [h for h in core if h]
    table = 4 * (16 + board.irqs)
    align = max(128, 1 << (table - 1).bit_length())
    return (
        _env()
        .get_template("startup.c.j2")
        .render(board=board, version=__version__, core_vectors=core, handlers=handlers, vector_align=align, v8m=v8)
    )


def render_linker(board: Board) -> str:
    return (
        _env()
        .get_template("linker.ld.j2")
        .render(
            board=board, version=__version__, code=board.code_region, ram=board.ram_region, weights=board.weights_region
        )
    )


def runtime_sources(board: Board, omit=()) -> list[Path]:
    """firmware/runtime/*.c: everything common, plus this board's UART and timer drivers."""
    uart = "mm_uart_" + board.uart["kind"].replace("-", "_") + ".c"
    timer = "mm_timer_" + board.timer["kind"] + ".c"
    out = []
    for p in sorted(RUNTIME_DIR.glob("*.c")):
        if p.name in omit:
            continue
        if p.name.startswith(("mm_uart_", "mm_timer_")) and p.name not in (uart, timer):
            continue
        out.append(p)
    for need in (uart, timer):
        if not (RUNTIME_DIR / need).is_file():
            raise MotError(f"board '{board.name}': no driver firmware/runtime/{need}")
    return out


def _board_for_build(board) -> Board:
    b = load_board(board)
    if b.is_host:
        raise MotError("board 'host' is the host simulation: use `mcu-mot simulate` (no firmware to build)")
    return b


# ---------------------------------------------------------------- prepare


def prepare(
    model_path,
    board,
    out_dir,
    backend: str = "portable",
    extra_sources=(),
    omit=(),
    defines=None,
    profile_hooks=None,
    cc: str | None = None,
    compiled=None,
    stage: bool = False,
) -> dict:
    """Generate every source of the firmware into OUT/gen and return the SCons build
    configuration (also written to OUT/build.json). Files change only when their content does.

    extra_sources: more .c/.S files to compile and link (e.g. your own main or protocol)
    omit: names of firmware/runtime/*.c files to leave out (e.g. "main.c", "mm_protocol.c")
    defines: extra preprocessor macros {name: value}
    profile_hooks: compile model.c with -include mm_profile_hooks.h (default: when it exists)
    stage: link to OUT/obj/firmware.elf (what `build` does: it publishes the ELF together with
           report.json) instead of OUT/firmware.elf (a user's own SConstruct)
    """
    b = _board_for_build(board)
    out = Path(out_dir).resolve()
    gen = out / "gen"
    cc = cc or find_toolchain()
    model_path = Path(model_path)
    if not model_path.is_file():
        raise MotError(f"no such model file: {model_path}")
    # the Board itself decides the ISA: a board file given by path is not found again by its name
    compiled = compiled or generate(model_path, backend, b.name, isa=b.isa)

    gen.mkdir(parents=True, exist_ok=True)
    for name, text in compiled.files.items():
        write_if_changed(gen / name, text)
    write_if_changed(gen / "startup.c", render_startup(b))
    ldscript = gen / "linker.ld"
    write_if_changed(ldscript, render_linker(b))

    target = b.cflags()
    if profile_hooks is None:
        profile_hooks = HOOKS.is_file()
    model_flags = ["-include", str(HOOKS)] if profile_hooks else []
    sources = [
        {"src": str(gen / "model.c"), "obj": str(out / "obj" / "gen" / "model.o"), "ccflags": model_flags + OWN_CFLAGS},
        {"src": str(gen / "startup.c"), "obj": str(out / "obj" / "gen" / "startup.o"), "ccflags": OWN_CFLAGS},
    ]
    if b.boot2:
        write_if_changed(gen / "boot2.S", boot2_source(cc, b, out / "obj" / "boot2"))
        sources.append({"src": str(gen / "boot2.S"), "obj": str(out / "obj" / "gen" / "boot2.o")})
    for p in sorted(set(compiled.kernel_sources)):
        sources.append({"src": str(p), "obj": str(out / "obj" / "kernels" / (p.stem + ".o")), "ccflags": OWN_CFLAGS})
    for p in compiled.extra_sources:  # CMSIS-NN files (cmsis-nn/auto backends): only those the calls reach
        rel = Path(p).relative_to(compiled.extra_root) if compiled.extra_root else Path(Path(p).name)
        sources.append({"src": str(p), "obj": str(out / "obj" / "cmsis-nn" / rel.with_suffix(".o"))})
    for p in runtime_sources(b, omit):
        sources.append({"src": str(p), "obj": str(out / "obj" / "runtime" / (p.stem + ".o")), "ccflags": OWN_CFLAGS})
    for p in extra_sources:
        p = Path(p).resolve()
        if not p.is_file():
            raise MotError(f"no such source file: {p}")
        sources.append({"src": str(p), "obj": str(out / "obj" / "extra" / (p.stem + ".o"))})
    objs = [s["obj"] for s in sources]
    if len(set(objs)) != len(objs):
        raise MotError("two sources would compile to the same object name; rename one of the extra sources")

    defs = b.defines()
    defs.update({k: str(v) for k, v in (defines or {}).items()})
    elf = (out / "obj" if stage else out) / "firmware.elf"
    link_map = elf.with_suffix(".map")
    cfg = {
        "version": __version__,
        "board": b.name,
        "board_file": str(b.path),
        "model": str(model_path.resolve()),
        "cc": cc,
        "target_flags": target,
        "ccflags": target + COMMON_CFLAGS,
        "cflags": C_STD,
        "defines": defs,
        "cpppath": [str(gen), str(KERNEL_DIR), str(RUNTIME_DIR)]
        + sorted({str(Path(h).parent) for h in compiled.kernel_headers} - {str(KERNEL_DIR)})
        + [str(d) for d in compiled.include_dirs],
        "linkflags": target
        + [
            "-T",
            str(ldscript),
            "-nostartfiles",
            "--specs=nano.specs",
            "--specs=nosys.specs",
            "-Wl,--gc-sections",
            "-Xlinker",
            f"-Map={link_map}",
            "-Wl,--no-warn-rwx-segments",
        ],
        "libs": ["m"],
        "sources": sources,
        "ldscript": str(ldscript),
        "elf": str(elf),
        "map": str(link_map),
    }
    write_if_changed(out / "build.json", json.dumps(cfg, indent=1) + "\n")
    cfg["_compiled"] = compiled
    return cfg


# ---------------------------------------------------------------- build


def build(
    model_path,
    board,
    out_dir,
    backend: str = "portable",
    jobs: int = 2,
    progress=None,
    extra_sources=(),
    omit=(),
    defines=None,
    profile_hooks=None,
    compiled=None,
) -> dict:
    """Build DIR/firmware.elf for `board` and write DIR/report.json; return the report.

    compiled: a CompiledModel generated already (the measured backend choice of
    mcu_mot.flows.deploy); by default the model is generated here for `backend`.

    The report is the compile report plus flash_bytes, ram_bytes, flash {weights, kernels,
    model, runtime}, ram {arena, stack, heap, static}, regions (per memory region use), elf,
    elf_sha256, and actions (what SCons ran: [] for an up-to-date build).
    progress(done, total, text) is called as steps complete (None: silent).

    SCons links into OUT/obj/; firmware.elf and report.json are then published together
    (_publish), so a build killed at any moment leaves either the previous pair, or a new ELF
    with no report.json (nothing `flash`/`profile` would use), never an ELF beside the report
    of another model. SCons runs in its own process group and dies with this process."""
    b = _board_for_build(board)
    cc = find_toolchain()
    _check_newlib(cc)
    out = Path(out_dir).resolve()
    ensure_build_dir(out)
    out.mkdir(parents=True, exist_ok=True)
    say = progress or (lambda *a: None)
    say(0, 1, "generate C")
    cfg = prepare(
        model_path,
        b,
        out,
        backend=backend,
        extra_sources=extra_sources,
        omit=omit,
        defines=defines,
        profile_hooks=profile_hooks,
        cc=cc,
        compiled=compiled,
        stage=True,
    )
    compiled = cfg.pop("_compiled")
    total = len(cfg["sources"]) + 1
    _forget_interrupted_build(out)
    marker = out / INCOMPLETE
    atomic_write(marker, b"a build is running or was interrupted: the next one starts clean\n")
    actions = _run_scons(out, cfg, jobs, total, say)

    staged = Path(cfg["elf"])
    size = size_report(staged, b)
    msg = fit_message(size, Path(model_path).name)
    if msg:  # cannot happen after a successful link, but never hand out an image that does not fit
        raise MotError(msg)
    elf = out / "firmware.elf"
    report = dict(compiled.report)
    report.update(
        {
            "board": b.name,
            "elf": str(elf),
            "elf_sha256": hashlib.sha256(staged.read_bytes()).hexdigest(),
            "flash_bytes": size["flash_bytes"],
            "ram_bytes": size["ram_bytes"],
            "flash": size["flash"],
            "ram": size["ram"],
            "regions": size["regions"],
            "timer_unit": b.timer_unit,
            "actions": actions,
        }
    )
    stable = {k: v for k, v in report.items() if k != "actions"}
    _publish(out, staged, json.dumps(stable, indent=2) + "\n")
    marker.unlink(missing_ok=True)
    say(total, total, "done")
    return report


#: present in OUT while SCons runs: a build killed there leaves it behind
INCOMPLETE = ".build-incomplete"


def _forget_interrupted_build(out: Path) -> None:
    """After a killed build, SCons' records (.sconsign.dblite, saved at its end) and the objects in
    OUT/obj no longer agree: an object compiled for another model may be taken as up to date and
    linked beside this model's report. Such a folder starts from a clean OUT/obj."""
    if not (out / INCOMPLETE).exists():
        return
    shutil.rmtree(out / "obj", ignore_errors=True)
    for p in out.glob(".sconsign*"):
        p.unlink(missing_ok=True)


def _publish(out: Path, staged: Path, report_text: str) -> None:
    """Put the staged ELF (and its map) in place as OUT/firmware.elf next to OUT/report.json.

    Each step is one atomic rename or unlink, in an order that keeps the pair consistent at
    every instant: when the ELF changes, report.json is removed first (from then on the folder
    holds no trusted build), the new ELF is renamed in, and the new report is renamed in last."""
    elf, report = out / "firmware.elf", out / "report.json"
    data = staged.read_bytes()
    try:
        same = elf.read_bytes() == data
    except OSError:
        same = False
    if not same:
        report.unlink(missing_ok=True)
        link_map = staged.with_suffix(".map")
        if link_map.is_file():
            atomic_write(out / "firmware.map", link_map.read_bytes())
        atomic_write(elf, data)
    write_if_changed(report, report_text)


_ACTION = re.compile(r"^(CC|AS|LINK) (.+)$")


def _run_scons(out: Path, cfg: dict, jobs: int, total: int, say) -> list[str]:
    cmd = [
        sys.executable,
        "-m",
        "SCons",
        "-Q",
        "--no-site-dir",
        "-f",
        str(SCONSTRUCT),
        f"-j{max(1, int(jobs))}",
        f"MM_CONFIG={out / 'build.json'}",
    ]
    # the SConstruct imports the mcu_mot it ships with (a checkout's or the installed package): no PYTHONPATH
    env = dict(os.environ)
    actions, lines = [], []
    # SCons gets its own process group (its compilers and linker inherit it) and a parent-death
    # signal: if this process is killed, interrupted or fails, nothing of the build keeps running
    # (a surviving SCons would go on to link a new firmware.elf beside an old report.json).
    proc = subprocess.Popen(
        cmd,
        cwd=out,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        process_group=0,
        preexec_fn=_die_with_parent(os.getpid()),
    )
    done = 0
    try:
        with _kill_group_on_sigterm(proc):
            for line in proc.stdout:
                lines.append(line)
                m = _ACTION.match(line.rstrip("\n"))
                if m:
                    actions.append(line.rstrip("\n"))
                    done += 1
                    say(min(done, total - 1), total, f"{m.group(1)} {Path(m.group(2)).name}")
            rc = proc.wait()
    except BaseException:
        _kill_group(proc)
        raise
    finally:
        proc.stdout.close()
    log = "".join(lines)
    (out / "build.log").write_text(log)
    if rc != 0:
        _explain_failure(out, cfg, log)
    return actions


def _die_with_parent(parent: int):
    """preexec_fn: PR_SET_PDEATHSIG(SIGKILL) on Linux, so SCons dies with this process."""

    def setup():
        if sys.platform.startswith("linux"):
            try:
                ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)
            except Exception:
                pass
            if os.getppid() != parent:
                os._exit(127)

    return setup


def _kill_group(proc) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass


@contextlib.contextmanager
def _kill_group_on_sigterm(proc):
    """While SCons runs, SIGTERM/SIGHUP (whose default action would end this process with no
    clean-up) first kill SCons' process group, then do what they would have done."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {}

    def handler(signum, frame):
        _kill_group(proc)
        old = previous.get(signum)
        if callable(old):
            old(signum, frame)
            return
        signal.signal(signum, signal.SIG_DFL if old is None else old)
        os.kill(os.getpid(), signum)

    for sig in (signal.SIGTERM, signal.SIGHUP):
        try:
            previous[sig] = signal.signal(sig, handler)
        except (ValueError, OSError):
            pass
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old if old is not None else signal.SIG_DFL)


def _explain_failure(out: Path, cfg: dict, log: str):
    """Turn a failed SCons run into one MotError line."""
    if "will not fit in region" in log or "overflowed by" in log:
        raise MotError(_measure_overflow(out, cfg))
    for line in log.splitlines():
        if re.search(r"\berror\b|undefined reference|multiple definition", line, re.IGNORECASE) and not line.startswith(
            "scons:"
        ):
            raise MotError(f"firmware build failed: {line.strip()} (full log: {out / 'build.log'})")
    tail = [ln for ln in log.splitlines() if ln.strip()][-1:] or ["SCons failed"]
    raise MotError(f"firmware build failed: {tail[0].strip()} (full log: {out / 'build.log'})")


def _measure_overflow(out: Path, cfg: dict) -> str:
    """The link failed on a memory region: link again with --noinhibit-exec (to a separate
    file, never firmware.elf) so the ELF shows the full layout, and measure it."""
    oversize = out / "firmware.oversize.elf"
    objs = [s["obj"] for s in cfg["sources"]]
    flags = [f"-Map={oversize.with_suffix('.map')}" if f.startswith("-Map=") else f for f in cfg["linkflags"]]
    cmd = (
        [cfg["cc"], "-o", str(oversize)] + flags + ["-Wl,--noinhibit-exec"] + objs + [f"-l{lib}" for lib in cfg["libs"]]
    )
    r = subprocess.run(cmd, capture_output=True, text=True)
    m = re.search(r"undefined reference to `([^']+)'", r.stderr)
    if m or not oversize.is_file():
        found = re.findall(r"region `([^']+)' overflowed by (\d+) bytes", r.stderr)
        return "; ".join(f"region '{n}' overflows by {k} bytes" for n, k in found) or r.stderr.strip()[:300]
    rep = size_report(oversize, load_board(cfg.get("board_file") or cfg["board"]))
    msg = fit_message(rep, Path(cfg["model"]).name)
    if msg is None:
        found = re.findall(r"region `([^']+)' overflowed by (\d+) bytes", r.stderr)
        msg = f"{Path(cfg['model']).name} does not fit {cfg['board']}: " + "; ".join(
            f"region '{n}' overflows by {k} bytes" for n, k in found
        )
    return msg
