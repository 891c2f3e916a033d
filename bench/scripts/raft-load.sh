#!/usr/bin/env bash
# Three MiniKV.RaftBench nodes alone (no etcd beside them, unlike raft-bench.sh), one load or read run against them,
# optionally profiled: docs/benchmarks.md, "The client port's syscalls". Ports 25001-25203 (raft-bench.sh's + 900).
# Build first: dotnet build bench/MiniKV.RaftBench -c Release.
#   [N=256] [SECS=20] [WARM=5] [MODE=load|read] [PERF=0|1] [ARGS='--connections 2'] [NODE_ARGS='--lease-reads true'] \
#   [DLL=path/to/MiniKV.RaftBench.dll] \
#   bench/scripts/raft-load.sh
# A 5 s unmeasured load of the same size first (JIT, connections); PERF=1 records `perf record -a -g -F 499` for 8 s
# from the 6th second (with DOTNET_PerfMapEnabled=1 for .NET symbols) into the printed WORK directory.
# Prints the RESULT line and each node's /status (commit, applied, dedup, syncs, entries persisted).
set -u
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
DLL=${DLL:-$ROOT/bench/MiniKV.RaftBench/bin/Release/net10.0/MiniKV.RaftBench.dll}
W=$(mktemp -d /tmp/raft-load.XXXX); mkdir -p $W/data $W/logs
PERF=${PERF:-0}
[ "$PERF" = 1 ] && export DOTNET_PerfMapEnabled=1 DOTNET_EnableWriteXorExecute=0
O=900
PEERS=127.0.0.1:$((24101+O)),127.0.0.1:$((24102+O)),127.0.0.1:$((24103+O))
PIDS=""
for i in 1 2 3; do
  setsid dotnet $DLL node --id n$i --grpc 127.0.0.1:$((2410$i+O)) --http 127.0.0.1:$((2420$i+O)) --client 127.0.0.1:$((2430$i+O)) \
    --data $W/data/n$i --peers $PEERS --election-timeout-ms 150-300 --heartbeat-ms 50 ${NODE_ARGS:-} >>$W/logs/n$i.log 2>&1 &
  PIDS="$PIDS $!"
done
for i in $(seq 120); do curl -sf http://127.0.0.1:$((24201+O))/status | grep -q 'leader=n' && break; sleep 0.5; done
T=http://127.0.0.1:$((24201+O)),http://127.0.0.1:$((24202+O)),http://127.0.0.1:$((24203+O))
dotnet $DLL load --target raft --targets $T --proposers ${N:-256} --seconds ${WARM:-5} >/dev/null 2>&1
if [ "${MODE:-load}" = read ]; then WHO="--readers ${N:-1}"; else WHO="--proposers ${N:-256}"; fi
dotnet $DLL ${MODE:-load} --target raft --targets $T $WHO --seconds ${SECS:-20} ${ARGS:-} > $W/load.txt 2>&1 &
B=$!
sleep 6
if [ "$PERF" = 1 ]; then perf record -a -g -F 499 -o $W/perf.data -- sleep 8 >/dev/null 2>&1; fi
wait $B
grep RESULT $W/load.txt
for i in 1 2 3; do curl -s http://127.0.0.1:$((2420$i+O))/status; echo; done
kill $PIDS; sleep 2; kill -9 $PIDS 2>/dev/null
echo "WORK=$W PIDS=$PIDS"
