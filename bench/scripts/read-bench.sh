#!/usr/bin/env bash
# The read path beside etcd (issue 5, "GET, linearizable: >= 2x etcd's linearizable get"): a fresh `minikv dev`
# cluster (3 coordinators + 3 volumes, R = 3) and a fresh 3-member etcd (Debian etcd-server) on 127.0.0.1, loaded
# by `minikv bench` at CONCURRENCY clients with VALUE_SIZE values: linearizable GET against etcd's linearizable
# range, then minikv's ?consistency=stale beside etcd's serializable range, RUNS times, alternating the targets so a
# drift in background load hits both; then one LARGE_SIZE PUT and RUNS GETs of it through the coordinators.
# Prints every run and the medians. Unlike benchmark.sh (the write side, SPEC ports) it uses its own ports, so both
# can run on one box; it stops only the PIDs it started and deletes its temporary directory.
#
# Usage: bench/scripts/read-bench.sh
# Environment (defaults): RUNS=3 CONCURRENCY=64 VALUE_SIZE=1KiB DURATION=10s WARMUP=3s KEYS=10000 LARGE_SIZE=1GiB (0: skip)
#   COORD_PORT=27100 VOLUME_PORT=27200 ETCD_PORT=23379 (members use ETCD_PORT, +1000, +2000; peers +1; all below the ephemeral range)
#   FOLLOWER=0 (1: load each cluster through a follower) READY_TIMEOUT=300 (s, for a loaded box) SKIP_BUILD=0 WORK_DIR=/tmp KEEP=0
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
RUNS=${RUNS:-3}
CONCURRENCY=${CONCURRENCY:-64}
VALUE_SIZE=${VALUE_SIZE:-1KiB}
DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-3s}
KEYS=${KEYS:-10000}
LARGE_SIZE=${LARGE_SIZE:-1GiB}
COORD_PORT=${COORD_PORT:-27100}
VOLUME_PORT=${VOLUME_PORT:-27200}
ETCD_PORT=${ETCD_PORT:-23379}
SKIP_BUILD=${SKIP_BUILD:-0}
KEEP=${KEEP:-0}
READY_TIMEOUT=${READY_TIMEOUT:-300}

WORK=$(mktemp -d "${WORK_DIR:-/tmp}/minikv-read-bench.XXXXXX")
RESULTS=$WORK/results
mkdir -p "$RESULTS"
PIDS=()
MINIKV_DLL=$ROOT/src/MiniKV.Cli/bin/Release/net10.0/minikv.dll
COORDINATORS=http://127.0.0.1:$COORD_PORT,http://127.0.0.1:$((COORD_PORT + 2)),http://127.0.0.1:$((COORD_PORT + 4))
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

if [ "$SKIP_BUILD" != 1 ]; then
  log "building minikv (Release)"
  dotnet build "$ROOT/src/MiniKV.Cli" -c Release -nologo -v quiet >&2
fi
if ! command -v etcd >/dev/null; then
  log "installing etcd-server (apt)"
  if ! apt-get install -y -q etcd-server >&2; then apt-get update -q >&2 && apt-get install -y -q etcd-server >&2; fi
  if command -v systemctl >/dev/null && systemctl is-active --quiet etcd 2>/dev/null; then systemctl stop etcd || true; fi
fi
ETCD_CLIENT=("$ETCD_PORT" $((ETCD_PORT + 1000)) $((ETCD_PORT + 2000)))
for port in "${ETCD_CLIENT[@]}" $((ETCD_PORT + 1)) $((ETCD_PORT + 1001)) $((ETCD_PORT + 2001)) \
  $(seq "$COORD_PORT" $((COORD_PORT + 5))) $(seq "$VOLUME_PORT" $((VOLUME_PORT + 5))); do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then log "port $port is already in use; pick other ports"; exit 1; fi
done

