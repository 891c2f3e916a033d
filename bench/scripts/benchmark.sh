#!/usr/bin/env bash
# minikv beside etcd on this machine, in one run, with the same closed-loop load (issue 5 "Performance"):
#   put, linearizable get, and stale get (etcd: serializable) of VALUE_SIZE values at CONCURRENCY clients, against
#   a fresh `minikv dev` cluster (3 coordinators + 3 volumes, R = 3) and a fresh 3-member etcd cluster (Debian
#   etcd-server, installed here when missing), all on 127.0.0.1; then one LARGE_SIZE PUT and GET through minikv, and the
#   disk's sequential write (dd, fdatasync) and O_DIRECT read rate for the same size beside them.
# Both loads come from `minikv bench`, so the ratio compares the servers, not two tools, and each protocol pairs
# like with like: http1 is minikv's API over HTTP/1.1 beside etcd's HTTP/JSON gateway (/v3/kv/put, /v3/kv/range), a
# pooled connection per client on both; http2 (`--http2`) is minikv over HTTP/2 with prior knowledge beside etcd's
# gRPC API (etcdserverpb.KV/Put, /Range), the clients sharing one connection on both, as etcd's own client does.
# The phases alternate etcd/minikv so a drift in background load hits both. The script records the PIDs it
# starts, stops only those (SIGTERM, then SIGKILL after 15 s), and deletes its temporary directory.
#
# Usage: bench/scripts/benchmark.sh [--etcd-only | --minikv-only]
# Environment (defaults): CONCURRENCY=64 VALUE_SIZE=1KiB DURATION=20s WARMUP=3s KEYS=10000 LARGE_SIZE=1GiB (0: skip)
#   ROUNDS=3 (put, get, stale repeated; the table shows medians and each round's figures)
#   PROTOCOLS="http2 http1" (each round runs its phases over each; one of them alone halves the time)
#   CLUSTER_WARMUP=30s (unmeasured mixed load on each cluster first; 0: none)
#   ELECTION_TIMEOUT_MS=1000-2000 (minikv coordinators' --election-timeout-ms, like etcd's default 1 s)
#   SKIP_BUILD=0 WORK_DIR=/tmp KEEP=0 (1 keeps the data and logs) READY_TIMEOUT=300 (seconds for the clusters to start)
#   COORD_PORT=5000 VOLUME_PORT=6000 ETCD_PORT=2379 (first ports; each cluster uses 6 from there, so two runs of the
#   script on one machine do not collide when these differ)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
CONCURRENCY=${CONCURRENCY:-64}
VALUE_SIZE=${VALUE_SIZE:-1KiB}
DURATION=${DURATION:-20s}
WARMUP=${WARMUP:-3s}
KEYS=${KEYS:-10000}
LARGE_SIZE=${LARGE_SIZE:-1GiB}
SKIP_BUILD=${SKIP_BUILD:-0}
KEEP=${KEEP:-0}
ROUNDS=${ROUNDS:-3}
PROTOCOLS=${PROTOCOLS:-http2 http1}
ELECTION_TIMEOUT_MS=${ELECTION_TIMEOUT_MS:-1000-2000}
CLUSTER_WARMUP=${CLUSTER_WARMUP:-30s}
# Starting six .NET servers on a loaded 2-core box has taken over 60 s (JIT); the default leaves room for that.
READY_TIMEOUT=${READY_TIMEOUT:-300}
COORD_PORT=${COORD_PORT:-5000}
VOLUME_PORT=${VOLUME_PORT:-6000}
ETCD_PORT=${ETCD_PORT:-2379}
RUN_ETCD=1
RUN_MINIKV=1
case "${1:-}" in
  --etcd-only) RUN_MINIKV=0 ;;
  --minikv-only) RUN_ETCD=0 ;;
  "") ;;
  *) echo "usage: $0 [--etcd-only | --minikv-only]" >&2; exit 2 ;;
esac

