"""Subgroups made with dist.new_group(ranks=[...]), used interleaved with the world.

One rank of a world of 3 or 4; run by tests/python/test_subgroups.py. Groups
(every rank creates every group, in the same order, as torch requires):
  evens  = [0, 2, ...]      odds = [1, 3, ...]
  first  = every rank but the last (world 4: [0, 1, 2])
  solo   = [last rank]      (a group of one)
Only members call a group's collectives; non-members skip them, so a subgroup's
traffic must never be confused with the world's or another group's.
"""

import torch
import torch.distributed as dist

from rankutil import dname, gloo_lacks, make_input, reference_reduce, sectioned_main

SECTIONS = {}


def section(fn):
    SECTIONS[fn.__name__] = fn
    return fn


def setup(c):
    w = c.world
    specs = {
        "evens": list(range(0, w, 2)),
        "odds": list(range(1, w, 2)),
        "first": list(range(w - 1)),
        "solo": [w - 1],
    }
    c.groups = {name: (dist.new_group(ranks=ranks), ranks) for name, ranks in specs.items()}
    c.groups["world"] = (None, list(range(w)))   # group=None is the default group


def my_groups(c, names):
    return [(n,) + c.groups[n] for n in names if c.rank in c.groups[n][1]]


def group_all_reduce(c, name, group, members, dtype, op, shape, salt, case):
    with c.rep.case(case, participants=len(members)):
        inputs = [make_input(m, shape, dtype, salt, nonzero=(op == "PRODUCT")) for m in members]
        t = inputs[members.index(c.rank)].clone()
        dist.all_reduce(t, op=getattr(dist.ReduceOp, op), group=group)
        c.rep.check(case, t, reference_reduce(inputs, op, dtype))


@section
def membership(c):
    """get_rank/get_world_size/get_process_group_ranks agree with the member lists."""
    for name, (group, members) in c.groups.items():
        case = f"membership of {name}={members}"
        with c.rep.case(case, participants=1):
            if c.rank in members:
                got = (dist.get_rank(group), dist.get_world_size(group))
                want = (members.index(c.rank), len(members))
                if got != want:
                    c.rep.fail(case, f"(group rank, size) = {got}, expected {want}")
                if group is not None and dist.get_process_group_ranks(group) != members:
                    c.rep.fail(case, f"ranks {dist.get_process_group_ranks(group)}")
            elif dist.get_rank(group) != -1:
                c.rep.fail(case, f"non-member get_rank = {dist.get_rank(group)}, expected -1")


@section
def interleaved(c):
    """Rounds mixing world, evens/odds, first and solo collectives; data differs per
    group and round, so a message delivered to the wrong group shows up."""
    w = c.world
    for it in range(8):
        salt = c.next_salt() * 10
        for name, group, members in my_groups(c, ["world", "evens", "odds", "first", "solo"]):
            group_all_reduce(c, name, group, members, torch.float32, "SUM", (33,),
                             salt + len(name), f"round {it}: all_reduce SUM on {name}")
        # broadcast on the world from a rotating root, then on each parity group
        root = it % w
        with c.rep.case(f"round {it}: world broadcast root={root}"):
            t = make_input(c.rank if c.rank == root else c.rank + 50, (17,), torch.int64, salt)
            dist.broadcast(t, src=root)
            c.rep.check(f"round {it}: world broadcast root={root}", t,
                        make_input(root, (17,), torch.int64, salt))
        for name, group, members in my_groups(c, ["evens", "odds"]):
            root = members[it % len(members)]          # a global rank, as torch expects
            case = f"round {it}: broadcast on {name} from global rank {root}"
            with c.rep.case(case, participants=len(members)):
                t = make_input(c.rank if c.rank == root else c.rank + 50, (9,), torch.int32, salt + 3)
                dist.broadcast(t, src=root, group=group)
                c.rep.check(case, t, make_input(root, (9,), torch.int32, salt + 3))
        for name, group, members in my_groups(c, ["first", "world"]):
            case = f"round {it}: all_gather on {name}"
            with c.rep.case(case, participants=len(members)):
                out = [torch.zeros(5, dtype=torch.float64) for _ in members]
                dist.all_gather(out, make_input(c.rank, (5,), torch.float64, salt + 5), group=group)
                for k, m in enumerate(members):
                    c.rep.check(f"{case} block {k}", out[k], make_input(m, (5,), torch.float64, salt + 5))


