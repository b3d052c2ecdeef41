"""Misuse gives a clear Python exception on every rank, never a crash or a hang,
and the process group keeps working afterwards.

One rank of a world of 2; run by tests/python/test_errors.py. Every bad call is
made identically on every rank (so every rank can detect it locally). After each
one a small all_reduce proves the group is still usable.

Sections:
  mismatched_dtype  tensors of different dtypes in one call (through torch's API
                    and straight to the ProcessGroup object, bypassing torch's checks)
  wrong_sizes       _all_gather_base / _reduce_scatter_base output or input of the
                    wrong size, all_to_all_single splits that do not add up, a root
                    out of range, wrong list lengths
  bitwise_ops       BAND/BOR/BXOR: refused with a RuntimeError naming the op, or
                    supported for integers and bool with correct results; always
                    refused for floats
  unusual_tensors   sparse (refused or right) and complex (torch passes a real view)
  after_destroy     calls after destroy_process_group() raise (runs last)
"""

import torch
import torch.distributed as dist

from rankutil import make_input, reference_reduce, sectioned_main

SECTIONS = {}


def section(fn):
    SECTIONS[fn.__name__] = fn
    return fn


def first_line(e):
    text = str(e).strip()
    return f"{type(e).__name__}: {text.splitlines()[0][:300] if text else ''}"


def still_works(c, after):
    case = f"all_reduce after: {after}"
    with c.rep.case(case):
        salt = c.next_salt()
        xs = [make_input(r, (5,), torch.float32, salt) for r in range(c.world)]
        t = xs[c.rank].clone()
        dist.all_reduce(t)
        c.rep.check(case, t, reference_reduce(xs, "SUM", torch.float32))


# Misuse torch 1.13's gloo does not detect (it runs the call); checked for chorus.
GLOO_DOES_NOT_DETECT = {
    "ProcessGroup.alltoall_base(int64 output, float32 input)",
    "all_to_all_single without splits, rows not divisible by world",
}


def expect_error(c, case, fn, mention=None, on_success=None):
    """fn() must raise an exception with a non-empty message (mentioning one of
    `mention`, case-insensitively, when given); then the group must still work.
    on_success(): when fn() did not raise, a description of what it did."""
    if c.backend == "gloo" and case in GLOO_DOES_NOT_DETECT:
        c.rep.skip(case, "gloo does not detect this misuse")
        return
    with c.rep.case(case):
        try:
            fn()
        except Exception as e:  # noqa: BLE001
            text = str(e).strip()
            if not text:
                c.rep.fail(case, f"raised {type(e).__name__} with an empty message")
            elif mention and not any(m.lower() in text.lower() for m in mention):
                c.rep.fail(case, f"the error does not mention any of {mention}: {first_line(e)}")
            else:
                c.rep.info(case, f"raised {first_line(e)}")
        else:
            extra = f" ({on_success()})" if on_success else ""
            c.rep.fail(case, "no exception was raised" + extra)
    still_works(c, case)


def pg():
    """The default group's ProcessGroup object: calling it skips torch's Python checks."""
    return dist.distributed_c10d._get_default_group()


F32, F64, I64 = torch.float32, torch.float64, torch.int64


