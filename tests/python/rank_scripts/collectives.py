"""Every torch.distributed operation of torch 1.13, checked against local references.

One rank of a world; run by tests/python/test_collectives.py:
    collectives.py --backend chorus --out DIR [--sections a,b,...]

Each section (one operation family) runs every case (dtype x op x size x root)
and records failures in DIR/rank<r>.jsonl (see rankutil.Reporter). Sizes include
0, 1 and 7 elements (prime, divides nothing), 4099 (prime, beyond small-message
thresholds) and a 3x5 matrix; all_reduce_large uses 2**20 + 3 float32 elements to
exercise pipelining. Cases the gloo reference backend cannot do are recorded as
skips for gloo only.
"""

import time

import torch
import torch.distributed as dist

from rankutil import (DTYPES, FLOAT_DTYPES, OPS, TOLERANCE, default_store, dname,
                      gloo_lacks, make_input, reference_reduce, sectioned_main)

SHAPES = [(0,), (1,), (7,), (4099,), (3, 5)]
SMALL_SHAPES = [(0,), (1,), (7,), (3, 5)]      # where cases multiply (roots, ops)
SCALAR = ()                                     # a 0-dim tensor
LARGE = 2 ** 20 + 3


def shape_name(shape):
    return "x".join(map(str, shape)) or "scalar"


def stacked(world, shape):
    """Shape of `world` blocks of `shape` concatenated along dim 0."""
    return (world * shape[0],) + tuple(shape[1:])


def garbage(shape, dtype):
    """A buffer filled with a value no reference produces (output must overwrite it)."""
    if dtype == torch.bool:
        return torch.ones(shape, dtype=dtype)  # still checked: refs contain False
    return torch.full(shape, 77, dtype=dtype)


SECTIONS = {}


def section(fn):
    SECTIONS[fn.__name__] = fn
    return fn


def _reduce_inputs(c, shape, dtype, salt, op, ranks=None):
    ranks = range(c.world) if ranks is None else ranks
    return [make_input(r, shape, dtype, salt, nonzero=(op == "PRODUCT")) for r in ranks]


@section
def all_reduce(c):
    """all_reduce with SUM/PRODUCT/MIN/MAX over every dtype and size (in place)."""
    for dtype in DTYPES:
        for op in OPS:
            for shape in SHAPES + [SCALAR]:
                case = f"all_reduce {op} {dname(dtype)} [{shape_name(shape)}]"
                salt = c.next_salt()
                if gloo_lacks(c.backend, op, dtype):
                    c.rep.skip(case, "gloo lacks this dtype")
                    continue
                with c.rep.case(case):
                    inputs = _reduce_inputs(c, shape, dtype, salt, op)
                    t = inputs[c.rank].clone()
                    dist.all_reduce(t, op=OPS[op])
                    c.rep.check(case, t, reference_reduce(inputs, op, dtype))


@section
def all_reduce_avg(c):
    """ReduceOp.AVG on the float dtypes and every size (chorus supports it; gloo does not)."""
    for dtype in FLOAT_DTYPES:
        for shape in SHAPES:
            case = f"all_reduce AVG {dname(dtype)} [{shape_name(shape)}]"
            salt = c.next_salt()
            if gloo_lacks(c.backend, "AVG", dtype):
                c.rep.skip(case, "gloo has no ReduceOp.AVG")
                continue
            with c.rep.case(case):
                inputs = _reduce_inputs(c, shape, dtype, salt, "AVG")
                t = inputs[c.rank].clone()
                dist.all_reduce(t, op=dist.ReduceOp.AVG)
                c.rep.check(case, t, reference_reduce(inputs, "AVG", dtype), TOLERANCE[dtype])


def _float_ops(c):
    """(name, ReduceOp, reference(list of inputs) -> expected) for AVG and PREMUL_SUM."""
    ops = [("AVG", dist.ReduceOp.AVG, lambda xs, dt: reference_reduce(xs, "AVG", dt))]
    for factor in (0.5, 3.0):
        ops.append((f"PREMUL_SUM({factor})", dist._make_nccl_premul_sum(factor),
                    lambda xs, dt, f=factor: reference_reduce([x.double() * f for x in xs],
                                                              "SUM", torch.float64).to(dt)))
    return ops


