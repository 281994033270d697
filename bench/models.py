"""The benchmark models live in the package (mcu_mot.benchmark.models) so `mcu-mot bench` can make them."""
from mcu_mot.benchmark.models import MODELS, build_tflite, randomize  # noqa: F401
