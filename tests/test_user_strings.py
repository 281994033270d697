"""Strings a user or a device hands us (board files, npz members, names sent by a device) are
data: they never reach generated C, a define or the terminal as markup."""

from __future__ import annotations

import io
import json
from contextlib import redirect_stdout
from pathlib import Path

import numpy as np
import pytest

from mcu_mot.boards import BOARD_DIR, load_board
from mcu_mot.device.simulator import read_inputs
from mcu_mot.errors import MotError


def _board_copy(tmp_path: Path, stem: str, text_edit=None) -> Path:
    text = (BOARD_DIR / "qemu-mps2-an386.toml").read_text()
    text = text.replace('name = "qemu-mps2-an386"', f"name = {json.dumps(stem)}", 1)
    if text_edit:
        text = text_edit(text)
    p = tmp_path / f"{stem}.toml"
    p.write_text(text)
    return p


@pytest.mark.parametrize("stem", ['my"board', "b;rm", "b$(id)", "b\\x"])
def test_board_names_that_could_break_a_define_are_refused(tmp_path, stem):
    path = _board_copy(tmp_path, stem)
    with pytest.raises(MotError, match="name must be letters"):
        load_board(str(path))


def test_ordinary_board_file_by_path_loads_and_its_define_is_a_plain_string(tmp_path):
    board = load_board(str(_board_copy(tmp_path, "my-board_2.0")))
    assert board.defines()["MM_BOARD_NAME"] == '"my-board_2.0"'


def test_memory_region_names_must_be_linker_identifiers(tmp_path):
    path = _board_copy(tmp_path, "memb", lambda t: t.replace('name = "ram"', 'name = "ram } /DISCARD/ {"', 1))
    with pytest.raises(MotError, match="linker-script identifier"):
        load_board(str(path))


def test_npz_with_an_object_member_is_one_line_not_a_pickle(tmp_path):
    p = tmp_path / "x.npz"
    np.savez(p, a=np.zeros((1, 4), np.int8), b=np.array([{"x": 1}], dtype=object))
    with pytest.raises(MotError, match="member 'b' is not a plain array"):
        read_inputs(p, 2)


def test_profile_table_prints_device_names_as_text():
    from mcu_mot.device.profile import print_profile

    result = {
        "board": "[bold]b",
        "unit": "instructions",
        "total": 100,
        "runs": 1,
        "layers": [{"index": 0, "name": "[red]evil\x1b[2J\nname", "op": "[link=x]CONV_2D", "count": 100, "macs": 10}],
    }
    buf = io.StringIO()
    with redirect_stdout(buf):
        print_profile(result)
    out = buf.getvalue()
    assert "[red]evil" in out and "[link=x]CONV_2D" in out and "[bold]b" in out
    assert "\x1b" not in out