@section
def float_reduce_ops(c):
    """AVG and PREMUL_SUM (dist._make_nccl_premul_sum) on the float dtypes through
    reduce, all_reduce_coalesced, reduce_scatter and _reduce_scatter_base."""
    w, r = c.world, c.rank
    for dtype in FLOAT_DTYPES:
        for opname, op, ref in _float_ops(c):
            dn = dname(dtype)
            salt = c.next_salt() * 10
            if c.backend == "gloo":
                c.rep.skip(f"{opname} {dn}", "gloo has neither AVG nor PREMUL_SUM")
                continue
            tol = TOLERANCE[dtype]
            xs = [make_input(q, (7,), dtype, salt) for q in range(w)]
            case = f"all_reduce {opname} {dn} [7]"
            with c.rep.case(case):
                t = xs[r].clone()
                dist.all_reduce(t, op=op)
                c.rep.check(case, t, ref(xs, dtype), tol)
            root = w - 1
            case = f"reduce {opname} root={root} {dn} [7]"
            with c.rep.case(case):
                t = xs[r].clone()
                dist.reduce(t, dst=root, op=op)
                if r == root:
                    c.rep.check(case, t, ref(xs, dtype), tol)
            case = f"all_reduce_coalesced {opname} {dn} [7, 1]"
            with c.rep.case(case):
                ys = [make_input(q, (1,), dtype, salt + 1) for q in range(w)]
                ts = [xs[r].clone(), ys[r].clone()]
                dist.all_reduce_coalesced(ts, op=op)
                c.rep.check(case + " tensor 0", ts[0], ref(xs, dtype), tol)
                c.rep.check(case + " tensor 1", ts[1], ref(ys, dtype), tol)
            case = f"_reduce_scatter_base {opname} {dn} [3 per rank]"
            with c.rep.case(case):
                big = [make_input(q, (3 * w,), dtype, salt + 2) for q in range(w)]
                out = garbage((3,), dtype)
                dist._reduce_scatter_base(out, big[r].clone(), op=op)
                c.rep.check(case, out, ref(big, dtype)[3 * r:3 * r + 3], tol)
            case = f"reduce_scatter {opname} {dn} [3 per rank]"
            with c.rep.case(case):
                blocks = [[make_input(q, (3,), dtype, salt + 3 + d) for d in range(w)]
                          for q in range(w)]
                out = garbage((3,), dtype)
                dist.reduce_scatter(out, [b.clone() for b in blocks[r]], op=op)
                c.rep.check(case, out, ref([blocks[q][r] for q in range(w)], dtype), tol)


@section
def all_reduce_large(c):
    """2**20 + 3 elements: several pipeline slices and a ragged last one."""
    for dtype, op in ((torch.float32, "SUM"), (torch.float32, "MAX"),
                      (torch.int32, "SUM"), (torch.bfloat16, "SUM")):
        case = f"all_reduce {op} {dname(dtype)} [{LARGE}]"
        salt = c.next_salt()
        if gloo_lacks(c.backend, op, dtype):
            c.rep.skip(case, "gloo lacks this dtype")
            continue
        with c.rep.case(case):
            inputs = _reduce_inputs(c, (LARGE,), dtype, salt, op)
            t = inputs[c.rank].clone()
            dist.all_reduce(t, op=OPS[op])
            c.rep.check(case, t, reference_reduce(inputs, op, dtype))


@section
def all_reduce_coalesced(c):
    """dist.all_reduce_coalesced: several tensors of one dtype reduced in one call."""
    shapes = [(7,), (1,), (3, 5), (0,), (33,)]
    for dtype in DTYPES:
        for op in OPS:
            case = f"all_reduce_coalesced {op} {dname(dtype)} {[shape_name(s) for s in shapes]}"
            salts = [c.next_salt() for _ in shapes]
            if gloo_lacks(c.backend, op, dtype):
                c.rep.skip(case, "gloo lacks this dtype")
                continue
            with c.rep.case(case):
                inputs = [_reduce_inputs(c, s, dtype, salt, op) for s, salt in zip(shapes, salts)]
                ts = [inp[c.rank].clone() for inp in inputs]
                dist.all_reduce_coalesced(ts, op=OPS[op])
                for k, (t, inp) in enumerate(zip(ts, inputs)):
                    c.rep.check(f"{case} tensor {k}", t, reference_reduce(inp, op, dtype))


@section
def broadcast(c):
    """broadcast from every root; non-roots start with different data."""
    for dtype in DTYPES:
        for shape in SHAPES + [SCALAR]:
            for root in range(c.world):
                case = f"broadcast root={root} {dname(dtype)} [{shape_name(shape)}]"
                salt = c.next_salt()
                if gloo_lacks(c.backend, "broadcast", dtype):
                    c.rep.skip(case, "gloo lacks this dtype")
                    continue
                with c.rep.case(case):
                    t = make_input(c.rank, shape, dtype, salt)
                    if c.rank != root:
                        t = make_input(c.rank + 100, shape, dtype, salt + 1)
                    dist.broadcast(t, src=root)
                    c.rep.check(case, t, make_input(root, shape, dtype, salt))


