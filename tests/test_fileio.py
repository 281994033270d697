"""mcu_mot.fileio.load_arrays: the one loader of user .npy/.npz files (inputs, calibration
data, labels, QAT data): plain arrays only, pickles never loaded, one-line errors."""

from __future__ import annotations

import numpy as np
import pytest

from mcu_mot.errors import MotError
from mcu_mot.fileio import load_arrays


def _one_line_error(path, *needles, what="array file"):
    with pytest.raises(MotError) as e:
        load_arrays(path, what)
    msg = str(e.value)
    assert "\n" not in msg
    for n in needles:
        assert n in msg, msg
    return msg


def test_npy_and_npz(tmp_path):
    a = np.arange(12, dtype=np.int8).reshape(3, 4)
    np.save(tmp_path / "a.npy", a)
    assert np.array_equal(load_arrays(tmp_path / "a.npy"), a)
    np.savez(tmp_path / "z.npz", second=a * 2, first=a)
    got = load_arrays(tmp_path / "z.npz")
    assert isinstance(got, dict) and list(got) == ["second", "first"]  # file order
    assert np.array_equal(got["first"], a) and np.array_equal(got["second"], a * 2)


def test_bad_files_are_one_line_errors(tmp_path):
    _one_line_error(tmp_path / "missing.npy", "calibration data not found", what="calibration data")
    (tmp_path / "text.npy").write_text("hello\nworld\n")
    _one_line_error(tmp_path / "text.npy", "not a readable .npy/.npz file")
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    _one_line_error(tmp_path / "obj.npy", "not a readable .npy/.npz file", "allow_pickle")
    np.savez(tmp_path / "obj.npz", ok=np.zeros(2), bad=np.array([print], dtype=object))
    _one_line_error(tmp_path / "obj.npz", "member 'bad' is not a plain array")
    (tmp_path / "cut.npz").write_bytes((tmp_path / "obj.npz").read_bytes()[:40])
    _one_line_error(tmp_path / "cut.npz", "not a readable .npy/.npz file")
