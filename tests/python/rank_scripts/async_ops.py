"""Async semantics of the Work objects the backend returns (async_op=True).

One rank; run by tests/python/test_async.py. Sections:
  wait            wait() returns True, then is_completed() and exception() is None
  poll            is_completed() becomes True on its own, without wait()
  future          get_future().wait() returns the list of output tensors
  then            fut.then(...) callbacks run on the result, and chain
  reverse_wait    many different async ops issued, waited in reverse order: all
                  right, including two all_reduces of the same tensor (in order)
  wait_timeout    wait(timeout) raises when it passes; the call completes later
  many_outstanding  64 async all_reduces in flight at once
"""

import time

import torch
import torch.distributed as dist

from rankutil import default_store, gloo_lacks, make_input, reference_reduce, sectioned_main

SECTIONS = {}
F32 = torch.float32


def section(fn):
    SECTIONS[fn.__name__] = fn
    return fn


def inputs(c, shape, dtype=F32, salt=0):
    return [make_input(r, shape, dtype, salt) for r in range(c.world)]


def check_no_exception(c, case, work):
    """work.exception() must be None after a success. torch 1.13's binding of
    Work.exception() cannot convert std::exception_ptr (pybind raises TypeError
    for every backend, gloo included); that is noted, not blamed on the backend."""
    try:
        exc = work.exception()
    except TypeError as e:
        if "exception_ptr" in str(e):
            c.rep.note(case, "Work.exception() is not callable from Python in this torch "
                             "(pybind cannot convert exception_ptr); not checked")
            return
        raise
    if exc is not None:
        c.rep.fail(case, f"exception() is {exc!r} after success")


@section
def wait(c):
    for count in (1, 7, 4099, 2 ** 18):
        case = f"all_reduce async wait [{count}]"
        with c.rep.case(case):
            xs = inputs(c, (count,), salt=c.next_salt())
            t = xs[c.rank].clone()
            work = dist.all_reduce(t, async_op=True)
            ret = work.wait()
            if ret is not True:
                c.rep.fail(case, f"wait() returned {ret!r}, expected True")
            if not work.is_completed():
                c.rep.fail(case, "is_completed() is False after wait()")
            check_no_exception(c, case, work)
            c.rep.check(case, t, reference_reduce(xs, "SUM", F32))


@section
def poll(c):
    case = "is_completed() turns True without wait()"
    with c.rep.case(case):
        xs = inputs(c, (2 ** 18,), salt=c.next_salt())
        t = xs[c.rank].clone()
        work = dist.all_reduce(t, async_op=True)
        deadline = time.monotonic() + 30
        while not work.is_completed() and time.monotonic() < deadline:
            time.sleep(0.001)
        if not work.is_completed():
            c.rep.fail(case, "still not completed after 30 s of polling")
        work.wait()
        c.rep.check(case, t, reference_reduce(xs, "SUM", F32))


@section
def future(c):
    case = "all_reduce get_future().wait()"
    with c.rep.case(case):
        xs = inputs(c, (1000,), salt=c.next_salt())
        t = xs[c.rank].clone()
        fut = dist.all_reduce(t, async_op=True).get_future()
        value = fut.wait()
        if not isinstance(value, list) or len(value) != 1 or not isinstance(value[0], torch.Tensor):
            c.rep.fail(case, f"future value is {type(value).__name__} {value!r:.200}, "
                             "expected a list of one tensor")
        else:
            c.rep.check(case + " (future value)", value[0], reference_reduce(xs, "SUM", F32))
        c.rep.check(case + " (tensor)", t, reference_reduce(xs, "SUM", F32))
        if not fut.done():
            c.rep.fail(case, "future.done() is False after wait()")
    case = "broadcast get_future().wait()"
    with c.rep.case(case):
        salt = c.next_salt()
        t = make_input(c.rank, (300,), torch.int64, salt)
        value = dist.broadcast(t, src=c.world - 1, async_op=True).get_future().wait()
        expected = make_input(c.world - 1, (300,), torch.int64, salt)
        if not isinstance(value, list) or not value:
            c.rep.fail(case, f"future value is {value!r:.200}, expected a list of tensors")
        else:
            c.rep.check(case + " (future value)", value[0], expected)
        c.rep.check(case + " (tensor)", t, expected)


@section
def then(c):
    case = "get_future().then() chain"
    with c.rep.case(case):
        xs = inputs(c, (513,), salt=c.next_salt())
        t = xs[c.rank].clone()
        fut = dist.all_reduce(t, async_op=True).get_future()
        doubled = fut.then(lambda f: f.value()[0] * 2)
        plus_one = doubled.then(lambda f: f.value() + 1)
        ref = reference_reduce(xs, "SUM", F32)
        c.rep.check(case + " then(x*2)", doubled.wait(), ref * 2)
        c.rep.check(case + " then(x*2).then(+1)", plus_one.wait(), ref * 2 + 1)
    case = "then() callback that runs and waits for another collective"
    with c.rep.case(case):
        # As DDP's PowerSGD hook does: inside a callback, all_reduce(...).get_future().wait().
        # A backend that runs callbacks on its only worker thread deadlocks here.
        xs = inputs(c, (64,), salt=c.next_salt())
        t = xs[c.rank].clone()

        def reduce_again(f):
            u = f.value()[0].clone()
            return dist.all_reduce(u, async_op=True).get_future().wait()[0]
        got = dist.all_reduce(t, async_op=True).get_future().then(reduce_again).wait()
        c.rep.check(case, got, reference_reduce(xs, "SUM", F32) * c.world)