@section
def reduce(c):
    """reduce to every root with every op; the root's tensor holds the result."""
    for dtype in DTYPES:
        for op in OPS:
            for shape in SMALL_SHAPES:
                for root in range(c.world):
                    case = f"reduce {op} root={root} {dname(dtype)} [{shape_name(shape)}]"
                    salt = c.next_salt()
                    if gloo_lacks(c.backend, op, dtype):
                        c.rep.skip(case, "gloo lacks this dtype")
                        continue
                    with c.rep.case(case):
                        inputs = _reduce_inputs(c, shape, dtype, salt, op)
                        t = inputs[c.rank].clone()
                        dist.reduce(t, dst=root, op=OPS[op])
                        if c.rank == root:
                            c.rep.check(case, t, reference_reduce(inputs, op, dtype))


@section
def all_gather(c):
    """all_gather into a list of per-rank tensors."""
    for dtype in DTYPES:
        for shape in SHAPES + [SCALAR]:
            case = f"all_gather {dname(dtype)} [{shape_name(shape)}]"
            salt = c.next_salt()
            if gloo_lacks(c.backend, "all_gather", dtype):
                c.rep.skip(case, "gloo lacks this dtype")
                continue
            if c.backend == "gloo" and shape == (0,):
                c.rep.skip(case, "gloo 1.13 dies of SIGFPE on an empty all_gather")
                continue
            with c.rep.case(case):
                out = [garbage(shape, dtype) for _ in range(c.world)]
                dist.all_gather(out, make_input(c.rank, shape, dtype, salt))
                for r in range(c.world):
                    c.rep.check(f"{case} block {r}", out[r], make_input(r, shape, dtype, salt))


@section
def all_gather_base(c):
    """dist._all_gather_base: one output tensor, rank r's block at offset r."""
    for dtype in DTYPES:
        for shape in SHAPES:
            case = f"_all_gather_base {dname(dtype)} [{shape_name(shape)}]"
            salt = c.next_salt()
            if gloo_lacks(c.backend, "all_gather_base", dtype):
                c.rep.skip(case, "gloo has no _allgather_base")
                continue
            with c.rep.case(case):
                out = garbage(stacked(c.world, shape), dtype)
                dist._all_gather_base(out, make_input(c.rank, shape, dtype, salt))
                expected = torch.cat([make_input(r, shape, dtype, salt) for r in range(c.world)])
                c.rep.check(case, out, expected)


@section
def all_gather_coalesced(c):
    """dist.all_gather_coalesced: several input tensors gathered in one call."""
    shapes = [(7,), (1,), (3, 5), (0,)]
    for dtype in DTYPES:
        case = f"all_gather_coalesced {dname(dtype)} {[shape_name(s) for s in shapes]}"
        salt = c.next_salt()
        if gloo_lacks(c.backend, "all_gather_coalesced", dtype):
            c.rep.skip(case, "gloo lacks this dtype")
            continue
        with c.rep.case(case):
            inp = [make_input(c.rank, s, dtype, salt + k) for k, s in enumerate(shapes)]
            out = [[garbage(s, dtype) for s in shapes] for _ in range(c.world)]
            dist.all_gather_coalesced(out, inp)
            for r in range(c.world):
                for k, s in enumerate(shapes):
                    c.rep.check(f"{case} from rank {r} tensor {k}", out[r][k],
                                make_input(r, s, dtype, salt + k))


@section
def reduce_scatter(c):
    """reduce_scatter (list form): rank r gets the reduction of every rank's block r."""
    for dtype in DTYPES:
        for op in OPS:
            for shape in SMALL_SHAPES:
                case = f"reduce_scatter {op} {dname(dtype)} [{shape_name(shape)}]"
                salt = c.next_salt()
                if gloo_lacks(c.backend, "reduce_scatter", dtype):
                    c.rep.skip(case, "gloo has no reduce_scatter")
                    continue
                with c.rep.case(case):
                    # blocks[src][dst]: what rank src contributes to rank dst's result
                    blocks = [[make_input(src, shape, dtype, salt + 31 * dst, op == "PRODUCT")
                               for dst in range(c.world)] for src in range(c.world)]
                    out = garbage(shape, dtype)
                    dist.reduce_scatter(out, [b.clone() for b in blocks[c.rank]], op=OPS[op])
                    expected = reference_reduce([blocks[src][c.rank] for src in range(c.world)],
                                                op, dtype)
                    c.rep.check(case, out, expected)


