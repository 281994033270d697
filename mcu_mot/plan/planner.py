"""Arena planner: lifetimes from the op order, aliases and in-place merges, then
greedy-by-size placement (first-fit and best-fit, keeping the smaller arena).

TFLite Micro's GreedyMemoryPlanner places buffers largest first at the lowest
offset that does not overlap a buffer alive at the same time. We do the same
and add what an ahead-of-time compiler knows: reshapes are views of their
input, elementwise ops may write over an input that dies with them, and
kernel scratch is planned in the same arena instead of beside it.
"""
from __future__ import annotations

from dataclasses import dataclass, field

ALIGN = 16


def _align(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


@dataclass(eq=False)
class Buffer:
    """A block of the arena: one tensor, its views, and tensors run over it in place."""
    size: int
    first: int
    last: int
    tensors: list = field(default_factory=list)
    rel: dict = field(default_factory=dict)   # id(tensor) -> offset inside the block
    scratch_of: int = -1     # step index for scratch buffers
    offset: int = -1

    def overlaps_in_time(self, other: "Buffer") -> bool:
        return not (self.last < other.first or other.last < self.first)


@dataclass
class MemoryPlan:
    arena_bytes: int
    buffers: list
    tensor_offset: dict      # id(tensor) -> offset
    scratch_offset: dict     # step index -> offset

    def offset(self, tensor) -> int:
        return self.tensor_offset[id(tensor)]


def plan_memory(graph_inputs, graph_outputs, steps) -> MemoryPlan:
    """steps: list of (reads, writes, scratch_bytes, inplace, alias_pair).

    inplace is (input tensor, output tensor[, lead]): the output may start
    `lead` bytes below the input (0: exactly over it) if the input dies at this
    step; alias_pair is (source, view) that always share their bytes.
    """
    n = len(steps)
    buf_of: dict[int, Buffer] = {}

    def buffer(t) -> Buffer:
        b = buf_of.get(id(t))
        if b is None:
            b = Buffer(t.nbytes, n + 1, -1, [t], {id(t): 0})
            buf_of[id(t)] = b
        return b

    def merge(a: Buffer, b: Buffer, shift_b: int = 0) -> Buffer:
        """Fold b into a, b's tensors placed `shift_b` bytes further than they were in b."""
        if a is b:
            return a
        if shift_b < 0:  # keep offsets non-negative: move a's tensors up instead
            for k in a.rel:
                a.rel[k] -= shift_b
            shift_b = 0
        a.first, a.last = min(a.first, b.first), max(a.last, b.last)
        for t in b.tensors:
            a.tensors.append(t)
            a.rel[id(t)] = b.rel[id(t)] + shift_b
            buf_of[id(t)] = a
        a.size = max(a.rel[id(t)] + t.nbytes for t in a.tensors)
        return a

    # last reader of each tensor, to know whether an input dies at a step
    last_read: dict[int, int] = {}
    for i, (reads, writes, _, _, alias) in enumerate(steps):
        for t in reads:
            last_read[id(t)] = i
        if alias:
            last_read[id(alias[0])] = max(last_read.get(id(alias[0]), -1), i)
    for t in graph_outputs:
        last_read[id(t)] = n

    for t in graph_inputs:
        b = buffer(t)
        b.first = 0
        b.last = max(b.last, last_read.get(id(t), 0))

    scratch: list[Buffer] = []
    for i, (reads, writes, scratch_bytes, inplace, alias) in enumerate(steps):
        if alias:
            src, view = alias
            b = merge(buffer(src), buffer(view))
            b.last = max(b.last, last_read.get(id(view), i))
            continue
        for t in reads:
            b = buffer(t)
            b.first = min(b.first, i)
            b.last = max(b.last, i)
        for t in writes:
            b = buffer(t)
            b.first = min(b.first, i)
            b.last = max(b.last, last_read.get(id(t), i))
        if inplace:
            src, dst = inplace[0], inplace[1]
            lead = inplace[2] if len(inplace) > 2 else 0
            bs, bd = buffer(src), buffer(dst)
            src_dies = bs.last == i and not any(id(t) in {id(o) for o in graph_outputs} for t in bs.tensors)
            fits = len(inplace) > 2 or dst.nbytes <= src.nbytes
            if src_dies and fits and bs is not bd and len(bd.tensors) == 1:
                # dst goes `lead` bytes below src
                merge(bs, bd, bs.rel[id(src)] - lead)
        if scratch_bytes:
            scratch.append(Buffer(scratch_bytes, i, i, [], scratch_of=i))

    buffers = list({id(b): b for b in buf_of.values()}.values()) + scratch
    for b in buffers:
        if b.first > b.last:  # tensor written but never read: lives at its step
            b.last = b.first
    arena = _place_best(buffers)
    tensor_offset = {id(t): b.offset + b.rel[id(t)] for b in buffers for t in b.tensors}
    scratch_offset = {b.scratch_of: b.offset for b in scratch}
    return MemoryPlan(arena, buffers, tensor_offset, scratch_offset)


def _place(buffers, best_fit: bool) -> int:
    order = sorted(buffers, key=lambda b: (-_align(b.size), b.first))
    placed: list[Buffer] = []
    top = 0
    for b in order:
        live = sorted((p for p in placed if p.overlaps_in_time(b)), key=lambda p: p.offset)
        size = _align(b.size)
        best, best_gap, cursor = None, None, 0
        for p in live:
            gap = p.offset - cursor
            if gap >= size:
                if not best_fit:
                    best = cursor
                    break
                if best_gap is None or gap < best_gap:
                    best, best_gap = cursor, gap
            cursor = max(cursor, p.offset + _align(p.size))
        if best is None:
            best = cursor
        b.offset = best
        placed.append(b)
        top = max(top, best + size)
    return top


def _place_best(buffers) -> int:
    results = []
    for best_fit in (False, True):
        arena = _place(buffers, best_fit)
        results.append((arena, best_fit, [b.offset for b in buffers]))
    arena, _, offsets = min(results, key=lambda r: r[0])
    for b, off in zip(buffers, offsets):
        b.offset = off
    return arena
