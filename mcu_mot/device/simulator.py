"""simulate: run the generated C on the host (the `host` board) through ctypes.

The generated model.c and the portable kernels are compiled with the system C
compiler into a shared library, cached by the model's hash and a fingerprint
of the compiler's own sources, so a repeated simulate costs only the run.
"""

from __future__ import annotations

import ctypes
import hashlib
import io
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from mcu_mot.codegen.cmsis_nn import cmsis_nn_path
from mcu_mot.codegen.compile import codegen_fingerprint, generate, model_digest
from mcu_mot.errors import MotError
from mcu_mot.fileio import atomic_write, load_arrays
from mcu_mot.fwbuild.sanitize import cache_tag, host_cflags
from mcu_mot.resources import KERNELS
from mcu_mot.safedirs import cache_root, cache_subdir, load_entry, store_entry

HOST_CFLAGS = ["-O2", "-std=gnu99", "-Wtrigraphs", "-fPIC", "-shared", "-ffp-contract=off", "-fwrapv"]


def cache_dir() -> Path:
    """The per-user cache root ($MCU_MOT_CACHE, $XDG_CACHE_HOME/mcu_mot or ~/.cache/mcu_mot):
    created 0700, refused with one line when another user could write it (mcu_mot.safedirs)."""
    return cache_root()


class HostModel:
    """A compiled model loaded in this process; call it with a batch of inputs."""

    def __init__(self, lib_path: Path, meta: dict):
        self.meta = meta
        self._lib = ctypes.CDLL(str(lib_path))
        self._lib.model_input.restype = ctypes.c_void_p
        self._lib.model_output.restype = ctypes.c_void_p
        self._lib.model_input.argtypes = [ctypes.c_int]
        self._lib.model_output.argtypes = [ctypes.c_int]
        self._lib.model_invoke.restype = ctypes.c_int
        self._lib.model_invoke_range.argtypes = [ctypes.c_int, ctypes.c_int]
        self._lib.model_arena.restype = ctypes.c_void_p

    @property
    def inputs(self):
        return self.meta["inputs"]

    @property
    def outputs(self):
        return self.meta["outputs"]

    def run(self, *batches: np.ndarray) -> list[np.ndarray]:
        """Run each sample of the batch; returns one (N, ...) array per output."""
        if len(batches) != len(self.inputs):
            raise MotError(f"model has {len(self.inputs)} input(s), got {len(batches)}")
        arrays = [check_input(x, spec) for x, spec in zip(batches, self.inputs)]
        n = arrays[0].shape[0]
        if any(a.shape[0] != n for a in arrays):
            raise MotError("all inputs must have the same batch size")
        results = [np.empty((n,) + tuple(batch_shape(o["shape"])), dtype=o["dtype"]) for o in self.outputs]
        for i in range(n):
            for k, a in enumerate(arrays):
                sample = np.ascontiguousarray(a[i])
                ctypes.memmove(self._lib.model_input(k), sample.ctypes.data, sample.nbytes)
            self._lib.model_invoke()
            for k, r in enumerate(results):
                nbytes = r[i].nbytes
                raw = ctypes.string_at(self._lib.model_output(k), nbytes)
                r[i] = np.frombuffer(raw, dtype=r.dtype).reshape(r.shape[1:])
        return results

    def layer_outputs(self, *sample: np.ndarray) -> list:
        """Run one sample layer by layer and read each layer's output right after it is written.

        Returns [(layer report dict, array)] for every kernel call: the host
        side of the per-layer debugger.
        """
        for k, x in enumerate(sample):
            x = np.ascontiguousarray(x)
            ctypes.memmove(self._lib.model_input(k), x.ctypes.data, x.nbytes)
        calls = [layer for layer in self.meta["layers"] if layer["kernel"]]
        arena = self._lib.model_arena()
        results = []
        for i, layer in enumerate(calls):
            self._lib.model_invoke_range(i, i)
            dtype = np.dtype(layer["dtype"])
            raw = ctypes.string_at(arena + layer["arena_offset"], layer["bytes"])
            results.append((layer, np.frombuffer(raw, dtype).reshape(layer["shape"]).copy()))
        return results

    def arena(self) -> np.ndarray:
        """The arena as bytes, to read intermediate tensors (debugger)."""
        size = self.meta["arena_bytes"]
        return np.frombuffer(ctypes.string_at(self._lib.model_arena(), size), np.uint8).copy()


def batch_shape(shape) -> list:
    """Per-sample shape: the model's shape without a leading batch dimension of 1."""
    shape = list(shape)
    return shape[1:] if shape and shape[0] == 1 else shape