@section
def reduce_scatter_base(c):
    """dist._reduce_scatter_base: one input tensor of world blocks, one output block."""
    for dtype in DTYPES:
        for op in OPS:
            for shape in SMALL_SHAPES:
                case = f"_reduce_scatter_base {op} {dname(dtype)} [{shape_name(shape)}]"
                salt = c.next_salt()
                if gloo_lacks(c.backend, "reduce_scatter_base", dtype):
                    c.rep.skip(case, "gloo has no _reduce_scatter_base")
                    continue
                with c.rep.case(case):
                    big = stacked(c.world, shape)
                    inputs = _reduce_inputs(c, big, dtype, salt, op)
                    out = garbage(shape, dtype)
                    dist._reduce_scatter_base(out, inputs[c.rank].clone(), op=OPS[op])
                    full = reference_reduce(inputs, op, dtype)
                    rows = shape[0]
                    c.rep.check(case, out, full[c.rank * rows:(c.rank + 1) * rows])


def _a2a_block(src, dst, shape, dtype, salt):
    """What rank src sends to rank dst."""
    return make_input(src, shape, dtype, salt + 11 * dst)


def _uneven(src, dst, pattern, world):
    """Block length from src to dst for the uneven all_to_all cases (zeros included)."""
    if pattern == "mixed":
        return ((src * 3 + dst * 2) % 3) * 5          # 0, 5 or 10
    if pattern == "one":                              # a single non-empty block
        return 4 if (src, dst) == (0, world - 1) else 0
    if pattern == "zeros":
        return 0
    raise ValueError(pattern)


@section
def all_to_all(c):
    """all_to_all (list form), equal blocks and uneven blocks (some empty)."""
    for dtype in DTYPES:
        cases = [("even", s) for s in SMALL_SHAPES] + [("uneven", None)]
        for kind, shape in cases:
            case = f"all_to_all {kind} {dname(dtype)} [{shape_name(shape) if shape else 'mixed'}]"
            salt = c.next_salt()
            if gloo_lacks(c.backend, "all_to_all", dtype):
                c.rep.skip(case, "gloo has no all_to_all (list form)")
                continue

            def shp(src, dst):
                return shape if kind == "even" else (_uneven(src, dst, "mixed", c.world),)
            with c.rep.case(case):
                inp = [_a2a_block(c.rank, d, shp(c.rank, d), dtype, salt) for d in range(c.world)]
                out = [garbage(shp(s, c.rank), dtype) for s in range(c.world)]
                dist.all_to_all(out, inp)
                for s in range(c.world):
                    c.rep.check(f"{case} block from {s}", out[s],
                                _a2a_block(s, c.rank, shp(s, c.rank), dtype, salt))


@section
def all_to_all_single(c):
    """all_to_all_single: no splits, explicit equal splits, uneven splits (zeros)."""
    w, r = c.world, c.rank
    for dtype in DTYPES:
        if gloo_lacks(c.backend, "all_to_all_single", dtype):
            c.rep.skip(f"all_to_all_single {dname(dtype)}", "gloo lacks this dtype")
            continue
        # Equal blocks, with and without explicit split sizes.
        for explicit in (False, True):
            for shape in SMALL_SHAPES:
                case = (f"all_to_all_single {'splits' if explicit else 'no-splits'} "
                        f"{dname(dtype)} block [{shape_name(shape)}]")
                salt = c.next_salt()
                with c.rep.case(case):
                    rows = shape[0]
                    inp = torch.cat([_a2a_block(r, d, shape, dtype, salt) for d in range(w)])
                    out = garbage(stacked(w, shape), dtype)
                    splits = [rows] * w if explicit else None
                    dist.all_to_all_single(out, inp, splits, splits)
                    expected = torch.cat([_a2a_block(s, r, shape, dtype, salt) for s in range(w)])
                    c.rep.check(case, out, expected)
        # Uneven blocks; rows of width 1 (1-D) and width 3 (2-D, split along dim 0).
        for pattern in ("mixed", "one", "zeros"):
            for width in (None, 3):
                case = f"all_to_all_single uneven={pattern} {dname(dtype)} width={width or 1}"
                salt = c.next_salt()

                def blk(src, dst):
                    n = _uneven(src, dst, pattern, w)
                    shape = (n,) if width is None else (n, width)
                    return _a2a_block(src, dst, shape, dtype, salt)
                with c.rep.case(case):
                    in_splits = [_uneven(r, d, pattern, w) for d in range(w)]
                    out_splits = [_uneven(s, r, pattern, w) for s in range(w)]
                    inp = torch.cat([blk(r, d) for d in range(w)])
                    expected = torch.cat([blk(s, r) for s in range(w)])
                    out = garbage(tuple(expected.shape), dtype)
                    dist.all_to_all_single(out, inp, out_splits, in_splits)
                    c.rep.check(f"{case} splits in={in_splits} out={out_splits}", out, expected)