@section
def ops_on_subgroup(c):
    """The other operations on a subgroup ("first"): reduce, gather, scatter (roots
    are global ranks), all_to_all_single with uneven splits, the _base forms,
    barrier, send/recv and a batch_isend_irecv ring inside the group."""
    group, members = c.groups["first"]
    n = len(members)
    base_salt = c.next_salt() * 1000   # the same on members and non-members
    if c.rank not in members:
        return
    if n < 2:
        c.rep.skip("first group", "needs at least 2 members")
        return
    me = members.index(c.rank)
    for k, dtype in enumerate((torch.float32, torch.int64, torch.bfloat16)):
        salt = base_salt + 100 * k
        dn = dname(dtype)
        if gloo_lacks(c.backend, "reduce", dtype):
            c.rep.skip(f"ops on first group {dn}", "gloo lacks this dtype")
            continue
        for root in members:
            case = f"reduce MAX on first to global {root} {dn}"
            with c.rep.case(case, participants=n):
                inputs = [make_input(m, (11,), dtype, salt) for m in members]
                t = inputs[me].clone()
                dist.reduce(t, dst=root, op=dist.ReduceOp.MAX, group=group)
                if c.rank == root:
                    c.rep.check(case, t, reference_reduce(inputs, "MAX", dtype))
            case = f"gather on first to global {root} {dn}"
            with c.rep.case(case, participants=n):
                out = [torch.zeros(4, dtype=dtype) for _ in members] if c.rank == root else None
                dist.gather(make_input(c.rank, (4,), dtype, salt + 1), out, dst=root, group=group)
                if c.rank == root:
                    for k, m in enumerate(members):
                        c.rep.check(f"{case} block {k}", out[k], make_input(m, (4,), dtype, salt + 1))
            case = f"scatter on first from global {root} {dn}"
            with c.rep.case(case, participants=n):
                blocks = [make_input(root, (6,), dtype, salt + 2 + k) for k in range(n)]
                out = torch.zeros(6, dtype=dtype)
                dist.scatter(out, blocks if c.rank == root else None, src=root, group=group)
                c.rep.check(case, out, blocks[me])

        case = f"all_to_all_single uneven on first {dn}"
        with c.rep.case(case, participants=n):
            size = lambda s, d: (s + 2 * d) % 3           # noqa: E731  (0, 1 or 2 elements)
            blk = lambda s, d: make_input(members[s], (size(s, d),), dtype, salt + 7 + d)  # noqa: E731
            inp = torch.cat([blk(me, d) for d in range(n)])
            expected = torch.cat([blk(s, me) for s in range(n)])
            out = torch.zeros_like(expected)
            dist.all_to_all_single(out, inp, [size(s, me) for s in range(n)],
                                   [size(me, d) for d in range(n)], group=group)
            c.rep.check(case, out, expected)

        case = f"_all_gather_base on first {dn}"
        if gloo_lacks(c.backend, "all_gather_base", dtype):
            c.rep.skip(case, "gloo has no _allgather_base")
        else:
            with c.rep.case(case, participants=n):
                out = torch.zeros(3 * n, dtype=dtype)
                dist._all_gather_base(out, make_input(c.rank, (3,), dtype, salt + 8), group=group)
                c.rep.check(case, out, torch.cat([make_input(m, (3,), dtype, salt + 8) for m in members]))

        case = f"_reduce_scatter_base SUM on first {dn}"
        if gloo_lacks(c.backend, "reduce_scatter_base", dtype):
            c.rep.skip(case, "gloo has no _reduce_scatter_base")
        else:
            with c.rep.case(case, participants=n):
                inputs = [make_input(m, (2 * n,), dtype, salt + 9) for m in members]
                out = torch.zeros(2, dtype=dtype)
                dist._reduce_scatter_base(out, inputs[me].clone(), group=group)
                c.rep.check(case, out, reference_reduce(inputs, "SUM", dtype)[2 * me:2 * me + 2])

        case = f"send/recv and batch ring on first {dn}"
        with c.rep.case(case, participants=n):
            right, left = members[(me + 1) % n], members[(me - 1) % n]   # global ranks
            got = torch.zeros(8, dtype=dtype)
            reqs = dist.batch_isend_irecv([
                dist.P2POp(dist.isend, make_input(c.rank, (8,), dtype, salt + 10), right, group),
                dist.P2POp(dist.irecv, got, left, group)])
            for r in reqs:
                r.wait()
            c.rep.check(f"{case}: ring from {left}", got, make_input(left, (8,), dtype, salt + 10))
            if me == 0:
                dist.send(make_input(c.rank, (5,), dtype, salt + 11), dst=members[-1], group=group)
            elif me == n - 1:
                t = torch.zeros(5, dtype=dtype)
                dist.recv(t, src=members[0], group=group)
                c.rep.check(f"{case}: send from {members[0]}", t,
                            make_input(members[0], (5,), dtype, salt + 11))
            dist.barrier(group=group)


@section
def async_across_groups(c):
    """Async ops on the world and on my parity group issued together, waited in
    reverse order."""
    salt = c.next_salt() * 100
    pname = "evens" if c.rank % 2 == 0 else "odds"
    pgroup, pmembers = c.groups[pname]
    with c.rep.case("async world + parity group"):
        world_in = [make_input(r, (1000,), torch.float32, salt) for r in range(c.world)]
        par_in = [make_input(m, (999,), torch.float32, salt + 1) for m in pmembers]
        a = world_in[c.rank].clone()
        b = par_in[pmembers.index(c.rank)].clone()
        d = world_in[c.rank].clone()
        works = [dist.all_reduce(a, async_op=True),
                 dist.all_reduce(b, group=pgroup, async_op=True),
                 dist.all_reduce(d, op=dist.ReduceOp.MAX, async_op=True)]
        for work in reversed(works):
            work.wait()
        c.rep.check("async world SUM", a, reference_reduce(world_in, "SUM", torch.float32))
        c.rep.check(f"async {pname} SUM", b, reference_reduce(par_in, "SUM", torch.float32))
        c.rep.check("async world MAX", d, reference_reduce(world_in, "MAX", torch.float32))


@section
def late_group_and_destroy(c):
    """A group created after traffic has flowed works; destroying it leaves the
    world and the other groups working."""
    members = list(range(1, c.world))
    late = dist.new_group(ranks=members)            # every rank must call new_group
    salt = c.next_salt() * 100
    if c.rank in members:
        group_all_reduce(c, "late", late, members, torch.int64, "SUM", (21,), salt,
                         "all_reduce on a group created late")
    dist.destroy_process_group(late)
    group_all_reduce(c, "world", None, list(range(c.world)), torch.int64, "PRODUCT", (21,),
                     salt + 1, "world all_reduce after destroying a subgroup")
    for name, group, mem in my_groups(c, ["evens", "odds"]):
        group_all_reduce(c, name, group, mem, torch.float64, "MIN", (8,), salt + 2,
                         f"{name} all_reduce after destroying another subgroup")


if __name__ == "__main__":
    sectioned_main(SECTIONS, __doc__, setup=setup)
