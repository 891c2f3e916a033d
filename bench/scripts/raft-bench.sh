#!/usr/bin/env bash
# Raft (MiniKV.Consensus via bench/MiniKV.RaftBench) vs etcd 3.4 on loopback, same client tool, same run.
#   bench/scripts/raft-bench.sh [--seconds 10] [--kills 20] [--phases "load read failover"] [--targets "raft etcd"]
#   (docs/benchmarks.md, "Raft (MiniKV.Consensus) vs etcd"); --phases and --targets pick which measurements run.
# Both clusters: 3 members, fsync on, election timeouts 150-300 ms (RaftBench: --election-timeout-ms 150-300,
# heartbeat 50 ms; etcd: --heartbeat-interval 30 --election-timeout 150 -- etcd demands election >= 5x heartbeat --
# and randomizes the election timeout over [150, 300) ms itself).
# Clients: RaftBench proposers share 2 connections per member to the node's binary client port; etcd is driven
# through its gRPC API (one HTTP/2 connection per member, as clientv3 does). --etcd-api json restores the HTTP/JSON
# gateway used before 2026-11-26.
# RAFT_BENCH_DIR (default /tmp/minikv-raft-bench) and RAFT_BENCH_PORT_OFFSET (default 0, added to every port) let two
# runs share a machine.
# RAFT_NODE_ARGS (default empty) is added to every RaftBench node's command line, e.g. '--lease-reads true'.
# Internal: "raft-bench.sh restart NAME" restarts one member on its data (used by the failover client).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
RUN="${RAFT_BENCH_DIR:-/tmp/minikv-raft-bench}"
export RAFT_BENCH_DIR="$RUN"
O="${RAFT_BENCH_PORT_OFFSET:-0}"
export RAFT_BENCH_PORT_OFFSET="$O"
RAFT_NODE_ARGS="${RAFT_NODE_ARGS:-}"
export RAFT_NODE_ARGS
DLL="$ROOT/bench/MiniKV.RaftBench/bin/Release/net10.0/MiniKV.RaftBench.dll"
port() { echo $(( $1 + O )); }
PEERS=127.0.0.1:$(port 24101),127.0.0.1:$(port 24102),127.0.0.1:$(port 24103)
ETCD_CLUSTER=m1=http://127.0.0.1:$(port 23801),m2=http://127.0.0.1:$(port 23802),m3=http://127.0.0.1:$(port 23803)

start_member() { # NAME (n1..n3 or m1..m3): starts it in the background on its data, writes RUN/pids/NAME.pid
  local name=$1 i=${1:1}
  if [[ $name == n* ]]; then
    setsid dotnet "$DLL" node --id "$name" --grpc "127.0.0.1:$(port 2410$i)" --http "127.0.0.1:$(port 2420$i)" \
      --client "127.0.0.1:$(port 2430$i)" --data "$RUN/data/$name" \
      --peers "$PEERS" --election-timeout-ms 150-300 --heartbeat-ms 50 $RAFT_NODE_ARGS >>"$RUN/logs/$name.log" 2>&1 &
  else
    setsid etcd --name "$name" --data-dir "$RUN/data/$name" --listen-client-urls "http://127.0.0.1:$(port 2379$i)" \
      --advertise-client-urls "http://127.0.0.1:$(port 2379$i)" --listen-peer-urls "http://127.0.0.1:$(port 2380$i)" \
      --initial-advertise-peer-urls "http://127.0.0.1:$(port 2380$i)" --initial-cluster "$ETCD_CLUSTER" \
      --initial-cluster-state new --heartbeat-interval 30 --election-timeout 150 >>"$RUN/logs/$name.log" 2>&1 &
  fi
  echo $! >"$RUN/pids/$name.pid"
}

if [[ ${1:-} == restart ]]; then
  start_member "$2"
  exit 0
fi

SECONDS_PER_RUN=10 KILLS=20 ETCD_API=grpc PHASES="load read failover" TARGETS="raft etcd"
while [[ $# -gt 0 ]]; do
  case $1 in
    --seconds) SECONDS_PER_RUN=$2; shift 2 ;;
    --kills) KILLS=$2; shift 2 ;;
    --etcd-api) ETCD_API=$2; shift 2 ;;
    --phases) PHASES=$2; shift 2 ;;
    --targets) TARGETS=$2; shift 2 ;;
    *) echo "unknown flag $1" >&2; exit 2 ;;
  esac
done

command -v etcd >/dev/null || { sudo apt-get install -y etcd-server || apt-get install -y etcd-server; }
# Always build: an up-to-date build takes seconds, and a stale binary once failed on a newer flag.
dotnet build "$ROOT/bench/MiniKV.RaftBench" -c Release -v q -nologo >/dev/null