@section
def mismatched_dtype(c):
    w = c.world
    expect_error(c, "all_reduce_coalesced([float32, float64])",
                 lambda: dist.all_reduce_coalesced([torch.ones(3, dtype=F32), torch.ones(3, dtype=F64)]))
    expect_error(c, "all_gather(float64 outputs, float32 input)",
                 lambda: dist.all_gather([torch.zeros(3, dtype=F64) for _ in range(w)], torch.ones(3)))
    expect_error(c, "_all_gather_base(float64 output, float32 input)",
                 lambda: dist._all_gather_base(torch.zeros(3 * w, dtype=F64), torch.ones(3)))
    expect_error(c, "_reduce_scatter_base(float64 output, float32 input)",
                 lambda: dist._reduce_scatter_base(torch.zeros(3, dtype=F64), torch.ones(3 * w)))
    expect_error(c, "all_to_all_single(int64 output, float32 input)",
                 lambda: dist.all_to_all_single(torch.zeros(2 * w, dtype=I64), torch.ones(2 * w)))
    # Straight to the backend: these skip torch's Python-side dtype checks.
    expect_error(c, "ProcessGroup.allreduce([float32, float64])",
                 lambda: pg().allreduce([torch.ones(4, dtype=F32), torch.ones(4, dtype=F64)]).wait())
    expect_error(c, "ProcessGroup.allgather(float64 outputs, float32 input)",
                 lambda: pg().allgather([[torch.zeros(4, dtype=F64) for _ in range(w)]],
                                        [torch.ones(4)]).wait())
    expect_error(c, "ProcessGroup.alltoall_base(int64 output, float32 input)",
                 lambda: pg().alltoall_base(torch.zeros(2 * w, dtype=I64), torch.ones(2 * w),
                                            [], []).wait())
    expect_error(c, "ProcessGroup.reduce_scatter(float32 output, float64 inputs)",
                 lambda: pg().reduce_scatter([torch.zeros(2)],
                                             [[torch.ones(2, dtype=F64) for _ in range(w)]]).wait())
    mixed = [torch.full((2,), c.rank + 1, dtype=I64), torch.full((3,), c.rank + 1.0)]
    total = w * (w + 1) // 2

    # Mixed dtypes in one coalesced all-reduce: chorus serves them (one Chorus all-reduce per
    # tensor, in one group), so there the results must be right; gloo refuses them.
    case = "ProcessGroup.allreduce_coalesced([int64, float32])"
    if c.backend == "chorus":
        with c.rep.case(case):
            pg().allreduce_coalesced(mixed).wait()
            if not (mixed[0].tolist() == [total] * 2 and mixed[1].tolist() == [float(total)] * 3):
                c.rep.fail(case, f"int64 {mixed[0].tolist()}, float32 {mixed[1].tolist()}, "
                                 f"expected {total} everywhere")
    else:
        expect_error(c, case, lambda: pg().allreduce_coalesced(mixed).wait())


@section
def wrong_sizes(c):
    w = c.world
    expect_error(c, "_all_gather_base output one element too large",
                 lambda: dist._all_gather_base(torch.zeros(3 * w + 1), torch.ones(3)))
    expect_error(c, "_all_gather_base output one element too small",
                 lambda: dist._all_gather_base(torch.zeros(3 * w - 1), torch.ones(3)))
    expect_error(c, "_reduce_scatter_base input not world x output",
                 lambda: dist._reduce_scatter_base(torch.zeros(3), torch.ones(3 * w + 2)))
    expect_error(c, "all_to_all_single input splits sum != input rows",
                 lambda: dist.all_to_all_single(torch.zeros(2 * w), torch.ones(2 * w),
                                                [2] * w, [2] * (w - 1) + [3]))
    expect_error(c, "all_to_all_single output splits sum != output rows",
                 lambda: dist.all_to_all_single(torch.zeros(2 * w), torch.ones(2 * w),
                                                [2] * (w - 1) + [1], [2] * w))
    expect_error(c, "all_to_all_single more split sizes than ranks",
                 lambda: dist.all_to_all_single(torch.zeros(2 * w + 2), torch.ones(2 * w + 2),
                                                [2] * (w + 1), [2] * (w + 1)))
    expect_error(c, "all_to_all_single without splits, rows not divisible by world",
                 lambda: dist.all_to_all_single(torch.zeros(w + 1), torch.ones(w + 1)))
    expect_error(c, "all_gather with world+1 output tensors",
                 lambda: dist.all_gather([torch.zeros(3) for _ in range(w + 1)], torch.ones(3)))
    expect_error(c, "reduce_scatter with world+1 input tensors",
                 lambda: dist.reduce_scatter(torch.zeros(3), [torch.ones(3) for _ in range(w + 1)]))
    expect_error(c, "broadcast from root = world size",
                 lambda: dist.broadcast(torch.ones(3), src=w))
    expect_error(c, "reduce to root = world size",
                 lambda: dist.reduce(torch.ones(3), dst=w))
    neg = [-1] + [2] * (w - 2) + [5]                  # adds up to 2 * w
    expect_error(c, "all_to_all_single with a negative split size (sum still right)",
                 lambda: dist.all_to_all_single(torch.zeros(2 * w), torch.ones(2 * w), neg, neg))


INT_DTYPES = [torch.int8, torch.uint8, torch.int32, torch.int64, torch.bool]


