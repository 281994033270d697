"""Arena planner: lifetimes from the op order, views and in-place groups, then
greedy-by-size first-fit placement.

TFLite Micro's GreedyMemoryPlanner places buffers largest first at the lowest
offset that does not overlap a buffer alive at the same time. We do the same
and add what an ahead-of-time compiler knows: a reshape is a view of its
input (same bytes), an elementwise op may write over an input that dies with
it, a raster-order kernel may write its output a computed `lead` below its
input (plan/overlap.py), and kernel scratch lives in the same arena for the
one step that needs it. Tensors tied this way form a group whose members keep
fixed offsets relative to each other but keep their own lifetimes, so a dead
input frees its bytes as soon as it dies.
"""

from __future__ import annotations

from dataclasses import dataclass, field

ALIGN = 16


def _align(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


@dataclass(eq=False)
class Buffer:
    """One tensor's (or one scratch area's) bytes and the steps during which they are live."""

    size: int
    first: int
    last: int
    tensor: object = None
    scratch_of: int = -1  # step index for scratch buffers
    offset: int = -1

    def overlaps_in_time(self, other: "Buffer") -> bool:
        return not (self.last < other.first or other.last < self.first)


@dataclass(eq=False)
class Group:
    """Buffers placed together: member -> offset relative to the group's start."""

    rel: dict = field(default_factory=dict)  # Buffer -> relative offset

    @property
    def span(self) -> int:
        return max(r + _align(b.size) for b, r in self.rel.items())


@dataclass
class MemoryPlan:
    arena_bytes: int
    buffers: list
    tensor_offset: dict  # id(tensor) -> offset
    scratch_offset: dict  # step index -> offset
    shared: set = field(default_factory=set)  # (id(buffer), id(buffer)) allowed to share bytes at a step

    def offset(self, tensor) -> int:
        return self.tensor_offset[id(tensor)]


def plan_memory(graph_inputs, graph_outputs, steps) -> MemoryPlan:
    """steps: list of (reads, writes, scratch_bytes, inplace, alias_pair).

    inplace is (input tensor, output tensor[, lead]): the output may start
    `lead` bytes below the input (2-tuple: exactly over it, output no larger)
    if the input dies at this step; alias_pair is (source, view) sharing bytes.
    Returns the smaller of the plans with and without in-place groups, so the
    arena is never larger than plain greedy-by-size (TFLite Micro's).
    """
    plans = [_plan(graph_inputs, graph_outputs, steps, mode) for mode in ("chain", "pairs", "none")]
    return min(plans, key=lambda p: p.arena_bytes)


def _plan(graph_inputs, graph_outputs, steps, mode: str) -> MemoryPlan:
    """mode: 'chain' joins every in-place pair (groups may span many layers and
    drift), 'pairs' joins the most profitable pairs with no tensor in two joins
    (groups stay small), 'none' plans every buffer on its own."""
    allow_inplace = mode != "none"
    n = len(steps)
    output_ids = {id(t) for t in graph_outputs}
    bufs: dict[int, Buffer] = {}
    group_of: dict[Buffer, Group] = {}

    def buffer(t) -> Buffer:
        b = bufs.get(id(t))
        if b is None:
            b = Buffer(t.nbytes, n + 1, -1, t)
            bufs[id(t)] = b
            group_of[b] = Group({b: 0})
        return b

    shared = set()

    def join(src: Buffer, dst: Buffer, dst_minus_src: int) -> None:
        """Put dst's group into src's, with dst at src + dst_minus_src."""
        shared.update({(id(src), id(dst)), (id(dst), id(src))})
        gs, gd = group_of[src], group_of[dst]
        if gs is gd:
            return
        shift = gs.rel[src] + dst_minus_src - gd.rel[dst]
        if shift < 0:
            for b in gs.rel:
                gs.rel[b] -= shift
            shift = 0
        for b, r in gd.rel.items():
            gs.rel[b] = r + shift
            group_of[b] = gs

    def touch(t, step: int) -> None:
        b = buffer(t)
        b.first, b.last = min(b.first, step), max(b.last, step)

    for t in graph_inputs:
        touch(t, 0)
    scratch: list[Buffer] = []
    pending = []
    for i, (reads, writes, scratch_bytes, inplace, alias) in enumerate(steps):
        if alias:
            src, view = alias
            touch(src, i)
            touch(view, i)
            join(buffer(src), buffer(view), 0)
            continue
        for t in list(reads) + list(writes):
            touch(t, i)
        if inplace and allow_inplace:
            pending.append((i, inplace))
        if scratch_bytes:
            scratch.append(Buffer(scratch_bytes, i, i, None, scratch_of=i))
    for t in graph_outputs:
        touch(t, n)

    # in-place groups, once every lifetime is known
    def saving(item):
        _, (src, dst, *rest) = item
        lead = _align(rest[0]) if rest else 0
        span = max(lead + _align(src.nbytes), _align(dst.nbytes)) - min(lead, 0)
        return _align(src.nbytes) + _align(dst.nbytes) - span

    if mode == "pairs":
        pending.sort(key=saving, reverse=True)
    joined = set()
    for i, inplace in pending:
        src, dst = inplace[0], inplace[1]
        lead = _align(inplace[2]) if len(inplace) > 2 else 0
        if len(inplace) == 2 and dst.nbytes > src.nbytes:
            continue
        bs, bd = bufs[id(src)], bufs[id(dst)]
        gs = group_of[bs]
        if any(b.last > i or id(b.tensor) in output_ids for b in gs.rel):
            continue  # some bytes of the input's group are still needed after this step
        if len(group_of[bd].rel) != 1:
            continue
        if mode == "pairs" and (bs in joined or bd in joined):
            continue
        joined.update((bs, bd))
        join(bs, bd, -lead)

    for b in scratch:
        group_of[b] = Group({b: 0})
    buffers = list(bufs.values()) + scratch
    for b in buffers:
        if b.first > b.last:
            b.last = b.first
    groups = list({id(g): g for g in group_of.values()}.values())
    arena = _place(groups)
    tensor_offset = {id(b.tensor): b.offset for b in bufs.values()}
    scratch_offset = {b.scratch_of: b.offset for b in scratch}
    return MemoryPlan(arena, buffers, tensor_offset, scratch_offset, shared)


def _place(groups) -> int:
    """Largest first, each group at the lowest offset where no member collides."""
    order = sorted(groups, key=lambda g: (-max(_align(b.size) for b in g.rel), min(b.first for b in g.rel)))
    placed: list[Buffer] = []
    top = 0
    for g in order:
        candidates = {0}
        for q in placed:
            for b, r in g.rel.items():
                if q.overlaps_in_time(b) and q.offset + _align(q.size) - r >= 0:
                    candidates.add(q.offset + _align(q.size) - r)
        for base in sorted(candidates):
            if all(not _collides(base + r, b, placed) for b, r in g.rel.items()):
                break
        for b, r in g.rel.items():
            b.offset = base + r
            placed.append(b)
        top = max(top, base + g.span)
    return top


def _collides(offset: int, b: Buffer, placed) -> bool:
    end = offset + _align(b.size)
    for q in placed:
        if q.overlaps_in_time(b) and offset < q.offset + _align(q.size) and q.offset < end:
            return True
    return False
