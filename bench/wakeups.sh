#!/usr/bin/env bash
# Runs bench/wakeups.c: three processes passing one message around as wrk -c1, a proxy and a
# backend do, with the proxy's work per turn set to each of the times given (default 2 4 8
# 16 us). On a machine where wake-ups are cheap, round trips/s fall as the proxy's work grows;
# where they are not, they spread from one trial to the next by more than doubling that work
# changes them. See the README's Performance section.
#
# Needs a C compiler (Debian: apt-get install gcc). Installs nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cc >/dev/null || {
  echo "bench/wakeups.sh needs a C compiler. On Debian: apt-get install gcc" >&2
  exit 1
}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cc -O2 -Wall -o "$tmp/wakeups" bench/wakeups.c
[ $# -gt 0 ] || set -- 2 4 8 16
"$tmp/wakeups" "$@"