WORK=$(mktemp -d "${WORK_DIR:-/tmp}/minikv-benchmark.XXXXXX")
RESULTS=$WORK/results
mkdir -p "$RESULTS"
PIDS=()
MINIKV_DLL=$ROOT/src/MiniKV.Cli/bin/Release/net10.0/minikv.dll
COORD_HTTP_PORTS="$COORD_PORT $((COORD_PORT + 2)) $((COORD_PORT + 4))"
VOLUME_HTTP_PORTS="$VOLUME_PORT $((VOLUME_PORT + 2)) $((VOLUME_PORT + 4))"
COORDINATORS=http://127.0.0.1:$COORD_PORT,http://127.0.0.1:$((COORD_PORT + 2)),http://127.0.0.1:$((COORD_PORT + 4))
# etcd member m: client port ETCD_PORT + 2(m-1), peer port the next one
ETCD_URL=http://127.0.0.1:$ETCD_PORT

log() { echo "# $*" >&2; }

stop_pid() { # SIGTERM one of our processes, wait up to 15 s, then SIGKILL it
  local pid=$1 i
  kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for i in $(seq 150); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
  log "pid $pid did not stop on SIGTERM; SIGKILL"
  kill -KILL "$pid" 2>/dev/null || true
}

cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
  if [ "$KEEP" = 1 ]; then log "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

wait_http() { # URL SECONDS [BODY-SUBSTRING]: until the URL answers 200 (and contains the substring)
  local url=$1 seconds=$2 want=${3:-} i body
  for i in $(seq $((seconds * 10))); do
    if body=$(curl -fsS --max-time 1 "$url" 2>/dev/null) && [[ -z "$want" || "$body" == *"$want"* ]]; then return 0; fi
    sleep 0.1
  done
  log "$url not ready after $seconds s"
  return 1
}

minikv() { dotnet "$MINIKV_DLL" "$@"; }
exec_minikv() { exec dotnet "$MINIKV_DLL" "$@"; }

# -------- build and install --------
if [ "$RUN_MINIKV" = 1 ] && [ "$SKIP_BUILD" != 1 ]; then
  log "building minikv (Release)"
  dotnet build "$ROOT/src/MiniKV.Cli" -c Release -nologo -v quiet >&2
fi
if [ ! -f "$MINIKV_DLL" ]; then
  log "minikv is not built: dotnet build src/MiniKV.Cli -c Release"; exit 1
fi
if [ "$RUN_ETCD" = 1 ] && ! command -v etcd >/dev/null; then
  log "installing etcd-server (apt)"
  if ! apt-get install -y -q etcd-server >&2; then apt-get update -q >&2 && apt-get install -y -q etcd-server >&2; fi
  # The Debian package starts a single-node etcd service on 2379/2380; ours needs those ports.
  if command -v systemctl >/dev/null && systemctl is-active --quiet etcd 2>/dev/null; then systemctl stop etcd || true; fi
fi
for port in $(seq "$ETCD_PORT" $((ETCD_PORT + 5))) $(seq "$COORD_PORT" $((COORD_PORT + 5))) $(seq "$VOLUME_PORT" $((VOLUME_PORT + 5))); do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then log "port $port is already in use; stop what runs there first"; exit 1; fi
done

# -------- start the clusters --------
if [ "$RUN_ETCD" = 1 ]; then
  log "etcd $(etcd --version | head -1): starting 3 members"
  CLUSTER=m1=http://127.0.0.1:$((ETCD_PORT + 1)),m2=http://127.0.0.1:$((ETCD_PORT + 3)),m3=http://127.0.0.1:$((ETCD_PORT + 5))
  for m in 1 2 3; do
    c=$((ETCD_PORT + 2 * (m - 1))) p=$((ETCD_PORT + 2 * (m - 1) + 1))
    etcd --name "m$m" --data-dir "$WORK/etcd-m$m" \
      --listen-client-urls "http://127.0.0.1:$c" --advertise-client-urls "http://127.0.0.1:$c" \
      --listen-peer-urls "http://127.0.0.1:$p" --initial-advertise-peer-urls "http://127.0.0.1:$p" \
      --initial-cluster "$CLUSTER" --initial-cluster-state new --initial-cluster-token minikv-bench \
      >"$WORK/etcd-m$m.log" 2>&1 &
    PIDS+=($!)
  done
  for c in $ETCD_PORT $((ETCD_PORT + 2)) $((ETCD_PORT + 4)); do wait_http "http://127.0.0.1:$c/health" "$READY_TIMEOUT" '"true"'; done
