#!/usr/bin/env bash
# Compares requests/s and latency of a backend alone, nginx in front of it, and the crate's
# gateway example in front of it, on loopback with wrk, at equal worker counts.
#
#   bash bench/compare.sh            # 4 rounds of 10 s per target, 1 and 64 connections
#   ROUNDS=6 DURATION=20s bash bench/compare.sh   # an even count: see the rounds' order
#   CONFIGS="1pin" bash bench/compare.sh
#
# CONFIGS lists the runs: "1" and "2" are 1 and 2 workers each for nginx and the gateway,
# sharing all cores with wrk and the backends wherever the scheduler puts them; "1pin" is 1
# worker each pinned to core 0, with wrk and both backends pinned to core 1, so the proxy's
# own CPU time per request decides and the scheduler's placement does not (2 cores or more).
# "1core" puts everything on core 0: no process ever wakes another on a different core, so
# what a request costs is CPU time alone, without the cross-core wake-ups (an IPI, and on a
# virtual machine a halted vCPU to restart) that dominate 1 connection on two cores.
#
# Each row gives requests/s, p50 and p99 latency as measured, wrk's own p99 (see
# bench/latency.lua: wrk adds samples to its histogram, more for a target that serves more
# requests/s, and "wrk p99" is the p99 of that), and the CPU time (user + system) the target
# spent per request: the backend, nginx's worker processes or the gateway. That figure moves
# less between runs than requests/s does, which depend on where the scheduler puts
# everything. The last column shows that part: the time per request the target was ready to
# run but waited for a core (preempted, mostly by a backend it had just woken).
#
# Under each configuration and connection count, "ratio" is gateway / nginx of the medians,
# and "paired" the median of each round's own gateway / nginx, with the lowest and highest
# round: the two targets of a round run seconds apart, so a slow spell of the machine moves
# both. That matters most at 1 connection, where one run can be 30 % off the next.
#
# Both proxies close a client connection after its 1000th request (nginx's default
# keepalive_requests, the gateway's --keepalive-requests), and wrk opens a new one: with two
# workers the new one may land on the other worker, which at 1 connection moved requests/s by
# a third on a VM whose idle vCPUs halt (see the README's Performance section).
#
# Both proxies run in a session of their own: nginx's daemon calls setsid(), and the gateway
# is started with setsid. With autogroup scheduling on (/proc/sys/kernel/sched_autogroup_enabled),
# Linux shares CPU time between sessions first and then between the processes of each session.
# A gateway left in this script's session would compete with wrk and both backends as one of
# four equals, while nginx competes as a group of its own against the three of them.
#
# On a virtual machine whose idle vCPUs halt at once (cpuidle driver haltpoll with
# /sys/module/haltpoll/parameters/guest_halt_poll_ns at 0, as some VMs boot), each wake-up of a
# process on the other, idle core goes through the hypervisor, and at 1 connection that, not
# either proxy, sets requests/s. The machine line says how it is set. HALT_POLL_NS=200000 (the
# kernel's default; needs root) sets it for the run and restores it after: the vCPU then polls
# up to 200 us before it halts.
#
# BUSY_POLL=USECS runs the gateway with --busy-poll USECS: each worker polls its sockets
# without sleeping until USECS after its last request, as HAProxy's busy-polling does, so its
# vCPU does not halt between the requests of a connection. It spends CPU time to do so, which
# the cpu column shows; nginx has no such setting.
#
# Needs nginx and wrk (Debian: apt-get install nginx wrk) and python3. Installs nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh

ROUNDS=${ROUNDS:-4}
DURATION=${DURATION:-10s}
CONFIGS=${CONFIGS:-"1 1pin 1core 2"}
CONNS=${CONNS:-"1 64"}
IDLE=${IDLE:-10000}
HALT_POLL_NS=${HALT_POLL_NS:-}
BUSY_POLL=${BUSY_POLL:-}
HALT_POLL=/sys/module/haltpoll/parameters/guest_halt_poll_ns
B1=127.0.0.1:19081 B2=127.0.0.1:19082 NGINX=127.0.0.1:19090 GATEWAY=127.0.0.1:19095

