"""The reference interpreter (pip tflite-micro) run sample by sample, for checks
that our generated code is bit-exact (tests, `mcu-mot bench`). Optional: only
imported where a check is asked for."""

from __future__ import annotations

import numpy as np

from mcu_mot.ir import read_tflite


def have_tflm() -> bool:
    try:
        from tflite_micro.python.tflite_micro import runtime  # noqa: F401, PLC0415  (the reference interpreter only where a check runs)
    except Exception:
        return False
    return True


def tflm_run(path, inputs: list[np.ndarray]) -> list[np.ndarray]:
    """Run each sample of the batch through the TFLite Micro interpreter; stack the outputs."""
    from tflite_micro.python.tflite_micro import runtime  # noqa: PLC0415  (the reference interpreter only where a check runs)

    n_out = len(read_tflite(path).outputs)
    interp = runtime.Interpreter.from_file(str(path))
    n = inputs[0].shape[0]
    outs = None
    for i in range(n):
        for k, x in enumerate(inputs):
            interp.set_input(np.ascontiguousarray(x[i : i + 1]).reshape(interp.get_input_details(k)["shape"]), k)
        interp.invoke()
        res = [interp.get_output(k) for k in range(n_out)]
        if outs is None:
            outs = [[] for _ in res]
        for lst, r in zip(outs, res):
            lst.append(r)
    return [
        np.stack(o).reshape((n,) + o[0].shape[1:] if o[0].shape and o[0].shape[0] == 1 else (n,) + o[0].shape)
        for o in outs
    ]
