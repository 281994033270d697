"""The benchmark architectures (MLPerf Tiny shapes) compile with a smaller arena
than TFLite Micro's planner gives and run bit-exactly against it."""

import sys
from pathlib import Path

import pytest
from harness import assert_bit_exact

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from mcu_mot.flows.bench.models import build_tflite  # noqa: E402

FAST = [("ds_cnn", "int8"), ("resnet8", "int8")]
SLOW = [
    ("ds_cnn", "int16"),
    ("resnet8", "int16"),
    ("mobilenet_v1_025", "int8"),
    ("mobilenet_v1_025", "int16"),
    ("conv_fc_speech", "int8"),
    ("conv_fc_speech", "int16"),
]


def _check(name, mode, tmp_path_factory):
    from bench.arena import tflm_arena
    from mcu_mot.codegen.compile import generate

    path = build_tflite(name, mode, tmp_path_factory.mktemp(name))
    assert_bit_exact(path, n=2)
    ours = generate(path).report["arena_bytes"]
    assert ours <= 0.7 * tflm_arena(path)["head"]


@pytest.mark.parametrize("name,mode", FAST)
def test_bench_model(name, mode, tmp_path_factory):
    _check(name, mode, tmp_path_factory)


@pytest.mark.slow
@pytest.mark.parametrize("name,mode", SLOW)
def test_bench_model_slow(name, mode, tmp_path_factory):
    _check(name, mode, tmp_path_factory)