@section
def gather(c):
    """gather to every root."""
    for dtype in DTYPES:
        for shape in SMALL_SHAPES:
            for root in range(c.world):
                case = f"gather root={root} {dname(dtype)} [{shape_name(shape)}]"
                salt = c.next_salt()
                if gloo_lacks(c.backend, "gather", dtype):
                    c.rep.skip(case, "gloo lacks this dtype")
                    continue
                with c.rep.case(case):
                    out = [garbage(shape, dtype) for _ in range(c.world)] if c.rank == root else None
                    dist.gather(make_input(c.rank, shape, dtype, salt), out, dst=root)
                    if c.rank == root:
                        for s in range(c.world):
                            c.rep.check(f"{case} block from {s}", out[s],
                                        make_input(s, shape, dtype, salt))


@section
def scatter(c):
    """scatter from every root."""
    for dtype in DTYPES:
        for shape in SMALL_SHAPES:
            for root in range(c.world):
                case = f"scatter root={root} {dname(dtype)} [{shape_name(shape)}]"
                salt = c.next_salt()
                if gloo_lacks(c.backend, "scatter", dtype):
                    c.rep.skip(case, "gloo lacks this dtype")
                    continue
                with c.rep.case(case):
                    blocks = [make_input(root, shape, dtype, salt + 17 * d) for d in range(c.world)]
                    out = garbage(shape, dtype)
                    dist.scatter(out, blocks if c.rank == root else None, src=root)
                    c.rep.check(case, out, blocks[c.rank])


def _needs_peers(c, name):
    if c.world < 2:
        c.rep.skip(name, "needs at least 2 ranks")
        return True
    return False


P2P_SHAPES = [(0,), (1,), (7,), (4099,), (3, 5)]


@section
def send_recv(c):
    """Blocking send/recv for every ordered pair of ranks, one pair at a time."""
    if _needs_peers(c, "send_recv"):
        return
    for dtype in DTYPES:
        for shape in P2P_SHAPES:
            salt = c.next_salt() * 131
            for a in range(c.world):
                for b in range(c.world):
                    if a == b or c.rank not in (a, b):
                        continue
                    case = f"send {a}->{b} {dname(dtype)} [{shape_name(shape)}]"
                    pair_salt = salt + a * 7 + b
                    with c.rep.case(case, participants=2):
                        if c.rank == a:
                            dist.send(make_input(a, shape, dtype, pair_salt), dst=b)
                        else:
                            t = garbage(shape, dtype)
                            dist.recv(t, src=a)
                            c.rep.check(case, t, make_input(a, shape, dtype, pair_salt))


@section
def isend_irecv(c):
    """Crossing order: every rank isends two messages to every peer first, then
    posts the irecvs, then waits for everything (sends first)."""
    if _needs_peers(c, "isend_irecv"):
        return
    w, r = c.world, c.rank
    for dtype in DTYPES:
        for shape in P2P_SHAPES:
            case = f"isend/irecv crossing {dname(dtype)} [{shape_name(shape)}]"
            salt = c.next_salt() * 1000

            def msg(src, dst, k):
                return make_input(src, shape, dtype, salt + 10 * dst + k)
            with c.rep.case(case):
                peers = [p for p in range(w) if p != r]
                sends = [dist.isend(msg(r, p, k), dst=p) for p in peers for k in (0, 1)]
                bufs = {(p, k): garbage(shape, dtype) for p in peers for k in (0, 1)}
                recvs = [dist.irecv(bufs[(p, k)], src=p) for p in peers for k in (0, 1)]
                for work in sends + recvs:
                    work.wait()
                for (p, k), t in bufs.items():
                    c.rep.check(f"{case} message {k} from {p}", t, msg(p, r, k))


@section
def batch_isend_irecv(c):
    """batch_isend_irecv around the ring (send right, receive left), both list
    orders, and a bidirectional ring (send and receive on both sides)."""
    if _needs_peers(c, "batch_isend_irecv"):
        return
    w, r = c.world, c.rank
    right, left = (r + 1) % w, (r - 1) % w
    for dtype in DTYPES:
        for shape in P2P_SHAPES:
            for variant in ("send-first", "recv-first", "bidirectional"):
                case = f"batch_isend_irecv {variant} {dname(dtype)} [{shape_name(shape)}]"
                salt = c.next_salt() * 1000
                with c.rep.case(case):
                    from_left = garbage(shape, dtype)
                    send = dist.P2POp(dist.isend, make_input(r, shape, dtype, salt + right), right)
                    recv = dist.P2POp(dist.irecv, from_left, left)
                    ops = [send, recv] if variant != "recv-first" else [recv, send]
                    if variant == "bidirectional":
                        from_right = garbage(shape, dtype)
                        ops += [dist.P2POp(dist.isend,
                                           make_input(r, shape, dtype, salt + 500 + left), left),
                                dist.P2POp(dist.irecv, from_right, right)]
                    for work in dist.batch_isend_irecv(ops):
                        work.wait()
                    c.rep.check(f"{case} from left", from_left,
                                make_input(left, shape, dtype, salt + r))
                    if variant == "bidirectional":
                        c.rep.check(f"{case} from right", from_right,
                                    make_input(right, shape, dtype, salt + 500 + r))


