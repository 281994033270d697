"""RESHAPE / SQUEEZE / EXPAND_DIMS: views of their input, no code and no copy.

The one lowering module without a C kernel family (no mm_reshape.c): it returns an
Alias, which the memory plan resolves by giving the view the source's bytes."""

from mcu_mot.codegen.lowering import Alias, lowers, unsupported


@lowers("RESHAPE", "SQUEEZE", "EXPAND_DIMS")
def lower_reshape(op, ctx):
    src, view = op.inputs[0], op.outputs[0]
    if src.nbytes != view.nbytes or src.dtype != view.dtype:
        # never alias bytes that do not match: a shape we could not infer would miscompile silently
        raise unsupported(
            op,
            f"cannot view {src.shape} {src.dtype} as {view.shape} {view.dtype} "
            "(a dynamic shape that is not known at compile time)",
        )
    return Alias(src, view)
