"""What one request touches, from a valgrind lackey trace (`--trace-mem=yes`).

usage: footprint.py TRACE MARKER_ADDRESS SKIP [BINARY LOAD_ADDRESS]

The trace is cut into requests at each execution of the instruction at MARKER_ADDRESS (the
entry of the proxy's request-line parser, as loaded). The first SKIP requests are left out.
Prints the medians, per request, of the instructions executed and of the distinct 64-byte
lines and 4 KiB pages of code and of data touched. Given the binary and where it was loaded,
also the code lines per request of each crate (from the demangled names of its symbols).
"""

import bisect
import collections
import re
import statistics
import subprocess
import sys


def requests(trace, marker):
    """Per request: [instructions, code lines, data lines]."""
    out = []
    current = None
    with open(trace) as f:
        for line in f:
            # "I  04012345,3" is an instruction; " L", " S" and " M" are data accesses.
            if line.startswith("I"):
                addr = int(line[3:].split(",")[0], 16)
                if addr == marker:
                    if current is not None:
                        out.append(current)
                    current = [0, set(), set()]
                if current is not None:
                    current[0] += 1
                    current[1].add(addr >> 6)
            elif line.startswith(" ") and current is not None:
                current[2].add(int(line[3:].split(",")[0], 16) >> 6)
    return out


def crate_of(name):
    """`hyper` for `<hyper::proto::h1::role::Server as ...>::parse`; the name if no path."""
    m = re.match(r"<*(?:impl |dyn )?([A-Za-z_][A-Za-z0-9_]*)::", name)
    return m.group(1) if m else name


def symbols(binary):
    """(start, end, crate) of the binary's functions, by start."""
    out = []
    nm = subprocess.run(
        ["nm", "-C", "-S", "-n", "--defined-only", binary], capture_output=True, text=True
    ).stdout
    for line in nm.splitlines():
        m = re.match(r"([0-9a-f]+) ([0-9a-f]+) [tTwW] (.*)", line)
        if m:
            start = int(m.group(1), 16)
            out.append((start, start + int(m.group(2), 16), crate_of(m.group(3))))
    return out


def by_crate(reqs, binary, base):
    syms = symbols(binary)
    starts = [s[0] for s in syms]
    per_crate = collections.defaultdict(list)
    for r in reqs:
        counts = collections.Counter()
        for line in r[1]:
            addr = (line << 6) - base
            k = bisect.bisect_right(starts, addr) - 1
            inside = k >= 0 and addr < syms[k][1]
            counts[syms[k][2] if inside else "(shared libraries)"] += 1
        for crate, n in counts.items():
            per_crate[crate].append(n)
    # A crate missing from a request counts 0 there.
    medians = {c: statistics.median(v + [0] * (len(reqs) - len(v))) for c, v in per_crate.items()}
    top = sorted(medians.items(), key=lambda kv: -kv[1])[:10]
    return ", ".join("%s %d" % (c, n) for c, n in top if n)


def main():
    trace, marker, skip = sys.argv[1], int(sys.argv[2], 16), int(sys.argv[3])
    reqs = requests(trace, marker)[skip:]
    if len(reqs) < 5:
        sys.exit(f"only {len(reqs)} requests in the trace after the first {skip}")

    def med(f):
        return statistics.median(f(r) for r in reqs)

    print(
        "%d requests; per request: %d instructions, code %d lines (%d KiB) on %d pages, "
        "data %d lines (%d KiB) on %d pages"
        % (
            len(reqs),
            med(lambda r: r[0]),
            med(lambda r: len(r[1])),
            med(lambda r: len(r[1])) * 64 // 1024,
            med(lambda r: len({x >> 6 for x in r[1]})),
            med(lambda r: len(r[2])),
            med(lambda r: len(r[2])) * 64 // 1024,
            med(lambda r: len({x >> 6 for x in r[2]})),
        )
    )
    if len(sys.argv) > 5:
        print("  code lines by crate: " + by_crate(reqs, sys.argv[4], int(sys.argv[5], 16)))


main()
