"""Every shipped board's resolved data as JSON (fields, macros, flags, QEMU command line, ISA,
reference board), to check that rewriting board files (e.g. moving shared parts into an
`extends` base) changes no resolved value:

    PYTHONPATH=. python scripts/board_snapshot.py > before.json   # on the old files
    PYTHONPATH=. python scripts/board_snapshot.py > after.json    # on the new ones
    diff before.json after.json
"""

import dataclasses
import json
import sys

from mcu_mot.boards import board_names, load_board


def snapshot() -> dict:
    out = {}
    for name in board_names():
        b = load_board(name)
        d = {f.name: getattr(b, f.name) for f in dataclasses.fields(b) if f.name != "path"}
        d["memory"] = [dataclasses.asdict(r) for r in b.memory]
        d["summary"] = b.summary()
        d["isa"], d["reference_board"] = b.isa, b.reference_board
        if not b.is_host:
            d["defines"], d["cflags"], d["timer_unit"] = b.defines(), b.cflags(), b.timer_unit
        if b.emulated:
            d["qemu_argv"] = b.qemu_argv("firmware.elf", "tcp:127.0.0.1:1,server=on,wait=off")
        out[name] = d
    return out


if __name__ == "__main__":
    json.dump(snapshot(), sys.stdout, indent=1, sort_keys=True, default=repr)
    sys.stdout.write("\n")
