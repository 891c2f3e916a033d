#!/usr/bin/env bash
# The volume server's end-to-end benchmark (issue 3, "Performance"; results in docs/benchmarks.md):
#   1. durable Prepare+Commit of 1 KiB values at 64 writers: batched (PrepareBatch + Commit(list)) and one value per call
#   2. GET /blob of a cached 1 KiB value under wrk -t2 -c64, against a trivial Kestrel handler (serve-peer) in the same run
#   3. GET /blob of a 256 MiB value from the page cache (HttpClient reader and curl); beside it, for the analysis, the
#      same blob file sent by serve-peer with HttpResponse.SendFileAsync (the volume's path before 89ee516) and with 1 MiB reads (what it does now, CRC aside)
# Everything runs on 127.0.0.1; the script starts its own processes, records their PIDs, stops only those, and
# deletes its temporary directory. Before each measurement it waits (up to QUIET_WAIT s) for the 1-minute load
# average to fall below MAX_LOAD, and it reports the load it measured at.
#
# Usage: bench/scripts/volume-bench.sh
# Environment (defaults): RUNS=5 WRITE_SECONDS=10 WRITE_WARMUP=10 WRITERS=64 INFLIGHT=1 WRITE_MODES="batched single stream"
#   WRK_SECONDS=10 WRK_CONNECTIONS=64 WRK_THREADS=2 LARGE_SIZE=268435456 LARGE_READS=3 MAX_LOAD=1.5 QUIET_WAIT=120
#   PARTS="write get large" SKIP_BUILD=0 WORK_DIR=/tmp (where the volume's data goes)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BIN=$ROOT/bench/MiniKV.VolumeBench/bin/Release/net10.0/MiniKV.VolumeBench
RUNS=${RUNS:-5}
WRITE_SECONDS=${WRITE_SECONDS:-10}
WRITE_WARMUP=${WRITE_WARMUP:-10}
WRITERS=${WRITERS:-64}
INFLIGHT=${INFLIGHT:-1}
WRITE_MODES=${WRITE_MODES:-batched single stream}
WRK_SECONDS=${WRK_SECONDS:-10}
WRK_CONNECTIONS=${WRK_CONNECTIONS:-64}
WRK_THREADS=${WRK_THREADS:-2}
LARGE_SIZE=${LARGE_SIZE:-268435456}
LARGE_READS=${LARGE_READS:-3}
MAX_LOAD=${MAX_LOAD:-1.5}
QUIET_WAIT=${QUIET_WAIT:-120}
PARTS=${PARTS:-write get large}
SKIP_BUILD=${SKIP_BUILD:-0}
WORK=$(mktemp -d "${WORK_DIR:-/tmp}/minikv-volume-bench.XXXXXX")
PIDS=()

log() { echo "# $*" >&2; }

stop_pid() { # SIGTERM one of our processes, wait up to 10 s, then SIGKILL it
  local pid=$1 i
  kill -TERM "$pid" 2>/dev/null || return 0
  for i in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  local kept=()
  for p in "${PIDS[@]}"; do [[ $p == "$pid" ]] || kept+=("$p"); done
  PIDS=("${kept[@]+"${kept[@]}"}")
}