@section
def barrier(c):
    """No rank leaves barrier() before every rank has entered it: each rank bumps a
    store counter, the ranks arrive staggered, and after the barrier the counter
    must already be complete."""
    store = default_store()
    for k in range(5):
        case = f"barrier round {k}"
        with c.rep.case(case):
            time.sleep(0.03 * ((c.rank + k) % c.world))
            key = f"chorus_test/barrier/{k}"
            store.add(key, 1)
            if k % 2:
                dist.barrier(async_op=True).wait()
            else:
                dist.barrier()
            arrived = store.add(key, 0)
            if arrived != c.world:
                c.rep.fail(case, f"left the barrier when only {arrived} of {c.world} ranks had entered")


@section
def objects(c):
    """The object collectives (pickles carried by all_gather/broadcast/gather/scatter)."""
    def obj(r):
        return {"rank": r, "list": list(range(r * 3)), "text": "x" * (r * 1000 + 1), "t": (r, None)}
    with c.rep.case("all_gather_object"):
        got = [None] * c.world
        dist.all_gather_object(got, obj(c.rank))
        if got != [obj(r) for r in range(c.world)]:
            c.rep.fail("all_gather_object", f"got {str(got)[:300]}")
    for root in range(c.world):
        case = f"broadcast_object_list root={root}"
        with c.rep.case(case):
            lst = [obj(root), "s", 12345] if c.rank == root else [None, None, None]
            dist.broadcast_object_list(lst, src=root)
            if lst != [obj(root), "s", 12345]:
                c.rep.fail(case, f"got {str(lst)[:300]}")
        case = f"gather_object root={root}"
        with c.rep.case(case):
            got = [None] * c.world if c.rank == root else None
            dist.gather_object(obj(c.rank), got, dst=root)
            if c.rank == root and got != [obj(r) for r in range(c.world)]:
                c.rep.fail(case, f"got {str(got)[:300]}")
        case = f"scatter_object_list root={root}"
        with c.rep.case(case):
            got = [None]
            dist.scatter_object_list(got, [obj(r + 10) for r in range(c.world)]
                                     if c.rank == root else None, src=root)
            if got[0] != obj(c.rank + 10):
                c.rep.fail(case, f"got {str(got)[:300]}")


@section
def in_place(c):
    """In-place layouts: _all_gather_base whose input is the rank's own block of the
    output (as FSDP calls it), _reduce_scatter_base whose output is the rank's own
    block of the input, all_gather with the input as output[rank]; and
    all_to_all_single with one tensor as input and output (right, or refused)."""
    w, r = c.world, c.rank
    for dtype in (torch.float32, torch.int64, torch.bfloat16):
        for n in (1, 7, 4099):
            salt = c.next_salt() * 10
            dn = dname(dtype)
            case = f"_all_gather_base in place {dn} [{n}]"
            if gloo_lacks(c.backend, "all_gather_base", dtype):
                c.rep.skip(case, "gloo has no _allgather_base")
            else:
                with c.rep.case(case):
                    out = garbage((w * n,), dtype)
                    out[r * n:(r + 1) * n] = make_input(r, (n,), dtype, salt)
                    dist._all_gather_base(out, out[r * n:(r + 1) * n])
                    c.rep.check(case, out, torch.cat([make_input(q, (n,), dtype, salt)
                                                      for q in range(w)]))
            case = f"_reduce_scatter_base in place {dn} [{n}]"
            if gloo_lacks(c.backend, "reduce_scatter_base", dtype):
                c.rep.skip(case, "gloo has no _reduce_scatter_base")
            else:
                with c.rep.case(case):
                    inputs = [make_input(q, (w * n,), dtype, salt + 1) for q in range(w)]
                    buf = inputs[r].clone()
                    dist._reduce_scatter_base(buf[r * n:(r + 1) * n], buf)
                    c.rep.check(case, buf[r * n:(r + 1) * n],
                                reference_reduce(inputs, "SUM", dtype)[r * n:(r + 1) * n])
            case = f"all_gather with the input as output[rank] {dn} [{n}]"
            if gloo_lacks(c.backend, "all_gather", dtype):
                c.rep.skip(case, "gloo lacks this dtype")
            else:
                with c.rep.case(case):
                    mine = make_input(r, (n,), dtype, salt + 2)
                    out = [garbage((n,), dtype) for _ in range(w)]
                    out[r] = mine
                    dist.all_gather(out, mine)
                    for q in range(w):
                        c.rep.check(f"{case} block {q}", out[q], make_input(q, (n,), dtype, salt + 2))
            case = f"all_to_all_single with input is output {dn} [{n} per block]"
            if c.backend == "gloo":
                c.rep.skip(case, "gloo 1.13 corrupts an all_to_all_single whose input is its output")
                continue
            with c.rep.case(case):
                buf = torch.cat([_a2a_block(r, d, (n,), dtype, salt + 3) for d in range(w)])
                try:
                    dist.all_to_all_single(buf, buf)
                except RuntimeError as e:
                    if not str(e).strip():
                        raise
                    c.rep.note(case, f"refused: {str(e).splitlines()[0][:200]}")
                    continue
                c.rep.check(case, buf, torch.cat([_a2a_block(s, r, (n,), dtype, salt + 3)
                                                  for s in range(w)]))