def check_input(x: np.ndarray, spec: dict) -> np.ndarray:
    want = batch_shape(spec["shape"])
    if x.dtype != np.dtype(spec["dtype"]):
        raise MotError(f"input '{spec['name']}' must be {spec['dtype']}, got {x.dtype}")
    if list(x.shape[1:]) != want:
        raise MotError(f"input '{spec['name']}' must have shape (N, {', '.join(map(str, want))}), got {tuple(x.shape)}")
    return x


def host_compiler() -> str:
    cc = os.environ.get("CC", "cc")
    if shutil.which(cc) is None:
        raise MotError(f"no host C compiler found ('{cc}'); install gcc or set CC")
    return cc


def _backend_key(backend: str) -> str:
    """Cache-key part for a backend: which CMSIS-NN checkout (and its API header) it compiles."""
    if backend == "portable":
        return ""
    root = cmsis_nn_path(required=(backend == "cmsis-nn"))
    if root is None:
        return "-" + backend
    h = hashlib.sha256(str(root).encode() + (root / "Include" / "arm_nnfunctions.h").read_bytes())
    return f"-{backend}-{h.hexdigest()[:8]}"


def load(model_path, isa: str = "plain", backend: str = "portable") -> HostModel:
    """Compile (or reuse from the cache) the host library for `model_path`.

    isa "dsp" generates the Cortex-M4 kernel paths and weight layouts and runs
    them with the DSP instructions emulated in C (mm_isa.h), bit for bit.
    backend "cmsis-nn" compiles the layers CMSIS-NN covers against its plain-C
    path (CMSIS_NN_PATH); "auto" has nothing to measure on the host: portable."""
    model_path = Path(model_path)
    if not model_path.is_file():
        raise MotError(f"model file not found: {model_path}")
    if isa not in ("plain", "dsp"):
        raise MotError(
            f"the host simulator runs isa plain or dsp, not '{isa}' "
            "(Helium code runs on a Cortex-M55: mcu-mot run -b qemu-mps3-an547)"
        )
    key = (
        model_digest(model_path.read_bytes())[:24]
        + "-"
        + codegen_fingerprint()
        + ("" if isa == "plain" else "-" + isa)
        + _backend_key(backend)
        + _sanitize_tag()
    )
    cdir = cache_subdir("host")
    # trusted only when KEY.json is whole, names this key and the .so hashes to it: else rebuilt
    found = load_entry(cdir, key, ".so")
    if found is None or not isinstance(found[1], dict):
        compiled = generate(model_path, backend, "host", isa=isa)
        with tempfile.TemporaryDirectory(prefix="mm-host-") as tmp:
            tmp = Path(tmp)
            for name, text in compiled.files.items():
                (tmp / name).write_text(text)
            out = tmp / "model.so"
            emulate = ["-DMM_EMULATE_DSP=1"] if isa == "dsp" else []
            # warning-free (tests/test_c_warnings.py); CMSIS-NN's files, compiled in the same
            # command, are not held to -Werror
            warn = ["-Wall", "-Wextra"] + ([] if compiled.extra_sources else ["-Werror"])
            cmd = [
                host_compiler(),
                *host_cflags(HOST_CFLAGS, shared=True),
                *warn,
                *emulate,
                f"-I{KERNELS}",
                f"-I{tmp}",
                *(f"-I{d}" for d in compiled.include_dirs),
                str(tmp / "model.c"),
                *map(str, compiled.kernel_sources),
                *map(str, compiled.extra_sources),
                "-lm",
                "-o",
                str(out),
            ]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:
                first = next((ln for ln in proc.stderr.splitlines() if "error" in ln), proc.stderr.strip()[:300])
                raise MotError(f"host compile of generated code failed: {first}")
            lib = store_entry(cdir, key, ".so", out.read_bytes(), compiled.report, mode=0o700)
        found = (lib, json.loads(json.dumps(compiled.report)))
    return HostModel(*found)


def _sanitize_tag() -> str:
    return cache_tag(shared=True)


def simulate(model_path, inputs, output_path=None, isa: str = "plain", backend: str = "portable") -> list[np.ndarray]:
    """Run `inputs` (array, list of arrays, or .npy/.npz path) through the host build."""
    model = load(model_path, isa, backend)
    arrays = read_inputs(inputs, len(model.inputs))
    results = model.run(*arrays)
    if output_path is not None:
        write_outputs(Path(output_path), results)
    return results


def read_inputs(inputs, count: int) -> list[np.ndarray]:
    if isinstance(inputs, (str, Path)):
        loaded = load_arrays(inputs, "input file")
        return list(loaded.values()) if isinstance(loaded, dict) else [loaded]
    if isinstance(inputs, np.ndarray):
        return [inputs]
    return list(inputs)


def write_outputs(path: Path, results: list[np.ndarray]) -> None:
    """Atomic write: .npy for one output, .npz for several."""
    buf = io.BytesIO()
    if len(results) == 1:
        np.save(buf, results[0])
    else:
        np.savez(buf, *results)
    atomic_write(path, buf.getvalue())