fi
if [ "$RUN_MINIKV" = 1 ]; then
  log "minikv: starting a dev cluster (3 coordinators, 3 volumes) in $WORK/minikv"
  # exec: the PID recorded below must be minikv dev itself (not a subshell running a function), or cleanup would
  # stop the subshell and leave the cluster running.
  # etcd's default election timeout is 1 s (randomized up to 2 s); minikv's default of 150-300 ms made leadership move
  # every few seconds on this loaded 2-core box (and every move costs writes), so both run with the same order.
  MINIKV_ELECTION_TIMEOUT_MS=$ELECTION_TIMEOUT_MS exec_minikv dev --dir "$WORK/minikv" --coordinator-port "$COORD_PORT" --volume-port "$VOLUME_PORT" --ready-timeout "$READY_TIMEOUT" --quiet >"$WORK/minikv-dev.out" 2>"$WORK/minikv-dev.err" &
  PIDS+=($!)
  for port in $COORD_HTTP_PORTS $VOLUME_HTTP_PORTS; do
    wait_http "http://127.0.0.1:$port/health/ready" "$READY_TIMEOUT" || { tail -5 "$WORK/minikv-dev.err" >&2; exit 1; }
  done
fi
log "load average before the runs: $(cut -d' ' -f1-3 /proc/loadavg); $(nproc) cores; uptime: $(uptime)"

# -------- the runs (each writes one JSON line) --------
http_flag() { [ "$1" = http2 ] && echo --http2; true; } # PROTOCOL: the bench flag that selects it
run() { # NAME TARGET CONCURRENCY VALUE-SIZE KEYS ARGS...: one `minikv bench` run, JSON to $RESULTS/NAME.json
  local name=$1 target=$2 clients=$3 size=$4 keys=$5; shift 5
  log "$name ($(cut -d' ' -f1 /proc/loadavg))"
  minikv bench --target "$target" --etcd "$ETCD_URL" --coordinator "$COORDINATORS" --concurrency "$clients" \
    --value-size "$size" --duration "$DURATION" --warmup "$WARMUP" --keys "$keys" --seed 1 --json "$@" >"$RESULTS/$name.json"
}
targets() { [ "$RUN_ETCD" = 1 ] && echo etcd; [ "$RUN_MINIKV" = 1 ] && echo minikv; true; }
# A fresh .NET server runs tier-0 and instrumented code for its first tens of seconds (longer on a loaded box, where
# the background JIT thread waits for a core); etcd is compiled ahead. Both clusters get the same unmeasured mixed
# load first, so the rounds compare steady states.
if [ "$CLUSTER_WARMUP" != 0 ]; then
  for target in $(targets); do
    log "$target: warming up for $CLUSTER_WARMUP (not measured)"
    minikv bench --target "$target" --etcd "$ETCD_URL" --coordinator "$COORDINATORS" --concurrency "$CONCURRENCY" \
      --value-size "$VALUE_SIZE" --duration "$CLUSTER_WARMUP" --warmup 0s --keys "$KEYS" --seed 2 --mix 50:50 --preload \
      $(http_flag "${PROTOCOLS%% *}") --json >"$RESULTS/warmup-$target.json"
  done
fi
for round in $(seq "$ROUNDS"); do
  for proto in $PROTOCOLS; do
    for phase in put get stale; do
      for target in $(targets); do
        case $phase in
          put) run "$target-put-$proto-r$round" "$target" "$CONCURRENCY" "$VALUE_SIZE" "$KEYS" --mix write $(http_flag "$proto") ;;
          get) # the warmup wrote every key; without it, the first round writes them
            preload=false; if [ "$round" = 1 ] && [ "$proto" = "${PROTOCOLS%% *}" ] && [ "$CLUSTER_WARMUP" = 0 ]; then preload=true; fi
            run "$target-get-$proto-r$round" "$target" "$CONCURRENCY" "$VALUE_SIZE" "$KEYS" --mix read --preload "$preload" $(http_flag "$proto") ;;
          stale) run "$target-stale-$proto-r$round" "$target" "$CONCURRENCY" "$VALUE_SIZE" "$KEYS" --mix read --preload false --consistency stale $(http_flag "$proto") ;;
        esac
      done
    done
  done