@section
def reverse_wait(c):
    """Different ops in flight together, waited last-to-first."""
    w, r = c.world, c.rank
    case = "8 async ops waited in reverse order"
    with c.rep.case(case):
        salt = c.next_salt() * 100
        checks = []
        works = []
        # 1, 2: the same tensor reduced twice: the second must see the first's result
        # (ops run in the order issued). torch 1.13's gloo runs queued work on two
        # threads at once, so it gets this wrong; for gloo the two use separate tensors.
        xs = inputs(c, (4099,), salt=salt)
        a = xs[r].clone()
        works.append(dist.all_reduce(a, async_op=True))
        if c.backend == "gloo":
            c.rep.note(case, "gloo: in-order dependency between two async ops not checked")
            checks.append(("all_reduce", a, reference_reduce(xs, "SUM", F32)))
            a2 = xs[r].clone()
            works.append(dist.all_reduce(a2, async_op=True))
            checks.append(("all_reduce (2)", a2, reference_reduce(xs, "SUM", F32)))
        else:
            works.append(dist.all_reduce(a, async_op=True))
            checks.append(("all_reduce twice on one tensor", a,
                           reference_reduce(xs, "SUM", F32) * w))
        # 3: MAX on int32
        ys = inputs(c, (77,), torch.int32, salt + 1)
        b = ys[r].clone()
        works.append(dist.all_reduce(b, op=dist.ReduceOp.MAX, async_op=True))
        checks.append(("all_reduce MAX int32", b, reference_reduce(ys, "MAX", torch.int32)))
        # 4: broadcast from the last rank
        bc = make_input(r, (50,), torch.float64, salt + 2)
        works.append(dist.broadcast(bc, src=w - 1, async_op=True))
        checks.append(("broadcast", bc, make_input(w - 1, (50,), torch.float64, salt + 2)))
        # 5: all_gather
        outs = [torch.zeros(9) for _ in range(w)]
        works.append(dist.all_gather(outs, make_input(r, (9,), F32, salt + 3), async_op=True))
        for q in range(w):
            checks.append((f"all_gather block {q}", outs[q], make_input(q, (9,), F32, salt + 3)))
        # 6: all_to_all_single
        a2a_in = torch.cat([make_input(r, (4,), torch.int64, salt + 4 + 10 * d) for d in range(w)])
        a2a_out = torch.zeros(4 * w, dtype=torch.int64)
        works.append(dist.all_to_all_single(a2a_out, a2a_in, async_op=True))
        checks.append(("all_to_all_single", a2a_out,
                       torch.cat([make_input(s, (4,), torch.int64, salt + 4 + 10 * r) for s in range(w)])))
        # 7: reduce to rank 0
        zs = inputs(c, (31,), F32, salt + 5)
        red = zs[r].clone()
        works.append(dist.reduce(red, dst=0, async_op=True))
        if r == 0:
            checks.append(("reduce to 0", red, reference_reduce(zs, "SUM", F32)))
        # 8: _reduce_scatter_base (not in gloo)
        if not gloo_lacks(c.backend, "reduce_scatter_base"):
            vs = inputs(c, (3 * w,), F32, salt + 6)
            rs = torch.zeros(3)
            works.append(dist._reduce_scatter_base(rs, vs[r].clone(), async_op=True))
            checks.append(("_reduce_scatter_base", rs,
                           reference_reduce(vs, "SUM", F32)[3 * r:3 * r + 3]))
        for work in reversed(works):
            work.wait()
        for name, got, want in checks:
            c.rep.check(f"{case}: {name}", got, want)


@section
def wait_timeout(c):
    """wait(timeout) on a call the other ranks have not issued yet raises; the call
    itself still completes, and a later wait() returns its correct result."""
    import datetime
    case = "wait(200 ms) before the peers issue, then wait()"
    store = default_store()
    go = f"chorus_test/wait_timeout/{c.next_salt()}"
    with c.rep.case(case):
        xs = inputs(c, (100,), salt=c.next_salt())
        t = xs[c.rank].clone()
        if c.rank != 0:
            store.wait([go])                   # issued only once rank 0's wait(200 ms) is over
        work = dist.all_reduce(t, async_op=True)
        if c.rank == 0:
            start = time.monotonic()
            try:
                work.wait(datetime.timedelta(milliseconds=200))
            except RuntimeError as e:
                elapsed = time.monotonic() - start
                if elapsed > 1.5:
                    c.rep.fail(case, f"wait(200 ms) raised only after {elapsed:.2f}s")
                if not str(e).strip():
                    c.rep.fail(case, "wait(timeout) raised with an empty message")
            else:
                c.rep.fail(case, f"wait(200 ms) returned after {time.monotonic() - start:.2f}s "
                                 "instead of raising (the peers had not issued the call)")
            finally:
                store.set(go, "1")
        work.wait()
        c.rep.check(case, t, reference_reduce(xs, "SUM", F32))


@section
def many_outstanding(c):
    case = "64 async all_reduces in flight"
    with c.rep.case(case):
        salt = c.next_salt() * 100
        xs = [inputs(c, (k + 1,), F32, salt + k) for k in range(64)]
        ts = [x[c.rank].clone() for x in xs]
        works = [dist.all_reduce(t, async_op=True) for t in ts]
        for work in works:
            work.wait()
        for k, (t, x) in enumerate(zip(ts, xs)):
            c.rep.check(f"{case}: #{k}", t, reference_reduce(x, "SUM", F32))


if __name__ == "__main__":
    sectioned_main(SECTIONS, __doc__)
