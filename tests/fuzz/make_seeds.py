#!/usr/bin/env python3
"""Writes the hand-made seed inputs of tests/fuzz/corpus/<name>/seed-*: valid records of each
wire format and text form, and edge cases (truncated, huge lengths, wrong secrets, garbage).
The corpus also holds inputs the fuzzer found (hash names) and crash regressions (crash-*);
this script only (re)writes its own seed-* files. Layouts follow src/bootstrap/wire.h,
src/bootstrap/unique_id.h, src/bootstrap/peer_card.h, src/topology/topo_card.h and
transports/tcp/tcp_wire.h (host byte order, x86-64), with the fixed secret the targets use.

Usage: tests/fuzz/make_seeds.py   (from anywhere)
"""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "corpus")

SECRET = (0x0123456789ABCDEF, 0xFEDCBA9876543210)
COMM = 0x5EED
AF_INET, AF_INET6 = 2, 10
HELLO_MAGIC, REPLY_MAGIC, AUTH_MAGIC, VERSION = 0x43484F48, 0x43484F52, 0x43484F41, 1
TCP_HELLO_MAGIC = 0x43484F5255535443
UID_MAGIC = 0x43484F52


def wire_addr(family=AF_INET, port=5000, ip=(127, 0, 0, 1)):
    raw = bytes(ip) + bytes(16 - len(ip))
    return struct.pack("<HH16s", family, port, raw)


def root_hello(rank, nranks, secret=SECRET, comm=COMM, magic=HELLO_MAGIC, version=VERSION, family=AF_INET):
    return struct.pack("<II2QQii", magic, version, secret[0], secret[1], comm, rank, nranks) + \
        wire_addr(family, 6000 + rank) + struct.pack("<I", 0)


def reply(code=0, count=0, text_len=0, magic=REPLY_MAGIC):
    return struct.pack("<IiII", magic, code, count, text_len)


def peer_addr(rank, family=AF_INET):
    return struct.pack("<iI", rank, 0) + wire_addr(family, 6000 + rank)


def auth(frm=2, to=1, secret=SECRET, comm=COMM, magic=AUTH_MAGIC, version=VERSION):
    return struct.pack("<II2QQii", magic, version, secret[0], secret[1], comm, frm, to)


def frame(tag, payload, announced=None):
    n = len(payload) if announced is None else announced
    return struct.pack("<IIQ", tag, 0, n) + payload


def tcp_hello(frm=1, to=3, index=0, nsocks=4, ordinal=0, secret=SECRET, comm=COMM, magic=TCP_HELLO_MAGIC):
    return struct.pack("<Q2QQiiiiQ", magic, secret[0], secret[1], comm, frm, to, index, nsocks, ordinal)


def unique_id(family=AF_INET, port=4242, magic=UID_MAGIC, version=1):
    body = struct.pack("<II", magic, version) + wire_addr(family, port) + bytes(4) + \
        struct.pack("<2QQ", SECRET[0], SECRET[1], COMM)
    return body + bytes(128 - len(body))


def topo_card(nics=1, bound=0, numa=2, accel=0, speed=25.0, name=b"eth0", kind=b"ethernet"):
    out = struct.pack("<hhhh", bound, numa, nics, accel)
    for i in range(4):
        if i < min(max(nics, 0), 4):
            out += struct.pack("<16s12sfhh", name, kind, speed, 0, 0)
        else:
            out += struct.pack("<16s12sfhh", b"", b"", 0.0, -1, 0)
    return out


PEER_CARD_BYTES = 352  # sizeof(PeerCard); 12 agreed-knob hashes (kAgreedKnobs)


def peer_card(rank, host=0, hostname=None, topo=None, tcp_family=AF_INET):
    hostname = hostname if hostname is not None else ("node%d" % host).encode()
    card = struct.pack("<iiQQ64s", rank, 100 + rank, 0x1000 + host, 7, hostname)
    card += wire_addr(AF_INET, 5000 + rank, (10, 0, 0, 1 + host))      # bootstrapAddr
    card += wire_addr(tcp_family, 7000 + rank, (10, 0, 0, 1 + host))   # tcpAddr
    card += wire_addr(AF_INET, 8000 + rank, (10, 0, 0, 1 + host))      # healthAddr
    card += struct.pack("<I", 0b11)                                      # transports
    card += struct.pack("<12I", *range(12))                              # knobHash
    card += topo if topo is not None else topo_card()
    assert len(card) <= PEER_CARD_BYTES
    return card + bytes(PEER_CARD_BYTES - len(card))