done
if [ "$RUN_MINIKV" = 1 ] && [ "$LARGE_SIZE" != 0 ]; then
  run minikv-large-put minikv 1 "$LARGE_SIZE" 1 --key-prefix large/ --mix write --ops 1
  run minikv-large-get minikv 1 "$LARGE_SIZE" 1 --key-prefix large/ --mix read --preload false --ops 1
  # The disk's own sequential rate beside them, on the same file system, after the clusters' runs: LARGE_SIZE written
  # with one fdatasync at the end, then read back with O_DIRECT (not from the page cache).
  mib=$(python3 -c 'import re, sys; n, u = re.fullmatch(r"(\d+)\s*([KMG]?)(?:i?B)?", sys.argv[1], re.I).groups(); print(max(1, int(n) * {"": 1, "K": 2**10, "M": 2**20, "G": 2**30}[u.upper()] >> 20))' "$LARGE_SIZE")
  probe=$WORK/disk-probe
  write=$(dd if=/dev/zero of="$probe" bs=1M count="$mib" conv=fdatasync 2>&1 | tail -1)
  read=$(dd if="$probe" of=/dev/null bs=1M iflag=direct 2>&1 | tail -1)
  rm -f "$probe"
  python3 - "$write" "$read" >"$RESULTS/disk.json" <<'PY'
import json, re, sys
def rate(line):  # dd's last line: "N bytes (...) copied, S s, R MB/s"
    m = re.match(r"(\d+) bytes .* copied, ([\d.]+) s", line)
    return round(int(m[1]) / float(m[2]) / 1e6, 1) if m else None
print(json.dumps({"write_mb_per_s": rate(sys.argv[1]), "read_mb_per_s": rate(sys.argv[2])}))
PY
fi
log "load average after the runs: $(cut -d' ' -f1-3 /proc/loadavg)"

# -------- side by side --------
python3 - "$RESULTS" "$CONCURRENCY" "$VALUE_SIZE" "$ROUNDS" "$PROTOCOLS" <<'PY'
import json, os, statistics, sys
results, concurrency, size, rounds, protocols = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5].split()
def load(name):
    path = os.path.join(results, name + ".json")
    return json.load(open(path)) if os.path.exists(path) else None
def runs(target, phase, op):
    return [r[op] for r in (load(f"{target}-{phase}-r{i}") for i in range(1, rounds + 1)) if r]
names = {"http2": "HTTP/2 (etcd gRPC)", "http1": "HTTP/1.1 (etcd JSON)"}
def median(runs, field):
    return statistics.median(r[field] for r in runs) if runs else None
rows = [(f"{label}, {names[proto]}", f"{phase}-{proto}", op) for proto in protocols
        for label, phase, op in (("put", "put", "write"), ("get", "get", "read"), ("get stale/serializable", "stale", "read"))]
print(f"minikv vs etcd: {concurrency} clients, {size} values, same machine, same run; medians of {rounds} rounds")
print(f"{'operation':44} {'minikv ops/s':>12} {'p50 ms':>7} {'p99 ms':>7} {'errors':>6} | {'etcd ops/s':>10} {'p50 ms':>7} {'p99 ms':>7} {'errors':>6} | {'ratio':>6} | per round: minikv/etcd ops/s")
for label, phase, op in rows:
    m, e = runs("minikv", phase, op), runs("etcd", phase, op)
    def cells(rs, width):
        return (f"{median(rs, 'ops_per_s'):>{width}.0f} {median(rs, 'p50_ms'):>7.2f} {median(rs, 'p99_ms'):>7.2f} {sum(r['errors'] for r in rs):>6}" if rs
                else f"{'-':>{width}} {'-':>7} {'-':>7} {'-':>6}")
    ratio = f"{median(m, 'ops_per_s') / median(e, 'ops_per_s'):>5.2f}x" if m and e and median(e, "ops_per_s") > 0 else f"{'-':>6}"
    per_round = " ".join(f"{a['ops_per_s']:.0f}/{b['ops_per_s']:.0f}" for a, b in zip(m, e)) if m and e else ""
    print(f"{label:44} {cells(m, 12)} | {cells(e, 10)} | {ratio} | {per_round}")
for phase, op in (("large-put", "write"), ("large-get", "read")):
    r = load("minikv-" + phase)
    if r:
        s = r[op]
        print(f"minikv {phase}: {r['value_size'] / 2**20:.0f} MiB in {r['measured_s']:.2f} s = {s['mb_per_s']:.1f} MB/s ({s['errors']} errors)")
disk = load("disk")
if disk:
    print(f"disk, sequential (dd, same size): write + fdatasync {disk['write_mb_per_s']} MB/s, O_DIRECT read {disk['read_mb_per_s']} MB/s;"
          " a PUT writes R copies to this one disk")
PY
