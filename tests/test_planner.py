"""Memory planner: no two buffers alive at the same step overlap in the arena,
views share bytes, in-place ops reuse their dying input, scratch is planned."""

import numpy as np
import pytest

from mcu_mot.ir.graph import Tensor
from mcu_mot.plan import plan_memory


def T(i, n):
    return Tensor(i, f"t{i}", (n,), "int8")


def _assert_no_overlap(plan):
    """Buffers alive together never share bytes (an in-place input and output
    meet only at the one step where the input dies and the output is born)."""
    bufs = plan.buffers
    for a in bufs:
        for b in bufs:
            if a is b or not a.overlaps_in_time(b) or (id(a), id(b)) in plan.shared:
                continue
            assert a.offset + a.size <= b.offset or b.offset + b.size <= a.offset, (a, b)


def test_chain_reuses_memory():
    ts = [T(i, 1000) for i in range(5)]
    steps = [([ts[i]], [ts[i + 1]], 0, None, None) for i in range(4)]
    plan = plan_memory([ts[0]], [ts[4]], steps)
    _assert_no_overlap(plan)
    assert plan.arena_bytes == 2 * 1008  # two buffers alive at a time, 16-byte aligned


def test_alias_shares_bytes():
    a, b, c = T(0, 64), T(1, 64), T(2, 64)
    steps = [([], [], 0, None, (a, b)), ([b], [c], 0, None, None)]
    plan = plan_memory([a], [c], steps)
    assert plan.offset(a) == plan.offset(b)
    assert plan.offset(c) != plan.offset(a)


def test_inplace_when_input_dies():
    a, b, c = T(0, 256), T(1, 256), T(2, 256)
    steps = [([a], [b], 0, None, None), ([b], [c], 0, (b, c), None)]
    plan = plan_memory([a], [c], steps)
    assert plan.offset(b) == plan.offset(c)
    _assert_no_overlap(plan)


def test_no_inplace_when_input_still_needed():
    a, b, c, d = T(0, 256), T(1, 256), T(2, 256), T(3, 256)
    # b is read again by step 2, so step 1 must not overwrite it
    steps = [([a], [b], 0, None, None), ([b], [c], 0, (b, c), None), ([b, c], [d], 0, None, None)]
    plan = plan_memory([a], [d], steps)
    assert plan.offset(b) != plan.offset(c)
    _assert_no_overlap(plan)


def test_scratch_is_planned_and_short_lived():
    ts = [T(i, 100) for i in range(3)]
    steps = [([ts[0]], [ts[1]], 500, None, None), ([ts[1]], [ts[2]], 0, None, None)]
    plan = plan_memory([ts[0]], [ts[2]], steps)
    _assert_no_overlap(plan)
    assert 0 in plan.scratch_offset
    assert plan.arena_bytes >= 512 + 2 * 112


@pytest.mark.parametrize("seed", range(20))
def test_random_graphs_never_overlap(seed):
    rng = np.random.default_rng(seed)
    ts = [T(0, int(rng.integers(1, 5000)))]
    steps = []
    for i in range(1, 30):
        k = int(rng.integers(1, min(3, len(ts)) + 1))
        reads = list(rng.choice(ts[-6:], size=min(k, len(ts[-6:])), replace=False))
        out = T(i, int(rng.integers(1, 5000)))
        inplace = (reads[0], out) if rng.integers(0, 2) else None
        steps.append((reads, [out], int(rng.integers(0, 2)) * int(rng.integers(1, 3000)), inplace, None))
        ts.append(out)
    plan = plan_memory([ts[0]], [ts[-1]], steps)
    _assert_no_overlap(plan)
    # every buffer alive at a step fits in the arena
    assert max(b.offset + b.size for b in plan.buffers) <= plan.arena_bytes


def _raster_conv_in_shared_memory(mem, in_off, out_off, h, w, cin, cout, k, stride, pad, block=1):
    """A raster-order 'conv' (sum of taps * channel weights) on one shared int64 buffer."""
    ho, wo = (h + 2 * pad - k) // stride + 1, (w + 2 * pad - k) // stride + 1
    wts = np.arange(1, k * k * cin * cout + 1).reshape(k, k, cin, cout) % 7 - 3
    pix = [(y, x) for y in range(ho) for x in range(wo)]
    for g in range(0, len(pix), block):
        results = []
        for y, x in pix[g : g + block]:
            acc = np.zeros(cout, np.int64)
            for ky in range(k):
                for kx in range(k):
                    iy, ix = y * stride - pad + ky, x * stride - pad + kx
                    if 0 <= iy < h and 0 <= ix < w:
                        base = in_off + (iy * w + ix) * cin
                        acc += mem[base : base + cin] @ wts[ky, kx]
            results.append(acc)
        for (y, x), acc in zip(pix[g : g + block], results):
            base = out_off + (y * wo + x) * cout
            mem[base : base + cout] = acc
    return ho, wo


@pytest.mark.parametrize(
    "h,w,cin,cout,k,stride,pad,block",
    [
        (8, 8, 4, 4, 3, 1, 1, 1),
        (8, 8, 4, 4, 3, 1, 1, 2),
        (7, 9, 3, 8, 1, 1, 0, 1),
        (7, 9, 8, 3, 1, 1, 0, 1),
        (9, 9, 2, 5, 3, 2, 1, 1),
        (6, 10, 5, 5, 3, 1, 0, 4),
        (10, 4, 1, 6, 3, 2, 1, 1),
    ],
)
def test_raster_lead_is_safe_and_tight(h, w, cin, cout, k, stride, pad, block):
    """Running a raster-order kernel with its output `lead` elements below its input
    gives the same result as separate buffers, in less memory than the two side by side."""
    from mcu_mot.plan.overlap import raster_lead

    rng = np.random.default_rng(0)
    x = rng.integers(-50, 50, h * w * cin)
    ho, wo = (h + 2 * pad - k) // stride + 1, (w + 2 * pad - k) // stride + 1
    lead = raster_lead((1, h, w, cin), (1, ho, wo, cout), 1, 1, (stride, stride), (pad, pad), block)
    ref = np.zeros(h * w * cin + ho * wo * cout + 64, np.int64)
    ref[: x.size] = x
    _raster_conv_in_shared_memory(ref, 0, x.size, h, w, cin, cout, k, stride, pad, block)
    expect = ref[x.size : x.size + ho * wo * cout].copy()
    base = max(0, -lead)
    mem = np.zeros(base + max(lead, 0) + h * w * cin + ho * wo * cout + 64, np.int64)
    in_off, out_off = base + max(lead, 0), base
    mem[in_off : in_off + x.size] = x
    _raster_conv_in_shared_memory(mem, in_off, out_off, h, w, cin, cout, k, stride, pad, block)
    assert np.array_equal(mem[out_off : out_off + expect.size], expect)
    span = max(lead + x.size, expect.size) - min(lead, 0)
    assert span < x.size + expect.size  # the overlap really saves memory


def test_overlap_lead_in_planner():
    a, b, c = T(0, 1000), T(1, 1200), T(2, 1200)
    steps = [([a], [b], 0, (a, b, 300), None), ([b], [c], 0, None, None)]
    plan = plan_memory([a], [c], steps)
    assert plan.offset(a) - plan.offset(b) == 304  # lead rounded up to the 16-byte alignment
    _assert_no_overlap(plan)
