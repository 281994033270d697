"""flows: the top layer, everything that combines stages (ir -> plan -> codegen -> fwbuild ->
device): the measured backend choice, the quantization debugger, bench, run, the demo, and
the applications' train / deploy / evaluate recipes. Nothing below imports from here."""
