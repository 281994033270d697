"""The SCons side of `mcu-mot build`: turns a build configuration (DIR/build.json, written by
mcu_mot.fwbuild.firmware.prepare) into SCons nodes. Used by the repository's SConstruct and by a
user's own SConstruct:

    from mcu_mot.fwbuild.sconstools import firmware
    env = Environment()
    elf = firmware(env, "model.tflite", board="qemu-mps2-an386", build_dir="build/fw")

Only imported inside SCons (it imports SCons.Script).
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import os
import shlex
import signal
import subprocess
import sys
from pathlib import Path

from mcu_mot.fwbuild.firmware import prepare

# ---------------------------------------------------------------- running commands without a shell
# SCons' POSIX spawn joins the arguments with spaces and runs them through `sh -c`, quoting only
# arguments that contain whitespace: a build folder or source path holding `;`, `$(...)`, `>` or a
# quote would run as shell code. Every command of a firmware build is therefore spawned directly
# (argv list, no shell), so any character in a path is just a character.
#
# SCons hands SPAWN its arguments already escaped: "literal" strings through env['ESCAPE'], other
# strings containing whitespace wrapped in one pair of double quotes (SCons.Subst.quote_spaces).
# ESCAPE below marks literal strings instead of quoting them, and _argv() undoes exactly those two
# transformations, giving back the argument vector SCons substituted.
_LITERAL = "\x00mm-literal\x00"


def _escape(arg) -> str:
    return _LITERAL + str(arg)


def _argv(args) -> list[str]:
    out = []
    for a in args:
        a = str(a)
        if a.startswith(_LITERAL):
            a = a[len(_LITERAL) :]
        elif (" " in a or "\t" in a) and len(a) >= 2 and a[0] == a[-1] == '"':
            a = a[1:-1]
        out.append(a)
    return out


def _die_with_parent(parent: int):
    """preexec_fn: this compiler/linker dies with SCons (Linux PR_SET_PDEATHSIG), so a killed
    build leaves nothing running that could still write an object file or the ELF."""

    def setup():
        if sys.platform.startswith("linux"):
            try:
                ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
            except Exception:
                pass
            if os.getppid() != parent:  # SCons died before prctl took effect
                os._exit(127)

    return setup


def _run(argv, env, stdout=None, stderr=None) -> int:
    try:
        proc = subprocess.Popen(
            argv, env=env, close_fds=True, stdout=stdout, stderr=stderr, preexec_fn=_die_with_parent(os.getpid())
        )
    except OSError as e:
        sys.stderr.write(f"scons: {argv[0]}: {e.strerror}\n")
        return 127
    return proc.wait()


def spawn(sh, escape, cmd, args, env) -> int:
    """SCons SPAWN: run the command's argument vector directly, never through a shell."""
    return _run(_argv(args), env)


def pspawn(sh, escape, cmd, args, env, stdout, stderr) -> int:
    """SCons PSPAWN (the piped variant SCons uses for configure checks)."""
    return _run(_argv(args), env, stdout, stderr)


def no_shell(env) -> None:
    """Make `env` spawn every command without a shell (see above)."""
    env["SPAWN"] = spawn
    env["PSPAWN"] = pspawn
    env["ESCAPE"] = _escape


def compile_argv(cfg: dict, source: dict) -> list[str]:
    """The compiler's argument vector for one source of a prepared build, file names excluded:
    what SCons' CCCOM / ASPPCOM would run, as a list (nothing is ever re-parsed)."""
    defs = [f"-D{k}" if v is None else f"-D{k}={v}" for k, v in dict(cfg["defines"]).items()]
    incs = [f"-I{d}" for d in cfg["cpppath"]]
    if str(source["src"]).endswith((".S", ".s", ".sx")):
        return [cfg["cc"], *cfg["target_flags"], "-x", "assembler-with-cpp", *defs, *incs]
    return [cfg["cc"], *cfg["cflags"], *cfg["ccflags"], *source.get("ccflags", []), *defs, *incs]


