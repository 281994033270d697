"""benchmark: the benchmark models (Keras 3, random weights, made locally) and the
measuring loop behind `mcu-mot bench`."""