@section
def bitwise_ops(c):
    """BAND/BOR/BXOR on integers: refused naming the op, or right; floats: refused."""
    for opname in ("BAND", "BOR", "BXOR"):
        op = getattr(dist.ReduceOp, opname)
        for dtype in INT_DTYPES:
            case = f"all_reduce {opname} {str(dtype)[6:]}"
            salt = c.next_salt()
            if c.backend == "gloo" and dtype == torch.bool:
                c.rep.skip(case, "gloo has no bool reductions")
                continue
            with c.rep.case(case):
                xs = [make_input(r, (37,), dtype, salt) for r in range(c.world)]
                t = xs[c.rank].clone()
                try:
                    dist.all_reduce(t, op=op)
                except RuntimeError as e:
                    if opname.lower() not in str(e).lower():
                        c.rep.fail(case, f"refused, but the error does not name {opname}: "
                                         f"{first_line(e)}")
                    else:
                        c.rep.info(case, f"refused: {first_line(e)}")   # documented
                else:
                    c.rep.check(case, t, reference_reduce(xs, opname, dtype))
        expect_error(c, f"all_reduce {opname} float32", lambda: dist.all_reduce(torch.ones(4), op=op))
    still_works(c, "the bitwise ops")


@section
def unusual_tensors(c):
    w, r = c.world, c.rank
    case = "all_reduce of a sparse COO tensor"
    with c.rep.case(case):
        # Rank r holds a 1 at index r and a 2 at index 7: refused, or summed right.
        idx = torch.tensor([[r, 7]])
        t = torch.sparse_coo_tensor(idx, torch.tensor([1.0, 2.0]), (8,))
        try:
            dist.all_reduce(t)
        except Exception as e:  # noqa: BLE001
            if not str(e).strip():
                c.rep.fail(case, f"raised {type(e).__name__} with an empty message")
            else:
                c.rep.note(case, f"refused: {first_line(e)}")
        else:
            expected = torch.zeros(8)
            expected[:w] = 1.0
            expected[7] += 2.0 * w
            c.rep.check(case, t.to_dense(), expected)
    still_works(c, case)
    # all_reduce: torch hands the backend a float32 view (must work). broadcast:
    # torch 1.13 passes the complex tensor through (supported, or refused clearly).
    for name, fn in (("all_reduce", lambda t: dist.all_reduce(t)),
                     ("broadcast", lambda t: dist.broadcast(t, src=w - 1))):
        case = f"{name} of a complex64 tensor"
        if c.backend == "gloo" and name == "broadcast":
            # gloo fails it in its worker thread; the error can resurface in a later barrier
            c.rep.skip(case, "gloo has no complex broadcast")
            continue
        with c.rep.case(case):
            salt = c.next_salt()
            parts = [torch.complex(make_input(q, (9,), F32, salt), make_input(q, (9,), F32, salt + 1))
                     for q in range(w)]
            t = parts[r].clone()
            try:
                fn(t)
            except RuntimeError as e:
                if name == "all_reduce" or not str(e).strip():
                    raise
                c.rep.note(case, f"refused: {first_line(e)}")
                continue
            want = sum(parts) if name == "all_reduce" else parts[w - 1]
            c.rep.check(case, torch.view_as_real(t), torch.view_as_real(want))


@section
def after_destroy(c):
    """Runs last: destroys the default group, then every call must raise."""
    with c.rep.case("destroy_process_group"):
        dist.barrier()
        dist.destroy_process_group()
    if dist.is_initialized():
        c.rep.fail("is_initialized", "still True after destroy_process_group()")
        return
    for name, fn in (("all_reduce", lambda: dist.all_reduce(torch.ones(2))),
                     ("broadcast", lambda: dist.broadcast(torch.ones(2), src=0)),
                     ("barrier", lambda: dist.barrier()),
                     ("all_gather", lambda: dist.all_gather([torch.ones(2)] * c.world, torch.ones(2)))):
        case = f"{name} after destroy_process_group()"
        with c.rep.case(case, participants=1):
            try:
                fn()
            except Exception as e:  # noqa: BLE001
                if not str(e).strip():
                    c.rep.fail(case, f"raised {type(e).__name__} with an empty message")
            else:
                c.rep.fail(case, "no exception was raised")


if __name__ == "__main__":
    sectioned_main(SECTIONS, __doc__)
