#!/usr/bin/env bash
# What one proxied request touches in user space, the gateway against nginx, at one
# connection: instructions, and the distinct 64-byte lines and 4 KiB pages of code and of data,
# from valgrind's lackey, which traces every instruction and memory access.
#
#   bash bench/footprint.sh
#   DURATION=5s bash bench/footprint.sh     # more requests (about 30 per second under lackey)
#
# Why: at one connection a proxy sleeps between the steps of each request. Where an idle vCPU
# halts (see compare.sh), it comes back to caches and TLBs that others have used meanwhile, and
# what a request then costs grows with how much code and data it touches, not with its
# instructions alone.
#
# Each request is cut at the proxy's request-line parser (hyper's Server::parse in the
# gateway, ngx_http_parse_request_line in nginx): the trace from one call to the next is one
# request, the response to the previous one included. The first 5 are left out.
#
# Needs valgrind, nginx, wrk, nm and python3 (Debian: apt-get install valgrind nginx wrk
# binutils python3). Installs nothing. The traces (about 600 KB per request) go to a temp dir.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh

DURATION=${DURATION:-3s}
B1=127.0.0.1:19081 B2=127.0.0.1:19082 PROXY=127.0.0.1:19098
need "valgrind nginx wrk binutils python3" valgrind nginx wrk nm python3

build_bench
tmp=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT

for b in $B1 $B2; do
  target/release/examples/bench_backend "$b" >/dev/null &
  pids+=($!)
  wait_port "$b"
done

# The address, in the file, of the function that marks each request in binary $1: a symbol
# whose demangled name is $2, from the symbol table or, for a stripped binary, the dynamic one.
marker() {
  { nm -C --defined-only "$1" 2>/dev/null; nm -C -D --defined-only "$1" 2>/dev/null; } |
    awk -v name="$2" '{a = $1; $1 = ""; $2 = ""; sub(/^  /, "")} $0 == name && !found {print a; found = 1}'
}

# Runs binary $1 (arguments after $3) under lackey, cut at the function named $2, and prints
# the figures.
trace() {
  local binary=$1 name=$2 addr pid base
  shift 2
  addr=$(marker "$binary" "$name")
  if [ -z "$addr" ]; then
    echo "$binary has no symbol $name" >&2
    exit 1
  fi
  valgrind --tool=lackey --trace-mem=yes --log-file="$tmp/trace" "$@" >/dev/null 2>"$tmp/err" &
  pid=$!
  pids+=($pid)
  wait_port "$PROXY" 60
  # Where valgrind loaded the binary: the start of its first mapping.
  base=$(awk -v f="$(readlink -f "$binary")" '$6 == f && !found {print $1; found = 1}' "/proc/$pid/maps")
  base=${base%%-*}
  wrk -t1 -c1 -d"$DURATION" "http://$PROXY/" >/dev/null
  if ! kill "$pid" 2>/dev/null; then
    echo "$binary exited early:" >&2
    cat "$tmp/err" >&2
    exit 1
  fi
  wait "$pid" 2>/dev/null || true
  # With a symbol table (the gateway; Debian's nginx is stripped), code lines by crate too.
  local symbolized=()
  [ -n "$(nm "$binary" 2>/dev/null | head -c1)" ] && symbolized=("$binary" "$base")
  python3 bench/footprint.py "$tmp/trace" "$(printf '%x' $((0x$base + 0x$addr)))" 5 "${symbolized[@]}"
  rm -f "$tmp/trace"
}

echo "user space, per proxied request at 1 connection (medians), from valgrind --tool=lackey"
printf 'gateway: '
trace target/release/gateway \
  "<hyper::proto::h1::role::Server as hyper::proto::h1::Http1Transaction>::parse" \
  target/release/gateway --workers 1 --listen "$PROXY" --peer "$B1=1" --peer "$B2=1"
nginx_conf "$tmp/nginx" 1 "$PROXY" "$B1" "$B2"
printf 'nginx:   '
trace "$NGINX_BIN" ngx_http_parse_request_line \
  "$NGINX_BIN" -p "$tmp/nginx" -c "$tmp/nginx/nginx.conf" -g 'daemon off; master_process off;'