def seeds():
    s = {}
    # root_checkin: op byte, then a 64-byte check-in.
    ok3 = b"".join(b"\x00" + root_hello(r, 3) for r in (2, 0, 1))
    s["root_checkin"] = {
        "three_ranks": ok3,
        "forced_credentials": b"".join(b"\x01" + root_hello(r, 4, secret=(0, 0)) for r in range(4)),
        "wrong_secret": b"\x00" + root_hello(0, 2, secret=(1, 2)),
        "bad_magic_version": b"\x00" + root_hello(0, 2, magic=0) + b"\x00" + root_hello(0, 2, version=9),
        "nranks_mismatch": b"\x00" + root_hello(0, 2) + b"\x00" + root_hello(1, 3),
        "duplicate_rank": b"\x00" + root_hello(1, 3) + b"\x00" + root_hello(1, 3) + b"\x00" + root_hello(0, 3),
        "rank_out_of_range": b"\x00" + root_hello(5, 2) + b"\x00" + root_hello(-1, 2),
        "huge_nranks": b"\x00" + root_hello(0, 0x7FFFFFFF) + b"\x00" + root_hello(0, 1 << 24),
        "bad_family": b"\x00" + root_hello(0, 2, family=77),
        "deadline_partial": b"\x00" + root_hello(0, 5) + b"\x00" + root_hello(3, 5) + b"\x02",
        "fail_then_more": b"\x00" + root_hello(0, 2) + b"\x03" + b"\x00" + root_hello(1, 2),
        "truncated": b"\x00" + root_hello(0, 2)[:30],
        "one_rank": b"\x00" + root_hello(0, 1),
    }
    # root_answer: u16 nranks-1, u16 rank, Reply, body.
    def answer_for(rank, nranks, fam=AF_INET, lie=0):
        k, n = 0, 1
        while n < nranks:
            n *= 2
            k += 1
        body = b"".join(peer_addr((rank - (1 << i)) % nranks + lie, fam) for i in range(k))
        return struct.pack("<HH", nranks - 1, rank) + reply(0, k) + body
    s["root_answer"] = {
        "ok_p5_r3": answer_for(3, 5),
        "ok_p1": answer_for(0, 1),
        "ok_p4096": answer_for(4095, 4096),
        "ipv6": answer_for(1, 8, AF_INET6),
        "wrong_peer": answer_for(2, 6, lie=1),
        "bad_family": answer_for(2, 6, fam=3),
        "error_text": struct.pack("<HH", 3, 0) + reply(5, 0, 19) + b"nranks do not agree",
        "error_unprintable": struct.pack("<HH", 3, 0) + reply(4, 0, 6) + b"\x1b[31m\x00x",
        "error_bad_code": struct.pack("<HH", 3, 0) + reply(999, 0, 3) + b"bad",
        "huge_text_len": struct.pack("<HH", 3, 0) + reply(3, 0, 0xFFFFFFFF) + b"short",
        "huge_count": struct.pack("<HH", 3, 0) + reply(0, 0xFFFFFFFF),
        "bad_magic": struct.pack("<HH", 3, 0) + reply(0, 2, magic=0x12345678),
        "truncated_body": answer_for(3, 5)[:30],
    }
    # oob_stream: flags byte (bit 0: valid Auth forced), then Auth + frames.
    good = auth() + frame(7, b"hello") + frame(8, b"") + frame(9, bytes(300))
    s["oob_stream"] = {
        "auth_and_frames": b"\x00" + good,
        "forced_auth": b"\x01" + bytes(40) + frame(1, b"abc"),
        "wrong_secret": b"\x00" + auth(secret=(5, 6)) + frame(1, b"x"),
        "wrong_to_rank": b"\x00" + auth(to=2),
        "bad_from_rank": b"\x00" + auth(frm=9) + auth(frm=-1),
        "bad_magic": b"\x00" + auth(magic=0x41414141),
        "huge_length": b"\x00" + auth() + frame(1, b"", announced=1 << 40),
        "max_length_truncated": b"\x00" + auth() + frame(1, b"\x00" * 64, announced=1 << 32),
        "truncated_header": b"\x00" + auth() + b"\x01\x00\x00",
        "truncated_auth": b"\x00" + auth()[:17],
        "garbage": b"\x00" + bytes(range(256)),
        "many_small_pieces": b"\xfe" + good,
    }
    # peer_cards: flags byte, then cards.
    cards = b"".join(peer_card(r, r // 2) for r in range(4))
    weird_topo = topo_card(nics=9, bound=-7, numa=-2, accel=-1, speed=float("nan"), name=b"x" * 16, kind=b"y" * 12)
    s["peer_cards"] = {
        "four_cards": b"\x00" + cards,
        "one_card": b"\x00" + peer_card(0),
        "forced_fields": b"\x01" + bytes(PEER_CARD_BYTES * 3),
        "unterminated_hostname": b"\x00" + peer_card(0, hostname=b"h" * 64) + peer_card(1, hostname=b"h" * 64),
        "weird_topo": b"\x00" + peer_card(0, topo=weird_topo) + peer_card(1, 1, topo=topo_card(nics=-3)),
        "bad_rank_field": b"\x00" + peer_card(1) + peer_card(0),
        "unknown_tcp_family": b"\x00" + peer_card(0, tcp_family=99) + peer_card(1, tcp_family=0),
        "truncated": b"\x00" + cards[:400],
    }
    # tcp_hello: flags byte, then 56-byte hellos.
    s["tcp_hello"] = {
        "four_sockets": b"\x00" + b"".join(tcp_hello(index=i) for i in range(4)),
        "forced": b"\x01" + bytes(56 * 2),
        "wrong_secret": b"\x00" + tcp_hello(secret=(9, 9)),
        "other_comm": b"\x00" + tcp_hello(comm=1),
        "wrong_to_and_from": b"\x00" + tcp_hello(to=2) + tcp_hello(frm=3) + tcp_hello(frm=-1),
        "bad_index": b"\x00" + tcp_hello(index=4) + tcp_hello(index=-1) + tcp_hello(index=0x7FFFFFFF),
        "other_nsocks": b"\x00" + tcp_hello(nsocks=64) + tcp_hello(nsocks=0),
        "duplicate_index_ordinals": b"\x00" + tcp_hello(index=1) + tcp_hello(index=1) + tcp_hello(index=1, ordinal=2**63),
        "truncated": b"\x00" + tcp_hello()[:40],
    }
    # unique_id: mode byte (even: bytes, odd: text), then the id or the text.
    s["unique_id"] = {
        "v4": b"\x00" + unique_id(),
        "v6": b"\x00" + unique_id(AF_INET6, 80),
        "exact_size": b"\x00" + unique_id()[:56],
        "too_short": b"\x00" + unique_id()[:40],
        "no_port": b"\x00" + unique_id(port=0),
        "bad_family": b"\x00" + unique_id(family=1),
        "bad_magic_version": b"\x00" + unique_id(magic=0) + b"",
        "other_version": b"\x02" + unique_id(version=2),
        "too_long": b"\x00" + unique_id() + b"\x00",
        "text_v4": b"\x01" + b"10.0.0.1:29500",
        "text_v6": b"\x01" + b"[fe80::1]:1",
        "text_name": b"\x01" + b"node-7.cluster:65535",
        "text_no_port": b"\x01" + b"10.0.0.1",
        "text_bad_ports": b"\x01" + b"h:0",
        "text_port_too_big": b"\x01" + b"h:65536",
        "text_signed_port": b"\x01" + b"h:+80",
        "text_empty_host": b"\x01" + b":80",
        "text_many_colons": b"\x01" + b"::::",
        "text_long_port": b"\x01" + b"h:000000000000000000080",
    }
    # tune_string: the text.
    s["tune_string"] = {
        "ranges": b"allreduce:0-64K:tree,64K-inf:ring;allgather:bruck",
        "every_size": b"allreduce:ring",
        "blanks_case": b"  AllReduce : 0 - 1k : Tree , 1K - inf : RING ; ",
        "empty_entries": b";;allgather:ring;;",
        "overlap": b"allreduce:0-1M:tree,512K-2M:ring",
        "empty_range": b"allreduce:4K-4K:ring",
        "too_large": b"allreduce:0-99999999999999999999G:ring",
        "shift_overflow": b"allreduce:0-17179869184G:ring",
        "alltoallv_range": b"alltoallv:0-1K:pairwise",
        "unknown_names": b"allsum:ring;allreduce:magic",
        "wrong_algo_for_coll": b"gather:ring",
        "missing_colon": b"allreduce",
        "empty_rule": b"allreduce:ring,,tree",
        "two_colons": b"allreduce:0-1K:tree:ring",
        "bad_suffix": b"allreduce:0-1T:ring",
        "every_coll": b"allreduce:ring;allgather:ring;reducescatter:ring;broadcast:tree;reduce:tree;"
                      b"alltoall:pairwise;alltoallv:pairwise;gather:direct;scatter:direct",
    }
    # cluster_file: the text.
    s["cluster_file"] = {
        "racks": b"# two racks\nhost node0 group=r0 rail=a gbps=100\nhost node1 group=r0 rail=b\n"
                 b"host node[23] group=r1 name=big gbps=200\nlink r0 r1 gbps=50 latency_us=4\nlink * * gbps=10\n",
        "by_address": b"host 10.0.0.* group=g gbps=25\nlink g g latency_us=0\n",
        "host_links": b"host node0 name=a\nhost node1 name=b\nlink a b gbps=1e3\nlink a * latency_us=2.5\n",
        "comments_blanks": b"\n   # nothing\n\t\nhost * # every host\n",
        "unknown_directive": b"switch s0\n",
        "unknown_option": b"host node0 speed=1\nlink a b foo=1\n",
        "bad_numbers": b"host node0 gbps=-1\nhost node1 gbps=nan\nhost node2 gbps=inf\nlink a b gbps=1x\n",
        "link_without_numbers": b"link a b\n",
        "missing_pattern": b"host\nhost gbps=1\nlink a\n",
        "bad_names": b"host node0 name=\nhost node1 group==x\n",
        "no_newline_at_end": b"host node0 gbps=1",
        "glob_heavy": b"host *a*a*a*a*a*a*a*a*a*a*a*a*b gbps=1\nhost [!a-z]* name=n\n",
        "crlf": b"host node0 gbps=10\r\nlink * * gbps=1\r\n",
    }
    # topo_card: up to four raw TopoCards.
    s["topo_card"] = {
        "one_nic": topo_card(),
        "four_hosts": topo_card() + topo_card(nics=4, speed=100.0) + topo_card(nics=0) + topo_card(nics=2, bound=1),
        "many_nics": topo_card(nics=300, speed=400.0),
        "negative_counts": topo_card(nics=-5, bound=-9, numa=-1, accel=-4),
        "nan_inf_speeds": topo_card(speed=float("nan")) + topo_card(speed=float("inf")) + topo_card(speed=-1.0),
        "unterminated_names": topo_card(name=b"n" * 16, kind=b"k" * 12),
        "garbage": bytes(range(256)) * 3,
    }
    # perf_args: NUL-separated arguments.
    def args(*a):
        return b"\x00".join(x.encode() for x in a)
    s["perf_args"] = {
        "nccl_style": args("-b", "8", "-e", "128M", "-f", "2", "-g", "1"),
        "long_options": args("--minbytes=1K", "--maxbytes=1M", "--stepbytes=4K", "--iters=5", "--op=all",
                             "--datatype=all", "--root=-1", "--average=3", "--blocking=1"),
        "np_algo_json": args("-np", "4", "-A", "allreduce:0-4K:tree,4K-inf:ring", "-J", "out.json", "-c", "0"),
        "help": args("-h"),
        "glued_values": args("-b64K", "-e1G", "-f4", "-n1", "-w0", "-N", "2"),
        "conflicts": args("-i", "1K", "-f", "2"),
        "min_above_max": args("-b", "2G", "-e", "1K"),
        "zero_with_factor": args("-b", "0", "-e", "8", "-f", "2"),
        "bad_values": args("-n", "0", "-a", "7", "-z", "2", "-d", "float128", "-o", "xor"),
        "overflow_sizes": args("-b", "18446744073709551615", "-e", "99999999999G"),
        "missing_value": args("-b"),
        "unknown": args("--frobnicate", "-q"),
        "ngpus": args("-g", "2"),
        "suffixes": args("-b", "1KiB", "-e", "2MB", "-i", "3g"),
    }
    return s


def main():
    for target, files in seeds().items():
        d = os.path.join(CORPUS, target)
        os.makedirs(d, exist_ok=True)
        for name, data in files.items():
            with open(os.path.join(d, "seed-" + name), "wb") as f:
                f.write(data)
    print("wrote seeds under", CORPUS)


if __name__ == "__main__":
    main()