@section
def large_other_ops(c):
    """2**18 + 3 float32 elements per block through the other collectives (several
    pipeline slices, a ragged last one)."""
    w, r = c.world, c.rank
    n = 2 ** 18 + 3
    f32 = torch.float32
    salt = c.next_salt() * 10
    mine = make_input(r, (n,), f32, salt)
    every = [make_input(q, (n,), f32, salt) for q in range(w)]
    with c.rep.case(f"broadcast [{n}] root={w - 1}"):
        t = mine.clone()
        dist.broadcast(t, src=w - 1)
        c.rep.check(f"broadcast [{n}] root={w - 1}", t, every[w - 1])
    with c.rep.case(f"reduce SUM [{n}] root=0"):
        t = mine.clone()
        dist.reduce(t, dst=0)
        if r == 0:
            c.rep.check(f"reduce SUM [{n}] root=0", t, reference_reduce(every, "SUM", f32))
    with c.rep.case(f"all_gather [{n}]"):
        out = [torch.zeros(n) for _ in range(w)]
        dist.all_gather(out, mine)
        for q in range(w):
            c.rep.check(f"all_gather [{n}] block {q}", out[q], every[q])
    if not gloo_lacks(c.backend, "all_gather_base"):
        with c.rep.case(f"_all_gather_base [{n}]"):
            out = torch.zeros(w * n)
            dist._all_gather_base(out, mine)
            c.rep.check(f"_all_gather_base [{n}]", out, torch.cat(every))
    if not gloo_lacks(c.backend, "reduce_scatter_base"):
        with c.rep.case(f"_reduce_scatter_base SUM [{n}]"):
            ins = [make_input(q, (w * n,), f32, salt + 1) for q in range(w)]
            out = torch.zeros(n)
            dist._reduce_scatter_base(out, ins[r].clone())
            c.rep.check(f"_reduce_scatter_base SUM [{n}]", out,
                        reference_reduce(ins, "SUM", f32)[r * n:(r + 1) * n])
    with c.rep.case(f"all_to_all_single [{n} per block]"):
        inp = torch.cat([_a2a_block(r, d, (n,), f32, salt + 2) for d in range(w)])
        out = torch.zeros(w * n)
        dist.all_to_all_single(out, inp)
        c.rep.check(f"all_to_all_single [{n} per block]", out,
                    torch.cat([_a2a_block(s, r, (n,), f32, salt + 2) for s in range(w)]))


@section
def p2p_tags(c):
    """Tags and any-source receives between ranks 0 and 1: honoured, or refused with
    an error (ignoring a tag would silently swap the two messages)."""
    salt = c.next_salt() * 10          # before any early return: same on every rank
    if _needs_peers(c, "p2p_tags"):
        return
    if c.rank > 1:
        return
    peer = 1 - c.rank
    a = make_input(0, (64,), torch.float32, salt)
    b = make_input(0, (64,), torch.float32, salt + 1)
    case = "tags: two messages received in the other order"
    with c.rep.case(case, participants=2):
        try:
            if c.rank == 0:
                works = [dist.isend(a, peer, tag=1), dist.isend(b, peer, tag=2)]
            else:
                got_b, got_a = torch.zeros(64), torch.zeros(64)
                works = [dist.irecv(got_b, peer, tag=2), dist.irecv(got_a, peer, tag=1)]
            for work in works:
                work.wait()
        except RuntimeError as e:
            if "tag" not in str(e).lower():
                raise
            c.rep.note(case, f"refused: {str(e).splitlines()[0][:200]}")
        else:
            if c.rank == 1:
                if torch.equal(got_a, b) and torch.equal(got_b, a):
                    c.rep.fail(case, "tags ignored: the two messages arrived swapped")
                else:
                    c.rep.check(f"{case} (tag 1)", got_a, a)
                    c.rep.check(f"{case} (tag 2)", got_b, b)
    case = "recv without src (any source)"
    with c.rep.case(case, participants=2):
        if c.rank == 0:
            dist.send(a, peer)
        else:
            t = torch.zeros(64)
            try:
                sender = dist.recv(t)
            except RuntimeError as e:
                if not str(e).strip():
                    raise
                c.rep.note(case, f"refused: {str(e).splitlines()[0][:200]}")
                dist.recv(t, src=0)             # take the message rank 0 sent
            else:
                if sender != 0:
                    c.rep.fail(case, f"recv returned sender {sender!r}, expected 0")
            c.rep.check(case, t, a)


