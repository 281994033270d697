"""device: the board side of the toolchain: launch (QEMU) or attach (serial port), the wire
protocol's host side, and the profiler. Nothing here imports TensorFlow."""