cleanup() {
  for pid in "${PIDS[@]+"${PIDS[@]}"}"; do stop_pid "$pid"; done
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

median() { sort -g | awk '{v[NR]=$1} END {if (NR == 0) print "n/a"; else if (NR % 2) print v[(NR+1)/2]; else printf "%.6g\n", (v[NR/2]+v[NR/2+1])/2}'; }
field() { tr ' ' '\n' | sed -n "s/^$1=//p" | head -1; } # field NAME < "a=1 b=2"
min_max() { sort -g | awk 'NR==1{lo=$1} {hi=$1} END {if (NR) printf "%s–%s", lo, hi; else print "n/a"}'; }

LOAD=0
LOADS=()
wait_quiet() { # until the 1-minute load average is below MAX_LOAD, at most QUIET_WAIT s; sets LOAD
  local deadline=$((SECONDS + QUIET_WAIT))
  while true; do
    LOAD=$(cut -d' ' -f1 /proc/loadavg)
    awk -v l="$LOAD" -v m="$MAX_LOAD" 'BEGIN { exit !(l < m) }' && break
    if ((SECONDS >= deadline)); then log "load $LOAD still >= $MAX_LOAD after ${QUIET_WAIT}s; measuring anyway"; break; fi
    sleep 5
  done
  LOADS+=("$LOAD")
}

START_PID=0
START_HTTP=""
START_GRPC=""
start_server() { # start_server NAME MODE ARGS... : starts a server of ours on loopback port 0, waits for its endpoints
  local name=$1; shift
  local endpoints=$WORK/$name.endpoints
  rm -f "$endpoints"
  "$BIN" "$@" --endpoints "$endpoints" >"$WORK/$name.log" 2>&1 &
  START_PID=$!
  PIDS+=("$START_PID")
  local i
  for i in $(seq 300); do
    [[ -f $endpoints ]] && break
    kill -0 "$START_PID" 2>/dev/null || { cat "$WORK/$name.log" >&2; echo "$name exited" >&2; exit 1; }
    sleep 0.1
  done
  [[ -f $endpoints ]] || { echo "$name did not start in 30 s" >&2; exit 1; }
  START_HTTP=$(sed -n 's/^http=//p' "$endpoints")
  START_GRPC=$(sed -n 's/^grpc=//p' "$endpoints")
}

if ! command -v wrk >/dev/null; then
  log "installing wrk"
  if [[ $(id -u) -eq 0 ]]; then apt-get update -qq && apt-get install -y -qq wrk >/dev/null
  else sudo apt-get update -qq && sudo apt-get install -y -qq wrk >/dev/null; fi
fi
if [[ $SKIP_BUILD != 1 ]]; then
  log "building bench/MiniKV.VolumeBench (Release)"
  dotnet build "$ROOT/bench/MiniKV.VolumeBench/MiniKV.VolumeBench.csproj" -c Release -v quiet -nologo >"$WORK/build.log" 2>&1 || { cat "$WORK/build.log" >&2; exit 1; }
fi

echo "## minikv volume benchmark — $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$ROOT" diff --quiet -- src 2>/dev/null || echo ' + uncommitted src changes')"
echo
echo "runs=$RUNS writers=$WRITERS inflight=$INFLIGHT write_seconds=$WRITE_SECONDS wrk='-t$WRK_THREADS -c$WRK_CONNECTIONS -d${WRK_SECONDS}s' large_size=$LARGE_SIZE max_load=$MAX_LOAD"
echo

ROWS=()

# ---------------------------------------------------------------- 1. durable Prepare + Commit
if [[ " $PARTS " == *" write "* ]]; then
  declare -A WRITE_LINES=()
  for run in $(seq "$RUNS"); do
    for mode in $WRITE_MODES; do
      rm -rf "$WORK/write-data"
      start_server volume-write serve-volume --data "$WORK/write-data"
      wait_quiet
      line=$(timeout $((WRITE_SECONDS + WRITE_WARMUP + 60)) "$BIN" prepare-load --grpc "http://$START_GRPC" --mode "$mode" \
        --writers "$WRITERS" --inflight "$INFLIGHT" --seconds "$WRITE_SECONDS" --warmup "$WRITE_WARMUP" --server-pid "$START_PID" --metrics-url "http://$START_HTTP/metrics")
      echo "write run=$run load=$LOAD $line"
      WRITE_LINES[$mode]+="$line"$'\n'
      stop_pid "$START_PID"
    done
  done
  rm -rf "$WORK/write-data"
  for mode in $WRITE_MODES; do
    lines=${WRITE_LINES[$mode]}
    m() { printf '%s' "$lines" | while read -r l; do [[ -n $l ]] && field "$1" <<<"$l"; done | median; }
    case $mode in
      batched) what="Prepare+Commit, batched (PrepareBatch + Commit(list), ≤ $INFLIGHT batches in flight)" ;;
      single) what="Prepare+Commit, one value per call (PrepareBatch of 1 + Commit of 1)" ;;
      stream) what="Prepare+Commit, one value per call (streamed Prepare + Commit of 1)" ;;
    esac
    target=""; calls=""
    if [[ $mode == batched ]]; then
      target="≥ 20,000/s"
      calls="; call ms seen by the client: PrepareBatch $(m prepare_call_ms), Commit $(m commit_call_ms)"
    fi
    ROWS+=("| $what, $WRITERS writers, 1 KiB, durability always | $(m ops_per_s) values/s | $target | p50 $(m p50_ms) ms, p99 $(m p99_ms) ms, p99.9 $(m p999_ms) ms; $(m values_per_prepare_call) values/PrepareBatch, $(m fsyncs_per_call) fsyncs/call, $(m values_per_fsync) values/fsync, $(m fsyncs_per_s) fsyncs/s$calls; volume handler ms: prepare $(m server_prepare_ms), commit $(m server_commit_ms); CPU µs/value client $(m client_cpu_us_per_op), server $(m server_cpu_us_per_op) |")
  done