log "etcd $(etcd --version | head -1): starting 3 members"
CLUSTER=m1=http://127.0.0.1:$((ETCD_PORT + 1)),m2=http://127.0.0.1:$((ETCD_PORT + 1001)),m3=http://127.0.0.1:$((ETCD_PORT + 2001))
for m in 1 2 3; do
  c=${ETCD_CLIENT[$((m - 1))]}
  p=$((c + 1))
  etcd --name "m$m" --data-dir "$WORK/etcd-m$m" \
    --listen-client-urls "http://127.0.0.1:$c" --advertise-client-urls "http://127.0.0.1:$c" \
    --listen-peer-urls "http://127.0.0.1:$p" --initial-advertise-peer-urls "http://127.0.0.1:$p" \
    --initial-cluster "$CLUSTER" --initial-cluster-state new --initial-cluster-token minikv-read-bench \
    >"$WORK/etcd-m$m.log" 2>&1 &
  PIDS+=($!)
done
for c in "${ETCD_CLIENT[@]}"; do wait_http "http://127.0.0.1:$c/health" 60 '"true"'; done

log "minikv: starting a dev cluster (3 coordinators, 3 volumes) in $WORK/minikv"
# dotnet itself, not the minikv function: $! must be the process that owns the servers, or stopping it misses them.
dotnet "$MINIKV_DLL" dev --dir "$WORK/minikv" --coordinator-port "$COORD_PORT" --volume-port "$VOLUME_PORT" --ready-timeout "$READY_TIMEOUT" --quiet \
  >"$WORK/minikv-dev.out" 2>"$WORK/minikv-dev.err" &
PIDS+=($!)
for port in "$COORD_PORT" $((COORD_PORT + 2)) $((COORD_PORT + 4)) "$VOLUME_PORT" $((VOLUME_PORT + 2)) $((VOLUME_PORT + 4)); do
  wait_http "http://127.0.0.1:$port/health/ready" "$READY_TIMEOUT" || { tail -5 "$WORK/minikv-dev.err" >&2; exit 1; }
done

# Each load goes to its cluster's leader (FOLLOWER=1: to a follower instead), so neither side pays for forwarding
# by the luck of the election: minikv's client sends to its first --coordinator URL, etcd's target to one member.
FOLLOWER=${FOLLOWER:-0}
pick_minikv() {
  curl -fsS "http://127.0.0.1:$COORD_PORT/admin/status" | python3 -c '
import json, sys
s = json.load(sys.stdin); want = "follower" if sys.argv[1] == "1" else "leader"
print(next(c["address"] for c in s["coordinators"] if c["role"] == want and c["address"]))' "$FOLLOWER"
}
pick_etcd() {
  local c
  for c in "${ETCD_CLIENT[@]}"; do
    curl -fsS -X POST -d '{}' "http://127.0.0.1:$c/v3/maintenance/status" | python3 -c '
import json, sys
s = json.load(sys.stdin); leader = s["leader"] == s["header"]["member_id"]
sys.exit(0 if leader == (sys.argv[1] != "1") else 1)' "$FOLLOWER" && { echo "http://127.0.0.1:$c"; return 0; }
  done
  return 1
}
for i in $(seq 100); do MINIKV_URL=$(pick_minikv 2>/dev/null) && break; sleep 0.2; done
ETCD_URL=$(pick_etcd)
COORDINATORS=$MINIKV_URL,$COORDINATORS
log "minikv load goes to $MINIKV_URL, etcd load to $ETCD_URL (FOLLOWER=$FOLLOWER)"

run() { # NAME TARGET VALUE-SIZE CLIENTS KEYS ARGS...: one `minikv bench` run, JSON to $RESULTS/NAME.json
  local name=$1 target=$2 size=$3 clients=$4 keys=$5; shift 5
  log "$name (load $(cut -d' ' -f1 /proc/loadavg))"
  cut -d' ' -f1 /proc/loadavg >"$RESULTS/$name.load"
  minikv bench --target "$target" --etcd "$ETCD_URL" --coordinator "$COORDINATORS" --concurrency "$clients" \
    --value-size "$size" --duration "$DURATION" --warmup "$WARMUP" --keys "$keys" --seed 1 --json "$@" >"$RESULTS/$name.json"
}

