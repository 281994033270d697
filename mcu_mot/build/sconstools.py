"""The SCons side of `mcu-mot build`: turns a build configuration (DIR/build.json, written by
mcu_mot.build.firmware.prepare) into SCons nodes. Used by the repository's SConstruct and by a
user's own SConstruct:

    from mcu_mot.build.sconstools import firmware
    env = Environment()
    elf = firmware(env, "model.tflite", board="qemu-mps2-an386", build_dir="build/fw")

Only imported inside SCons (it imports SCons.Script).
"""
from __future__ import annotations

import json
import os
from pathlib import Path


def firmware_from_config(env, cfg: dict):
    """Object and Program nodes for a prepared build; returns the ELF node."""
    env = env.Clone()
    env["ENV"]["PATH"] = os.environ.get("PATH", env["ENV"].get("PATH", ""))
    env.Replace(
        CC=cfg["cc"], LINK=cfg["cc"], AS=cfg["cc"],
        CCFLAGS=list(cfg["ccflags"]),
        CFLAGS=list(cfg["cflags"]),
        ASFLAGS=list(cfg["target_flags"]) + ["-x", "assembler-with-cpp"],
        CPPDEFINES=dict(cfg["defines"]),
        CPPPATH=list(cfg["cpppath"]),
        LINKFLAGS=list(cfg["linkflags"]),
        LIBS=list(cfg["libs"]),
        OBJSUFFIX=".o", PROGSUFFIX=".elf",
    )
    if cfg.get("quiet", True) and not os.environ.get("MM_VERBOSE"):
        env.Replace(CCCOMSTR="CC $SOURCE", ASCOMSTR="AS $SOURCE", ASPPCOMSTR="AS $SOURCE",
                    LINKCOMSTR="LINK $TARGET")
    objs = []
    for s in cfg["sources"]:
        extra = s.get("ccflags", [])
        kw = {"CCFLAGS": env["CCFLAGS"] + extra} if extra else {}
        objs += env.Object(target=s["obj"], source=s["src"], **kw)
    elf = env.Program(target=cfg["elf"], source=objs)
    env.Depends(elf, cfg["ldscript"])
    env.SideEffect(cfg["map"], elf)
    env.Default(elf)
    return elf


def firmware(env, model, board: str, build_dir, backend: str = "portable", **kwargs):
    """Generate the model's C, the startup code and the linker script for `board` into
    `build_dir` (files rewritten only when their content changes) and return the ELF node.
    kwargs: extra_sources, omit, defines, profile_hooks (see mcu_mot.build.firmware.prepare)."""
    from .firmware import prepare
    cfg = prepare(model, board, Path(str(build_dir)), backend=backend, **kwargs)
    return firmware_from_config(env, cfg)


def firmware_from_file(env, config_path):
    return firmware_from_config(env, json.loads(Path(str(config_path)).read_text()))