fi

# ---------------------------------------------------------------- 2. GET /blob of a cached 1 KiB value vs a trivial handler
to_ms() { awk '{ v = $1 + 0; if ($1 ~ /us$/) v /= 1000; else if ($1 ~ /[0-9]s$/) v *= 1000; else if ($1 ~ /m$/) v *= 60000; printf "%.3f\n", v }'; }
run_wrk() { # run_wrk URL -> "req/s p50_ms p99_ms"
  local out
  out=$(timeout $((WRK_SECONDS + 30)) wrk -t"$WRK_THREADS" -c"$WRK_CONNECTIONS" -d"${WRK_SECONDS}s" --timeout 5s --latency "$1")
  if grep -q 'Non-2xx\|Socket errors' <<<"$out"; then echo "wrk saw errors:" >&2; echo "$out" >&2; return 1; fi
  printf '%s %s %s\n' "$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")" \
    "$(awk '$1 == "50%" {print $2}' <<<"$out" | to_ms)" "$(awk '$1 == "99%" {print $2}' <<<"$out" | to_ms)"
}

VOLUME_PID=0
if [[ " $PARTS " == *" get "* || " $PARTS " == *" large "* ]]; then
  start_server volume serve-volume --data "$WORK/read-data"
  VOLUME_PID=$START_PID; VOLUME_HTTP=$START_HTTP; VOLUME_GRPC=$START_GRPC
fi

if [[ " $PARTS " == *" get "* ]]; then
  start_server peer serve-peer --size 1024
  PEER_PID=$START_PID; PEER_HTTP=$START_HTTP
  "$BIN" seed --grpc "http://$VOLUME_GRPC" --key bench/small-1k --size 1024 >/dev/null
  VOLUME_URL="http://$VOLUME_HTTP/blob/bench/small-1k"
  PEER_URL="http://$PEER_HTTP/blob/bench/small-1k"
  for url in "$VOLUME_URL" "$PEER_URL"; do
    [[ $(curl -s -o /dev/null -w '%{http_code} %{size_download}' "$url") == "200 1024" ]] || { echo "GET $url is not 200 with 1024 bytes" >&2; exit 1; }
    timeout 30 wrk -t"$WRK_THREADS" -c"$WRK_CONNECTIONS" -d3s "$url" >/dev/null # warm-up: JIT tiers, connections, cache
  done
  VOL_RPS=(); PEER_RPS=(); RATIOS=(); VOL_P50=(); VOL_P99=(); PEER_P50=(); PEER_P99=()
  for run in $(seq "$RUNS"); do
    order="peer volume"; ((run % 2 == 0)) && order="volume peer" # alternate, so drift in the box's load hits both
    for who in $order; do
      wait_quiet
      if [[ $who == peer ]]; then res=$(run_wrk "$PEER_URL"); read -r rps p50 p99 <<<"$res"; PEER_RPS+=("$rps"); PEER_P50+=("$p50"); PEER_P99+=("$p99")
      else res=$(run_wrk "$VOLUME_URL"); read -r rps p50 p99 <<<"$res"; VOL_RPS+=("$rps"); VOL_P50+=("$p50"); VOL_P99+=("$p99"); fi
      echo "get run=$run load=$LOAD server=$who req_per_s=$rps p50_ms=$p50 p99_ms=$p99"
    done
    RATIOS+=("$(awk -v v="${VOL_RPS[-1]}" -v p="${PEER_RPS[-1]}" 'BEGIN { printf "%.3f", v / p }')")
    echo "get run=$run ratio=${RATIOS[-1]}"
  done
  med() { printf '%s\n' "$@" | median; }
  ROWS+=("| GET /blob/{key}, cached 1 KiB value, wrk -t$WRK_THREADS -c$WRK_CONNECTIONS | $(med "${VOL_RPS[@]}") req/s | | p50 $(med "${VOL_P50[@]}") ms, p99 $(med "${VOL_P99[@]}") ms |")
  ROWS+=("| trivial Kestrel handler, 1 KiB from memory (serve-peer), same run | $(med "${PEER_RPS[@]}") req/s | | p50 $(med "${PEER_P50[@]}") ms, p99 $(med "${PEER_P99[@]}") ms |")
  ROWS+=("| **ratio volume / trivial handler** (median of per-run ratios; runs: ${RATIOS[*]}) | **$(med "${RATIOS[@]}")** | ≥ 0.6 | |")
  stop_pid "$PEER_PID"
