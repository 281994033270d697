"""The benchmark models live in the package (mcu_mot.flows.bench.models) so `mcu-mot bench` can make them."""

from mcu_mot.flows.bench.models import MODELS, build_tflite, randomize  # noqa: F401