need "nginx wrk python3 util-linux" nginx wrk python3 taskset setsid

build_bench
tmp=$(mktemp -d)
pids=()
halt_poll_was=""
cleanup() {
  [ -n "$halt_poll_was" ] && echo "$halt_poll_was" >"$HALT_POLL"
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  [ -f "$tmp/nginx.pid" ] && kill "$(cat "$tmp/nginx.pid")" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT
if [ -n "$HALT_POLL_NS" ]; then
  if [ ! -w "$HALT_POLL" ]; then
    echo "HALT_POLL_NS: $HALT_POLL is missing or not writable (needs root and cpuidle-haltpoll)" >&2
    exit 1
  fi
  halt_poll_was=$(cat "$HALT_POLL")
  echo "$HALT_POLL_NS" >"$HALT_POLL"
fi
ulimit -n 65536 2>/dev/null || true

backend_pids=()
for b in $B1 $B2; do
  target/release/examples/bench_backend "$b" >/dev/null &
  pids+=($!)
  backend_pids+=($!)
  wait_port "$b"
done
all_cpus="0-$(($(nproc) - 1))"

# pin 0|1|core: with 1, proxies run on core 0 (`$proxy_cpu`), wrk and the backends on core 1;
# with core, everything runs on core 0.
pin() {
  local cpus=$all_cpus
  proxy_cpu=() client_cpu=()
  case $1 in
    1) cpus=1 proxy_cpu=(taskset -c 0) client_cpu=(taskset -c 1) ;;
    core) cpus=0 proxy_cpu=(taskset -c 0) client_cpu=(taskset -c 0) ;;
  esac
  for p in "${backend_pids[@]}"; do taskset -a -pc "$cpus" "$p" >/dev/null; done
}
pin 0

start_nginx() {
  nginx_conf "$tmp" "$1" "$NGINX" "$B1" "$B2"
  "${proxy_cpu[@]}" "$NGINX_BIN" -p "$tmp" -c "$tmp/nginx.conf" -g 'daemon on;' 2>/dev/null
  wait_port "$NGINX"
}

start_gateway() {
  # In a session of its own, as nginx's daemon is (see the note at the top).
  setsid "${proxy_cpu[@]}" target/release/gateway --workers "$1" --listen "$GATEWAY" \
    --peer "$B1=1" --peer "$B2=1" ${BUSY_POLL:+--busy-poll "$BUSY_POLL"} >/dev/null &
  gateway_pid=$!
  pids+=($gateway_pid)
  wait_port "$GATEWAY"
}

stop() {
  [ -f "$tmp/nginx.pid" ] && kill "$(cat "$tmp/nginx.pid")" 2>/dev/null || true
  kill "$gateway_pid" 2>/dev/null || true
  wait "$gateway_pid" 2>/dev/null || true
  sleep 0.5
}

# CPU time the processes given have used so far, in clock ticks: "user+system user".
cpu_ticks() {
  local p
  # Fields 14 (user) and 15 (system) of /proc/PID/stat, counted after the ")" that ends
  # the command name.
  for p in "$@"; do sed 's/.*) //' "/proc/$p/stat" | awk '{print $12 + $13, $12}'; done |
    awk '{s += $1; u += $2} END {print s + 0, u + 0}'
}
CLK_TCK=$(getconf CLK_TCK)