def _contiguous_case(c, case, run, check, gloo_gets_it_wrong=False):
    """Run a collective on non-contiguous tensors: it may raise a RuntimeError that
    says "contiguous", otherwise the results (checked by check()) must be right."""
    if gloo_gets_it_wrong and c.backend == "gloo":
        # torch 1.13's gloo silently treats a strided view as contiguous memory.
        c.rep.skip(case, "gloo 1.13 corrupts strided views (uses the storage as if contiguous)")
        return
    with c.rep.case(case):
        try:
            run()
        except RuntimeError as e:
            if "contiguous" in str(e).lower():
                c.rep.note(case, f"refused with: {str(e).splitlines()[0][:200]}")
                return
            raise
        check()


@section
def non_contiguous(c):
    """Strided views and transposes: rejected clearly, or handled in place with the
    rest of the underlying storage untouched."""
    w, r = c.world, c.rank
    f32 = torch.float32
    salt = c.next_salt()

    # all_reduce on every other column of a 6x8 tensor
    inputs = [make_input(q, (6, 8), f32, salt) for q in range(w)]
    base = inputs[r].clone()
    view = base[:, ::2]
    exp = inputs[r].clone()
    exp[:, ::2] = reference_reduce([i[:, ::2] for i in inputs], "SUM", f32)
    _contiguous_case(c, "all_reduce on t[:, ::2]",
                     lambda: dist.all_reduce(view),
                     lambda: c.rep.check("all_reduce on t[:, ::2] (whole base tensor)", base, exp),
                     gloo_gets_it_wrong=True)

    # all_reduce on a transposed tensor (every element, permuted storage)
    inputs = [make_input(q, (5, 7), torch.int64, salt + 1) for q in range(w)]
    t = inputs[r].clone().t()
    exp = reference_reduce(inputs, "MAX", torch.int64).t()
    _contiguous_case(c, "all_reduce MAX on t.t()",
                     lambda: dist.all_reduce(t, op=dist.ReduceOp.MAX),
                     lambda: c.rep.check("all_reduce MAX on t.t()", t, exp))

    # broadcast into a strided view, from the last rank
    root = w - 1
    base2 = make_input(r + 50, (4, 6), f32, salt + 2)
    before = base2.clone()
    view2 = base2[::2, 1::2]
    src_values = make_input(root, (2, 3), f32, salt + 3)
    if r == root:
        view2.copy_(src_values)
        before = base2.clone()

    def check_bcast():
        exp2 = before.clone()
        exp2[::2, 1::2] = src_values
        c.rep.check("broadcast into t[::2, 1::2] (whole base tensor)", base2, exp2)
    _contiguous_case(c, "broadcast into t[::2, 1::2]",
                     lambda: dist.broadcast(view2, src=root), check_bcast,
                     gloo_gets_it_wrong=True)

    # a contiguous view that starts inside its storage: must simply work
    inputs = [make_input(q, (40,), torch.int32, salt + 5) for q in range(w)]
    base3 = inputs[r].clone()
    view3 = base3[13:30]
    exp3 = inputs[r].clone()
    exp3[13:30] = reference_reduce([i[13:30] for i in inputs], "SUM", torch.int32)
    with c.rep.case("all_reduce on t[13:30] (contiguous, storage offset 13)"):
        dist.all_reduce(view3)
        c.rep.check("all_reduce on t[13:30] (whole base tensor)", base3, exp3)

    # all_gather of a non-contiguous input into contiguous outputs
    src = make_input(r, (3, 8), f32, salt + 4)[:, 1::2]
    outs = [garbage((3, 4), f32) for _ in range(w)]
    _contiguous_case(
        c, "all_gather of t[:, 1::2]",
        lambda: dist.all_gather(outs, src),
        lambda: [c.rep.check(f"all_gather of t[:, 1::2] block {q}", outs[q],
                             make_input(q, (3, 8), f32, salt + 4)[:, 1::2]) for q in range(w)])


if __name__ == "__main__":
    sectioned_main(SECTIONS, __doc__)