def link_argv(cfg: dict) -> list[str]:
    return [cfg["cc"], *cfg["linkflags"]]


def _signature(argv) -> str:
    return hashlib.sha256(json.dumps(list(argv)).encode()).hexdigest()


def _compile_action(target, source, env):
    argv = list(env["MM_ARGV"]) + ["-c", "-o", target[0].get_abspath(), source[0].get_abspath()]
    Path(target[0].get_abspath()).parent.mkdir(parents=True, exist_ok=True)
    return _run(argv, env["ENV"])


def _link_action(target, source, env):
    argv = (
        list(env["MM_ARGV"][:1])
        + ["-o", target[0].get_abspath()]
        + list(env["MM_ARGV"][1:])
        + [s.get_abspath() for s in source]
        + [f"-l{lib}" for lib in env["MM_LIBS"]]
    )
    Path(target[0].get_abspath()).parent.mkdir(parents=True, exist_ok=True)
    return _run(argv, env["ENV"])


def firmware_from_config(env, cfg: dict):
    """Object and Program nodes for a prepared build; returns the ELF node.

    Commands are built as argument vectors from the configuration and run without a shell
    (see spawn above): SCons substitutes neither `$` nor quotes in them, and file names are
    nodes made directly from the paths, so any character a path may hold stays that character."""
    import SCons.Action  # noqa: PLC0415  (SCons modules exist only inside an SCons run)
    import SCons.Scanner.C  # noqa: PLC0415  (SCons modules exist only inside an SCons run)

    env = env.Clone()
    no_shell(env)
    env["ENV"]["PATH"] = os.environ.get("PATH", env["ENV"].get("PATH", ""))
    env.Replace(CPPPATH=[env.fs.Dir(d) for d in cfg["cpppath"]])  # for the header scanner
    quiet = cfg.get("quiet", True) and not os.environ.get("MM_VERBOSE")

    def show(what):
        def text(target, source, env):
            if not quiet:
                return " ".join(shlex.quote(a) for a in env["MM_ARGV"]) + f"  # {what} {target[0]}"
            return f"CC {source[0]}" if what != "LINK" else f"LINK {target[0].name}"

        return text

    cc = SCons.Action.Action(_compile_action, show("CC"), varlist=["MM_SIG"])
    link = SCons.Action.Action(_link_action, show("LINK"), varlist=["MM_SIG"])
    scanner = SCons.Scanner.C.CScanner()
    objs = []
    for s in cfg["sources"]:
        argv = compile_argv(cfg, s)
        objs += env.Command(
            env.fs.File(s["obj"]),
            env.fs.File(s["src"]),
            cc,
            source_scanner=scanner,
            MM_ARGV=argv,
            MM_SIG=_signature(argv),
        )
    argv = link_argv(cfg)
    elf = env.Command(
        env.fs.File(cfg["elf"]),
        objs,
        link,
        MM_ARGV=argv,
        MM_LIBS=list(cfg["libs"]),
        MM_SIG=_signature(argv + ["-l" + x for x in cfg["libs"]]),
    )
    env.Depends(elf, env.fs.File(cfg["ldscript"]))
    env.SideEffect(env.fs.File(cfg["map"]), elf)
    env.Default(elf)
    return elf


def firmware(env, model, board: str, build_dir, backend: str = "portable", **kwargs):
    """Generate the model's C, the startup code and the linker script for `board` into
    `build_dir` (files rewritten only when their content changes) and return the ELF node.
    kwargs: extra_sources, omit, defines, profile_hooks (see mcu_mot.fwbuild.firmware.prepare)."""
    cfg = prepare(model, board, Path(str(build_dir)), backend=backend, **kwargs)
    return firmware_from_config(env, cfg)


def firmware_from_file(env, config_path):
    return firmware_from_config(env, json.loads(Path(str(config_path)).read_text()))