# Nanoseconds the processes given have spent runnable but waiting for a core, so far
# (second field of each thread's /proc/PID/task/TID/schedstat).
wait_ns() {
  local p
  for p in "$@"; do cat /proc/"$p"/task/*/schedstat; done | awk '{s += $2} END {printf "%.0f", s}'
}

# The processes that serve target $1: the backend, nginx's workers or the gateway.
target_pids() {
  case $1 in
    direct) echo "${backend_pids[0]}" ;;
    nginx) pgrep -P "$(cat "$tmp/nginx.pid")" ;;
    gateway) echo "$gateway_pid" ;;
  esac
}

# wrk's output for target $1 at address $2 and $3 connections -> "rps p50_ms p99_ms
# wrk_p99_ms cpu_us_per_request user_us_per_request wait_us_per_request steal_percent", p50 and
# p99 as measured (bench/latency.lua), wrk_p99 wrk's own.
measure() {
  local out serving t0 t1 u0 u1 w0 w1 s0 s1
  mapfile -t serving < <(target_pids "$1")
  read -r t0 u0 < <(cpu_ticks "${serving[@]}")
  w0=$(wait_ns "${serving[@]}")
  s0=$(steal_ticks)
  out=$(WRK_CONNECTIONS=$3 "${client_cpu[@]}" wrk -t1 -c"$3" -d"$DURATION" --latency \
    -s bench/latency.lua "http://$2/" 2>&1)
  s1=$(steal_ticks)
  read -r t1 u1 < <(cpu_ticks "${serving[@]}")
  w1=$(wait_ns "${serving[@]}")
  local rps p50 p99 wrk_p99 n cpu user wait steal
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  wrk_p99=$(awk '$1=="99%" {print $2}' <<<"$out")
  if grep -q "^measured n" <<<"$out"; then
    p50=$(awk '$1=="measured" {print $7 "us"}' <<<"$out")
    p99=$(awk '$1=="measured" {print $9 "us"}' <<<"$out")
  else
    # Without the measured figures, wrk's stand in, and the round is listed with the errors.
    p50=$(awk '$1=="50%" {print $2}' <<<"$out")
    p99=$wrk_p99
    { grep "^measured" <<<"$out" || echo "measured: no output"; } |
      sed "s|^|$1, $3 connections: |" >>"$tmp/errors"
  fi
  n=$(awk '/requests in/ {print $1}' <<<"$out")
  cpu=$(awk -v d=$((t1 - t0)) -v n="$n" -v hz="$CLK_TCK" 'BEGIN {printf "%.1f", d * 1e6 / hz / n}')
  user=$(awk -v d=$((u1 - u0)) -v n="$n" -v hz="$CLK_TCK" 'BEGIN {printf "%.1f", d * 1e6 / hz / n}')
  wait=$(awk -v d=$((w1 - w0)) -v n="$n" 'BEGIN {printf "%.1f", d / 1e3 / n}')
  steal=$(awk -v a="$s0" -v b="$s1" 'BEGIN {
    split(a, x, " "); split(b, y, " "); t = y[2] - x[2]
    printf "%.1f", (t > 0 ? 100 * (y[1] - x[1]) / t : 0) }')
  # A target that answers errors fast must not pass for a fast one: wrk counts answers other
  # than 2xx/3xx, and socket errors, in lines it prints only when there are some.
  { grep -E "Non-2xx|Socket errors" <<<"$out" || true; } |
    sed "s|^ *|$1, $3 connections: |" >>"$tmp/errors"
  echo "$rps $(to_ms "$p50") $(to_ms "$p99") $(to_ms "$wrk_p99") $cpu $user $wait $steal"
}

# "steal total" clock ticks of all cores so far, from /proc/stat's cpu line: the time the
# hypervisor ran something else while this machine's cores had work, and all time.
steal_ticks() {
  awk '$1 == "cpu" {t = 0; for (i = 2; i <= NF; i++) t += $i; print $9, t; exit}' /proc/stat
}

to_ms() {
  case "$1" in
    *us) awk -v v="${1%us}" 'BEGIN {printf "%.3f", v / 1000}' ;;
    *ms) awk -v v="${1%ms}" 'BEGIN {printf "%.3f", v}' ;;
    *s) awk -v v="${1%s}" 'BEGIN {printf "%.3f", v * 1000}' ;;
    *) echo "$1" ;;
  esac
}

median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
ratio() { awk -v g="$1" -v n="$2" 'BEGIN {printf "%.2fx", g / n}'; }
# Round by round: gateway / nginx of the values in $1 and $2 (one per round, same order) ->
# "median min max". Each round measures both targets within seconds of each other, so its
# ratio is less exposed to the machine's drift than the ratio of two medians.
paired() {
  paste -d' ' <(tr ' ' '\n' <<<"$1" | grep .) <(tr ' ' '\n' <<<"$2" | grep .) |
    awk '{printf "%.4f\n", $1 / $2}' | sort -g >"$tmp/paired"
  echo "$(median <"$tmp/paired") $(head -n1 "$tmp/paired") $(tail -n1 "$tmp/paired")"
}

idle=$(cat /sys/devices/system/cpu/cpuidle/current_driver 2>/dev/null || echo unknown)
[ -r "$HALT_POLL" ] && idle="$idle, guest_halt_poll_ns $(cat "$HALT_POLL")"
[ -n "$halt_poll_was" ] && idle="$idle (set for this run; was $halt_poll_was)"
echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -sr), cpuidle $idle"
[ -n "$BUSY_POLL" ] &&
  echo "gateway: --busy-poll $BUSY_POLL (polls, not sleeping, until $BUSY_POLL us after a request)"
echo "wrk -t1, $ROUNDS rounds of $DURATION per target, targets in alternation (direct nginx"
echo "  gateway, then direct gateway nginx); medians shown"
echo "ratio: gateway / nginx of the medians; paired: the median of each round's own ratio,"
echo "  with the lowest and highest round"
echo "cpu: the target's user + system CPU time per request (backend, nginx's workers, gateway)"
echo "user: the part of it spent in user space, the proxy's own code"
echo "wait: the time per request the target was runnable but waiting for a core"
echo "steal: the share of all cores' time the hypervisor took while the target was measured"
echo "p50, p99: of the latencies wrk measured; wrk p99: wrk's own, after it adds samples for"
echo "  coordinated omission, more of them the more requests/s a target serves (bench/latency.lua)"
printf '\n%-8s %-6s %-8s %12s %9s %9s %9s %9s %9s %9s %7s\n' workers conns target "requests/s" \
  "p50 ms" "p99 ms" "wrk p99" "cpu us" "user us" "wait us" "steal %"
verdict=()
for cfg in $CONFIGS; do
  case $cfg in
    1pin)
      if [ "$(nproc)" -lt 2 ]; then
        echo "$cfg: needs 2 cores or more; skipped" >&2
        continue
      fi
      w=1
      pin 1
      ;;
    1core) w=1 && pin core ;;
    *[!0-9]* | "")
      echo "$cfg: not a configuration (a worker count, 1pin or 1core); skipped" >&2
      continue
      ;;
    *) w=$cfg && pin 0 ;;
  esac
  start_nginx "$w"
  start_gateway "$w"
  for c in $CONNS; do
    declare -A rps=() p50=() p99=() wp99=() cpu=() user=() wait=() steal=()
    for r in $(seq "$ROUNDS"); do
      # The proxies take turns to run right after the backend alone. At 1 connection the one
      # that follows it more often finds the scheduler waking each process on the core of the
      # one that woke it (cheaper than waking an idle core): with a fixed order, gateway /
      # nginx was 0.77-0.87x with nginx second and 0.81-1.09x with the gateway second.
      order="direct nginx gateway"
      [ $((r % 2)) = 0 ] && order="direct gateway nginx"
      for t in $order; do
        case $t in direct) addr=$B1 ;; nginx) addr=$NGINX ;; gateway) addr=$GATEWAY ;; esac
        read -r a b cc wp u us v st < <(measure "$t" "$addr" "$c")
        rps[$t]+="$a "; p50[$t]+="$b "; p99[$t]+="$cc "; wp99[$t]+="$wp "; cpu[$t]+="$u "
        user[$t]+="$us "
        wait[$t]+="$v "; steal[$t]+="$st "
      done
    done
    for t in direct nginx gateway; do
      m_rps=$(tr ' ' '\n' <<<"${rps[$t]}" | grep . | median)
      m_p50=$(tr ' ' '\n' <<<"${p50[$t]}" | grep . | median)
      m_p99=$(tr ' ' '\n' <<<"${p99[$t]}" | grep . | median)
      m_wp99=$(tr ' ' '\n' <<<"${wp99[$t]}" | grep . | median)
      m_cpu=$(tr ' ' '\n' <<<"${cpu[$t]}" | grep . | median)
      m_user=$(tr ' ' '\n' <<<"${user[$t]}" | grep . | median)
      m_wait=$(tr ' ' '\n' <<<"${wait[$t]}" | grep . | median)
      m_steal=$(tr ' ' '\n' <<<"${steal[$t]}" | grep . | median)
      printf '%-8s %-6s %-8s %12.0f %9.3f %9.3f %9.3f %9.1f %9.1f %9.1f %7.1f\n' "$cfg" "$c" "$t" \
        "$m_rps" "$m_p50" "$m_p99" "$m_wp99" "$m_cpu" "$m_user" "$m_wait" "$m_steal"
      eval "last_${t}_rps=$m_rps last_${t}_p99=$m_p99 last_${t}_wp99=$m_wp99"
      eval "last_${t}_cpu=$m_cpu last_${t}_user=$m_user"
    done
    printf '%-8s %-6s %-8s %12s %9s %9s %9s %9s %9s\n' "$cfg" "$c" "ratio" \
      "$(ratio "$last_gateway_rps" "$last_nginx_rps")" "" \
      "$(ratio "$last_gateway_p99" "$last_nginx_p99")" \
      "$(ratio "$last_gateway_wp99" "$last_nginx_wp99")" \
      "$(ratio "$last_gateway_cpu" "$last_nginx_cpu")" \
      "$(ratio "$last_gateway_user" "$last_nginx_user")"
    read -r pr_m pr_lo pr_hi < <(paired "${rps[gateway]}" "${rps[nginx]}")
    read -r pp_m pp_lo pp_hi < <(paired "${p99[gateway]}" "${p99[nginx]}")
    read -r pw_m pw_lo pw_hi < <(paired "${wp99[gateway]}" "${wp99[nginx]}")
    printf '%-8s %-6s %-8s %12s %9s %9s %9s   requests/s %.2f-%.2fx, p99 %.2f-%.2fx, wrk p99 %.2f-%.2fx\n' \
      "$cfg" "$c" "paired" "$(printf '%.2fx' "$pr_m")" "" "$(printf '%.2fx' "$pp_m")" \
      "$(printf '%.2fx' "$pw_m")" "$pr_lo" "$pr_hi" "$pp_lo" "$pp_hi" "$pw_lo" "$pw_hi"
    verdict+=("$(printf '%-8s %-6s requests/s %.2fx, p99 %.2fx: %s (wrk p99 %.2fx)' "$cfg" "$c" \
      "$pr_m" "$pp_m" \
      "$(awk -v r="$pr_m" -v p="$pp_m" 'BEGIN {print (r >= 1 && p <= 1 ? "met" : "not met")}')" \
      "$pw_m")")
    unset rps p50 p99 wp99 cpu user wait steal
  done
  stop
done

# The README's target (issue #7), from the paired medians above; it names configurations 1
# and 2, the others tell why they come out as they do.
echo
echo "target: gateway / nginx requests/s at least 1.00x and p99 at most 1.00x (paired medians,"
echo "  p99 as measured; wrk's own p99 in brackets)"
printf '%s\n' "${verdict[@]}"
if [ -s "$tmp/errors" ]; then
  echo "errors (these rounds' figures are not comparable):"
  cat "$tmp/errors"
else
  echo "errors: none (every answer 2xx or 3xx, no socket error)"
fi

# Memory: the gateway holding many idle client connections.
pin 0
start_gateway 1
rss() { awk '/VmRSS/ {print $2}' "/proc/$gateway_pid/status"; }
before=$(rss)
fifo="$tmp/idle.fifo"
mkfifo "$fifo"
python3 bench/idle_conns.py "${GATEWAY%:*}" "${GATEWAY#*:}" "$IDLE" <"$fifo" >"$tmp/idle.out" &
idle_pid=$!
exec 9>"$fifo"
for _ in $(seq 600); do grep -q open "$tmp/idle.out" 2>/dev/null && break; sleep 0.1; done
sleep 1
held=$(rss)
echo
echo "memory: gateway RSS $((before / 1024)) MiB idle, $((held / 1024)) MiB holding $(cat "$tmp/idle.out" | awk '{print $2}') idle connections"
exec 9>&-
wait "$idle_pid" 2>/dev/null || true
stop