stop_all() {
  for f in "$RUN"/pids/*.pid; do
    [[ -f $f ]] && kill "$(cat "$f")" 2>/dev/null || true
  done
  # RaftBench nodes were seen still running 30+ s after SIGTERM (graceful shutdown waits); do not leave them behind.
  sleep 5
  for f in "$RUN"/pids/*.pid; do
    [[ -f $f ]] && kill -9 "$(cat "$f")" 2>/dev/null || true
  done
}
trap stop_all EXIT
trap 'exit 143' INT TERM
rm -rf "$RUN" && mkdir -p "$RUN/data" "$RUN/logs" "$RUN/pids"
for m in n1 n2 n3 m1 m2 m3; do start_member $m; done

RAFT=http://127.0.0.1:$(port 24201),http://127.0.0.1:$(port 24202),http://127.0.0.1:$(port 24203)
ETCD=http://127.0.0.1:$(port 23791),http://127.0.0.1:$(port 23792),http://127.0.0.1:$(port 23793)
# A failed run (exit 1, e.g. a kill that never recovered) is reported in its RESULT line and must not end the script.
# The failover client gets 90 s per kill: on a loaded box a restarted member took 15-30 s to rejoin, and a 300 s cap
# cut a 20-kill run off after 10 kills without its RESULT line.
client() { # client MODE --target raft|etcd ...
  [[ " $TARGETS " == *" $3 "* ]] || return 0
  timeout "${CLIENT_TIMEOUT:-300}" dotnet "$DLL" "$@" | tee -a "$RUN/results.txt" | grep '^RESULT' || true; }
for i in $(seq 1 120); do
  curl -sf "http://127.0.0.1:$(port 24201)/status" | grep -q 'leader=n' && curl -sf "http://127.0.0.1:$(port 23791)/health" | grep -q true && break
  sleep 1
done

echo "uptime: $(uptime)" | tee "$RUN/results.txt"
phase() { [[ " $PHASES " == *" $1 "* ]]; }
phase load && for n in 1 16 64 256; do
  client load --target raft --targets $RAFT --proposers $n --seconds "$SECONDS_PER_RUN"
  client load --target etcd --targets $ETCD --proposers $n --seconds "$SECONDS_PER_RUN" --etcd-api "$ETCD_API"
done
phase read && client read --target raft --targets $RAFT --seconds 5
phase read && client read --target etcd --targets $ETCD --seconds 5 --etcd-api "$ETCD_API"
phase failover && CLIENT_TIMEOUT=$(( 60 + 90 * KILLS )) client failover --target raft --targets "n1=http://127.0.0.1:$(port 24201),n2=http://127.0.0.1:$(port 24202),n3=http://127.0.0.1:$(port 24203)" \
  --pid-dir "$RUN/pids" --restart-cmd "$0 restart" --kills "$KILLS" --writers 64
phase failover && CLIENT_TIMEOUT=$(( 60 + 90 * KILLS )) client failover --target etcd --targets "m1=http://127.0.0.1:$(port 23791),m2=http://127.0.0.1:$(port 23792),m3=http://127.0.0.1:$(port 23793)" \
  --pid-dir "$RUN/pids" --restart-cmd "$0 restart" --kills "$KILLS" --writers 64 --etcd-api "$ETCD_API"
echo "uptime: $(uptime)" | tee -a "$RUN/results.txt"

# Side by side: RaftBench vs etcd with ratios.
python3 - "$RUN/results.txt" <<'PY'
import sys, re
rows = {}
for line in open(sys.argv[1]):
    if not line.startswith("RESULT"): continue
    f = dict(kv.split("=", 1) for kv in line.split()[1:])
    key = (f["mode"], f.get("proposers") or f.get("readers") or f.get("writers"))
    rows.setdefault(key, {})[f["target"]] = f
print(f"{'test':<24}{'raft':>30}{'etcd':>30}{'ratio':>8}")
for (mode, n), t in rows.items():
    r, e = t.get("raft"), t.get("etcd")
    if mode == "load": fmt = lambda x: f"{x['rate']}/s p50 {x['p50_ms']} p99 {x['p99_ms']}"; val = "rate"
    elif mode == "read": fmt = lambda x: f"{x['rate']}/s p50 {x['p50_ms']}"; val = "rate"
    else: fmt = lambda x: f"med {x['median_ms']} max {x['max_ms']} gaps>1s {x['gaps_over_1s']}"; val = "median_ms"
    ratio = f"{float(r[val]) / float(e[val]):.2f}" if r and e and float(e[val]) else "-"
    print(f"{mode + ' ' + n:<24}{fmt(r) if r else '-':>30}{fmt(e) if e else '-':>30}{ratio:>8}")
PY