log "load average before the runs: $(cut -d' ' -f1-3 /proc/loadavg)"
for target in etcd minikv; do
  # A loaded box can time out a few preload writes (either store); the preload is idempotent, so try again.
  for attempt in 1 2 3; do
    if run "$target-preload" "$target" "$VALUE_SIZE" "$CONCURRENCY" "$KEYS" --mix read --preload true --ops 1; then break; fi
    [ "$attempt" = 3 ] && { log "$target: preload failed 3 times"; exit 1; }
  done
done
for r in $(seq "$RUNS"); do
  for target in etcd minikv; do
    run "$target-get-$r" "$target" "$VALUE_SIZE" "$CONCURRENCY" "$KEYS" --mix read --preload false
  done
  for target in etcd minikv; do
    run "$target-stale-$r" "$target" "$VALUE_SIZE" "$CONCURRENCY" "$KEYS" --mix read --preload false --consistency stale
  done
done
if [ "$LARGE_SIZE" != 0 ]; then
  run minikv-large-put minikv "$LARGE_SIZE" 1 1 --key-prefix large/ --mix write --ops 1
  for r in $(seq "$RUNS"); do
    run "minikv-large-get-$r" minikv "$LARGE_SIZE" 1 1 --key-prefix large/ --mix read --preload false --ops 1
  done
fi
log "load average after the runs: $(cut -d' ' -f1-3 /proc/loadavg)"

python3 - "$RESULTS" "$RUNS" "$CONCURRENCY" "$VALUE_SIZE" <<'PY'
import json, os, statistics, sys
results, runs, concurrency, size = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
def load(name):
    path = os.path.join(results, name + ".json")
    if not os.path.exists(path):
        return None
    r = json.load(open(path))
    r["load"] = open(os.path.join(results, name + ".load")).read().strip()
    return r
print(f"minikv vs etcd reads: {concurrency} clients, {size} values, same machine, same run, {runs} runs")
for phase, label in (("get", "linearizable get (etcd: linearizable range)"), ("stale", "stale get (etcd: serializable range)")):
    ratios, mops, eops = [], [], []
    for r in range(1, runs + 1):
        m, e = load(f"minikv-{phase}-{r}"), load(f"etcd-{phase}-{r}")
        if not m or not e:
            continue
        ms, es = m["read"], e["read"]
        ratio = ms["ops_per_s"] / es["ops_per_s"] if es["ops_per_s"] > 0 else float("nan")
        ratios.append(ratio); mops.append(ms["ops_per_s"]); eops.append(es["ops_per_s"])
        print(f"{phase} run={r} minikv_ops_per_s={ms['ops_per_s']:.0f} p50_ms={ms['p50_ms']:.2f} p99_ms={ms['p99_ms']:.2f} errors={ms['errors']} load={m['load']}"
              f" | etcd_ops_per_s={es['ops_per_s']:.0f} p50_ms={es['p50_ms']:.2f} p99_ms={es['p99_ms']:.2f} errors={es['errors']} load={e['load']} | ratio={ratio:.2f}")
    if ratios:
        print(f"{label}: median minikv {statistics.median(mops):.0f} ops/s, etcd {statistics.median(eops):.0f} ops/s, median ratio {statistics.median(ratios):.2f}x"
              f" (runs {' '.join(f'{x:.2f}' for x in ratios)})")
put = load("minikv-large-put")
if put:
    print(f"large put: {put['value_size'] / 2**20:.0f} MiB in {put['measured_s']:.2f} s = {put['write']['mb_per_s']:.1f} MB/s ({put['write']['errors']} errors)")
gets = [g for g in (load(f"minikv-large-get-{r}") for r in range(1, runs + 1)) if g]
for i, g in enumerate(gets, 1):
    print(f"large get run={i}: {g['value_size'] / 2**20:.0f} MiB in {g['measured_s']:.2f} s = {g['read']['mb_per_s']:.1f} MB/s ({g['read']['errors']} errors) load={g['load']}")
if gets:
    print(f"large get: median {statistics.median(g['read']['mb_per_s'] for g in gets):.1f} MB/s")
PY
