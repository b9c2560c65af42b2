"""What one request touches, from a valgrind lackey trace (`--trace-mem=yes`).

usage: footprint.py TRACE MARKER_ADDRESS SKIP

The trace is cut into requests at each execution of the instruction at MARKER_ADDRESS (the
entry of the proxy's request-line parser, as loaded). The first SKIP requests are left out.
Prints the medians, per request, of the instructions executed and of the distinct 64-byte
lines and 4 KiB pages of code and of data touched.
"""

import statistics
import sys


def main():
    trace, marker, skip = sys.argv[1], int(sys.argv[2], 16), int(sys.argv[3])
    requests = []
    current = None
    with open(trace) as f:
        for line in f:
            # "I  04012345,3" is an instruction; " L", " S" and " M" are data accesses.
            if line.startswith("I"):
                addr = int(line[3:].split(",")[0], 16)
                if addr == marker:
                    if current is not None:
                        requests.append(current)
                    current = [0, set(), set()]
                if current is not None:
                    current[0] += 1
                    current[1].add(addr >> 6)
            elif line.startswith(" ") and current is not None:
                current[2].add(int(line[3:].split(",")[0], 16) >> 6)
    requests = requests[skip:]
    if len(requests) < 5:
        sys.exit(f"only {len(requests)} requests in the trace after the first {skip}")

    def med(f):
        return statistics.median(f(r) for r in requests)

    print(
        "%d requests; per request: %d instructions, code %d lines (%d KiB) on %d pages, "
        "data %d lines (%d KiB) on %d pages"
        % (
            len(requests),
            med(lambda r: r[0]),
            med(lambda r: len(r[1])),
            med(lambda r: len(r[1])) * 64 // 1024,
            med(lambda r: len({x >> 6 for x in r[1]})),
            med(lambda r: len(r[2])),
            med(lambda r: len(r[2])) * 64 // 1024,
            med(lambda r: len({x >> 6 for x in r[2]})),
        )
    )


main()
