"""Keep TensorFlow's chatter off the user's terminal: its start-up lines (absl/cudart, printed
from C++ before logging is configured), the Keras export's signature dump, the converter's
MLIR and calibration lines and its UserWarnings. `-v` on the command line (set_verbose) lets
everything through; otherwise a failing step still reports in one line."""

from __future__ import annotations

import os
import sys
import tempfile
import warnings

_NOISE = (
    "All log messages before absl::InitializeLog()",
    "cudart_stub.cc",
    "cuda drivers",
    "TF-TRT Warning",
    "oneDNN custom operations",
    "computer_aided",
    "rebuild TensorFlow with",
)


_verbose = False


def set_verbose(on: bool) -> None:
    """Show TensorFlow's own output (the CLI's -v)."""
    global _verbose
    _verbose = bool(on)
    if on:
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "0"


def verbose() -> bool:
    return _verbose


def import_tensorflow():
    """`import tensorflow` with C-level stderr captured; lines that are not known noise are replayed."""
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    if _verbose:
        import tensorflow as tf  # noqa: PLC0415  (TensorFlow on first use: off the deploy path, after tfquiet)

        return tf
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            import keras  # noqa: F401, PLC0415  (TensorFlow on first use: off the deploy path, after tfquiet)
            import tensorflow as tf  # noqa: PLC0415  (TensorFlow on first use: off the deploy path, after tfquiet)
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
        tmp.seek(0)
        for line in tmp.read().decode(errors="replace").splitlines():
            if line.strip() and not any(n in line for n in _NOISE):
                print(line, file=sys.stderr)
    return tf


class quiet_output:
    """Send C-level stdout/stderr (the converter's MLIR chatter) to a temporary file while
    the block runs; `text` holds it afterwards, for an error message if something failed."""

    def __enter__(self):
        sys.stdout.flush()
        sys.stderr.flush()
        self._tmp = tempfile.TemporaryFile()
        self._saved = (os.dup(1), os.dup(2))
        os.dup2(self._tmp.fileno(), 1)
        os.dup2(self._tmp.fileno(), 2)
        self._warn = warnings.catch_warnings()
        self._warn.__enter__()
        warnings.simplefilter("ignore")
        self.text = ""
        return self

    def __exit__(self, *exc):
        sys.stdout.flush()
        sys.stderr.flush()
        self._warn.__exit__(*exc)
        os.dup2(self._saved[0], 1)
        os.dup2(self._saved[1], 2)
        for fd in self._saved:
            os.close(fd)
        self._tmp.seek(0)
        self.text = self._tmp.read().decode(errors="replace")
        self._tmp.close()
        return False


class _Passthrough:
    text = ""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def converter_output():
    """The context every TF converter / exporter call runs in: captured (quiet_output), or
    passed through with -v."""
    return _Passthrough() if _verbose else quiet_output()
