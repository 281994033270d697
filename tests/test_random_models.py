"""Property test: random Keras models, converted by the TF converter, simulate
bit-exactly against the tflite-micro interpreter (int8 and int16x8)."""

import pytest
from harness import assert_bit_exact, convert, save
from randmodels import random_model

FAST_SEEDS = range(6)
SLOW_SEEDS = range(6, 40)


def _check(seed, mode, tmp_path):
    model = random_model(seed)
    path = save(convert(model, mode, seed=seed), tmp_path, f"rand{seed}_{mode}")
    assert_bit_exact(path, n=3, seed=seed)


@pytest.mark.parametrize("mode", ["int8", "int16"])
@pytest.mark.parametrize("seed", FAST_SEEDS)
def test_random_model_bit_exact(seed, mode, tmp_path):
    _check(seed, mode, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["int8", "int16", "float"])
@pytest.mark.parametrize("seed", SLOW_SEEDS)
def test_random_model_bit_exact_many(seed, mode, tmp_path):
    _check(seed, mode, tmp_path)
