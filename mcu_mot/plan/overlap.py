"""How far an op's output may overlap its input (TinyEngine-style in-place execution).

A kernel that walks output pixels in raster order, and writes pixel p only
while reading inputs that pixel p (or a later one) needs, can write over the
part of its input that no later pixel reads. For such a kernel the output may
start D bytes below the input, with

    D = max over p of  end_of_output(p) - start_of_first_input_needed(p)

computed here exactly from the shapes. The planner then places input and
output D bytes apart instead of side by side: a 3x3 conv on 32x32x16 needs
16 KB + 34 pixels instead of 32 KB.
"""

from __future__ import annotations

import numpy as np


def raster_lead(in_shape, out_shape, in_elem: int, out_elem: int, stride=(1, 1), pad=(0, 0), block: int = 1) -> int:
    """Bytes the input must start above the output (may be negative) for a raster-order kernel.

    in_shape/out_shape: NHWC (batch included). pad: (top, left) padding in input pixels.
    block: how many output pixels the kernel computes together (it reads inputs of
    pixels p..p+block-1 before writing any of them).
    """
    n, h_in, w_in, c_in = _nhwc(in_shape)
    n2, h_out, w_out, c_out = _nhwc(out_shape)
    b = np.arange(n2)[:, None, None]
    y = np.arange(h_out)[None, :, None]
    x = np.arange(w_out)[None, None, :]
    row = np.clip(y * stride[0] - pad[0], 0, h_in - 1)
    col = np.clip(x * stride[1] - pad[1], 0, w_in - 1)
    first_needed = (b * h_in * w_in + row * w_in + col).ravel()  # input pixel index
    p = np.arange(first_needed.size)
    # pixel p's output is written while the inputs of pixels [p - block + 1, p] are still read
    group_end = np.minimum((p // block + 1) * block, p.size)
    first_of_group = first_needed[(p // block) * block]
    lead = group_end * c_out * out_elem - first_of_group * c_in * in_elem
    return int(lead.max())


def _nhwc(shape):
    shape = tuple(int(d) for d in shape)
    if len(shape) == 4:
        return shape
    if len(shape) == 3:
        return (1,) + shape
    raise ValueError(f"expected an NHWC shape, got {shape}")