fi

# ---------------------------------------------------------------- 3. a 256 MiB value over HTTP, from the page cache
if [[ " $PARTS " == *" large "* ]]; then
  seeded=$("$BIN" seed --grpc "http://$VOLUME_GRPC" --key bench/large --size "$LARGE_SIZE")
  echo "large seeded: $seeded"
  LARGE_URL="http://$VOLUME_HTTP/blob/bench/large"
  curl -s -o /dev/null "$LARGE_URL" # first read: into the page cache
  # The value's own blob file (values over 64 KiB get one), served by serve-peer two ways for comparison.
  BLOB_FILE=$(ls -S "$WORK/read-data"/*.blob | head -1)
  start_server file-peer serve-peer --file "$BLOB_FILE"
  FILE_PEER_PID=$START_PID; FILE_PEER_HTTP=$START_HTTP
  for route in sendfile "copy?chunk=1048576"; do curl -s -o /dev/null "http://$FILE_PEER_HTTP/file/$route"; done # warm-up (JIT)
  HC=(); CURL=(); PEER_SENDFILE=(); PEER_COPY=()
  gbps() { awk -v b="$1" 'BEGIN { printf "%.3f", b / 1e9 }'; }
  for run in $(seq "$RUNS"); do
    wait_quiet
    out=$(timeout 300 "$BIN" read-large --url "$LARGE_URL" --reads "$LARGE_READS")
    HC+=("$(field median_gb_per_s <<<"$(tail -1 <<<"$out")")")
    wait_quiet
    CURL+=("$(gbps "$(timeout 120 curl -s -o /dev/null -w '%{speed_download}' "$LARGE_URL")")")
    PEER_SENDFILE+=("$(gbps "$(timeout 120 curl -s -o /dev/null -w '%{speed_download}' "http://$FILE_PEER_HTTP/file/sendfile")")")
    PEER_COPY+=("$(gbps "$(timeout 120 curl -s -o /dev/null -w '%{speed_download}' "http://$FILE_PEER_HTTP/file/copy?chunk=1048576")")")
    echo "large run=$run load=$LOAD httpclient_gb_per_s=${HC[-1]} curl_gb_per_s=${CURL[-1]} peer_sendfile_gb_per_s=${PEER_SENDFILE[-1]} peer_copy_1mib_gb_per_s=${PEER_COPY[-1]}"
  done
  stop_pid "$FILE_PEER_PID"
  med() { printf '%s\n' "$@" | median; }
  ROWS+=("| GET /blob of a $((LARGE_SIZE >> 20)) MiB value from the page cache, HttpClient (median of $LARGE_READS reads per run) | $(med "${HC[@]}") GB/s | ≥ 1 GB/s | runs: ${HC[*]} |")
  ROWS+=("| the same with curl -o /dev/null | $(med "${CURL[@]}") GB/s | ≥ 1 GB/s | runs: ${CURL[*]} |")
  ROWS+=("| analysis: the same blob file, serve-peer, HttpResponse.SendFileAsync (the volume's old path), curl | $(med "${PEER_SENDFILE[@]}") GB/s | | runs: ${PEER_SENDFILE[*]} |")
  ROWS+=("| analysis: the same blob file, serve-peer, 1 MiB RandomAccess reads into the response pipe, curl | $(med "${PEER_COPY[@]}") GB/s | | runs: ${PEER_COPY[*]} |")
fi

if ((VOLUME_PID > 0)); then stop_pid "$VOLUME_PID"; fi

echo
echo "| what | median of $RUNS runs | target | detail (medians) |"
echo "| --- | --- | --- | --- |"
printf '%s\n' "${ROWS[@]}"
echo
echo "1-minute load average before the measurements: $(printf '%s\n' "${LOADS[@]+"${LOADS[@]}"}" | min_max) (waited for < $MAX_LOAD, at most ${QUIET_WAIT}s each)"
