"""Helpers shared by the summaries of tools/compare_transports.sh and tools/p2p_transports.sh
(their embedded Python imports this module: the scripts put tools/ on sys.path)."""
import re


def sz(n):
    """Bytes as the size column shows them: 1K, 4M, 1G, or the plain number."""
    for unit, s in ((1 << 30, "G"), (1 << 20, "M"), (1 << 10, "K")):
        if n >= unit and n % unit == 0:
            return f"{n // unit}{s}"
    return str(n)


def first_error(path, pattern=r"failed|error|timed out|wrong"):
    """The first line of a raw output that looks like a failure, or None."""
    try:
        with open(path, errors="replace") as f:
            for line in f:
                if re.search(pattern, line, re.I):
                    return line.strip()
    except OSError:
        pass
    return None
