#!/usr/bin/env bash
# KV PUT throughput and latency: a 3-server Legate cluster against a 3-member etcd cluster, both
# on loopback, both fsyncing, measured by the same load tool (legate-load). See README.md here.
#
#   tests/bench/kv-vs-etcd.sh [--duration SECS] [--clients "1 64"] [--value-size BYTES]
#                             [--only legate|etcd] [--compaction SECS] [--keep]
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: tests/bench/kv-vs-etcd.sh [options]

Compares KV PUT throughput and p50/p99 latency of a 3-server Legate cluster with a 3-member
etcd cluster (Debian's etcd-server, installed when missing), on 127.0.0.1, with legate-load.

  --duration SECS     length of each measured run (default 10)
  --clients "N M"     client counts to measure, space separated (default "1 64")
  --value-size BYTES  value size (default 256)
  --only legate|etcd  measure only one side (the table then has no ratio)
  --compaction SECS   instead: one long write run against Legate only (--keys 1000, the
                      largest --clients count), printing each data dir's size (du -sb)
                      before, at each quarter of the run (the middle among them) and after
  --keep              leave every process running and keep the work directory at exit
                      (then clusters are not stopped between phases either)
  -h, --help          this text

Results (one JSON line per run) go to target/bench/; the script prints the path.
EOF
}

DURATION=10
CLIENTS="1 64"
VALUE_SIZE=256
ONLY=""
COMPACTION=""
KEEP=0
while [ $# -gt 0 ]; do
  case "$1" in
    --duration) DURATION="${2:?--duration needs SECS}"; shift 2 ;;
    --clients) CLIENTS="${2:?--clients needs a list}"; shift 2 ;;
    --value-size) VALUE_SIZE="${2:?--value-size needs BYTES}"; shift 2 ;;
    --only) ONLY="${2:?--only needs legate or etcd}"; shift 2 ;;
    --compaction) COMPACTION="${2:?--compaction needs SECS}"; shift 2 ;;
    --keep) KEEP=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "kv-vs-etcd: unknown argument $1 (try --help)" >&2; exit 2 ;;
  esac
done

is_count() { [[ "$1" =~ ^[1-9][0-9]*$ ]]; }
is_count "$DURATION" || { echo "kv-vs-etcd: --duration must be a whole number of seconds" >&2; exit 2; }
is_count "$VALUE_SIZE" || { echo "kv-vs-etcd: --value-size must be a positive whole number" >&2; exit 2; }
for c in $CLIENTS; do is_count "$c" || { echo "kv-vs-etcd: bad client count $c" >&2; exit 2; }; done
[ -n "${CLIENTS// /}" ] || { echo "kv-vs-etcd: --clients is empty" >&2; exit 2; }
case "$ONLY" in ""|legate|etcd) ;; *) echo "kv-vs-etcd: --only takes legate or etcd" >&2; exit 2 ;; esac
if [ -n "$COMPACTION" ]; then
  is_count "$COMPACTION" || { echo "kv-vs-etcd: --compaction must be a whole number of seconds" >&2; exit 2; }
  ONLY=legate
fi
want() { [ -z "$ONLY" ] || [ "$ONLY" = "$1" ]; }

log() { echo "kv-vs-etcd: $*" >&2; }
die() { log "$*"; exit 1; }

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
command -v python3 >/dev/null || die "python3 is required (free ports, health checks, the table)"
command -v cargo >/dev/null || die "cargo is required"

# --- etcd: Debian's package, installed when the binary is missing -------------------------------
if want etcd && ! command -v etcd >/dev/null; then
  SUDO=""
  if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null || die "etcd is missing and installing it needs root or sudo"
    SUDO=sudo
  fi
  log "installing etcd-server and etcd-client with apt"
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq etcd-server etcd-client >/dev/null
  command -v etcd >/dev/null || die "apt installed etcd-server but no etcd binary is on PATH"
fi

# --- build ---------------------------------------------------------------------------------------
log "building legate and legate-load (release)"
(cd "$ROOT" && cargo build --release -p agent -p legate-tests --bins)
TARGET_DIR="$(cd "$ROOT" && cargo metadata --format-version 1 --no-deps |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')"
LEGATE="$TARGET_DIR/release/legate"
LOAD="$TARGET_DIR/release/legate-load"
[ -x "$LEGATE" ] && [ -x "$LOAD" ] || die "build did not produce $LEGATE and $LOAD"

# --- work directory, results file, cleanup -------------------------------------------------------
WORK="$(mktemp -d "${TMPDIR:-/tmp}/legate-bench.XXXXXX")"
mkdir -p "$TARGET_DIR/bench"
RESULTS="$TARGET_DIR/bench/kv-vs-etcd-$(date +%Y%m%d-%H%M%S).jsonl"
: >"$RESULTS"
PIDS=()

stop_pids() {
  local pid
  for pid in "$@"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "$@"; do
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
}

cleanup() {
  local status=$?
  trap - EXIT INT TERM
  if [ "$KEEP" = 1 ]; then
    log "--keep: processes left running: ${PIDS[*]:-none}; work directory: $WORK"
    [ "${#PIDS[@]}" -eq 0 ] || log "stop them with: kill ${PIDS[*]}"
  else
    [ "${#PIDS[@]}" -eq 0 ] || stop_pids "${PIDS[@]}"
    rm -rf "$WORK"
  fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Free loopback ports, all held open at once while picking so none repeats.
free_ports() {
  python3 - "$1" <<'EOF'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
}

# Prints the body of a GET on stdout; fails on a transport error or a non-2xx status.
http_get() {
  python3 - "$1" <<'EOF'
import sys, urllib.request
try:
    with urllib.request.urlopen(sys.argv[1], timeout=2) as r:
        sys.stdout.write(r.read().decode("utf-8", "replace"))
except Exception:
    sys.exit(1)
EOF
}

# wait_until SECS DESCRIPTION COMMAND...: polls COMMAND every 0.25 s until it succeeds.
wait_until() {
  local timeout_s="$1" what="$2"
  shift 2
  local deadline=$((SECONDS + timeout_s))
  until "$@"; do
    [ "$SECONDS" -lt "$deadline" ] || { log "timed out after ${timeout_s}s waiting for $what"; return 1; }
    sleep 0.25
  done
}

show_logs() {
  local f
  for f in "$@"; do
    [ -f "$f" ] || continue
    echo "---- last lines of $f" >&2
    tail -n 30 "$f" >&2
  done
}

# --- etcd cluster --------------------------------------------------------------------------------
ETCD_PIDS=()
ETCD_URLS=""

etcd_healthy() { http_get "http://127.0.0.1:$1/health" | grep -q '"health":"true"'; }

start_etcd() {
  local ports client peer cluster="" i
  read -r -a ports <<<"$(free_ports 6)"
  for i in 1 2 3; do
    peer=${ports[$((i + 2))]}
    cluster+="${cluster:+,}e$i=http://127.0.0.1:$peer"
  done
  for i in 1 2 3; do
    client=${ports[$((i - 1))]}
    peer=${ports[$((i + 2))]}
    # Default settings otherwise: the WAL is fsynced before a write is acknowledged.
    etcd --name "e$i" --data-dir "$WORK/e$i" \
      --listen-client-urls "http://127.0.0.1:$client" --advertise-client-urls "http://127.0.0.1:$client" \
      --listen-peer-urls "http://127.0.0.1:$peer" --initial-advertise-peer-urls "http://127.0.0.1:$peer" \
      --initial-cluster "$cluster" --initial-cluster-state new --initial-cluster-token legate-bench \
      >"$WORK/e$i.log" 2>&1 &
    ETCD_PIDS+=($!)
    PIDS+=($!)
    ETCD_URLS+="${ETCD_URLS:+,}http://127.0.0.1:$client"
  done
  for i in 1 2 3; do
    client=${ports[$((i - 1))]}
    wait_until 60 "etcd member e$i (http://127.0.0.1:$client/health)" etcd_healthy "$client" ||
      { show_logs "$WORK"/e?.log; die "etcd did not become healthy"; }
  done
  log "etcd $(etcd --version | head -n1 | awk '{print $NF}') cluster healthy: $ETCD_URLS (data in $WORK/e1..e3)"
}

# --- Legate cluster ------------------------------------------------------------------------------
LEGATE_PIDS=()
LEGATE_URLS=""

has_leader() { http_get "http://127.0.0.1:$1/v1/status/leader" | grep -q '^"[^"]\+"$'; }

start_legate() {
  local ports http=() rpc=() i a b
  read -r -a ports <<<"$(free_ports 6)"
  http=("${ports[@]:0:3}")
  rpc=("${ports[@]:3:3}")
  for i in 0 1 2; do
    a=$(((i + 1) % 3))
    b=$(((i + 2) % 3))
    mkdir -p "$WORK/s$((i + 1))"
    "$LEGATE" agent -server -bootstrap-expect 3 -data-dir "$WORK/s$((i + 1))" -node "s$((i + 1))" \
      -bind 127.0.0.1 -http-port "${http[$i]}" -server-port "${rpc[$i]}" -dns-port -1 \
      -raft-multiplier 1 -retry-join "127.0.0.1:${rpc[$a]}" -retry-join "127.0.0.1:${rpc[$b]}" \
      >"$WORK/s$((i + 1)).log" 2>&1 &
    LEGATE_PIDS+=($!)
    PIDS+=($!)
    LEGATE_URLS+="${LEGATE_URLS:+,}http://127.0.0.1:${http[$i]}"
  done
  for i in 0 1 2; do
    wait_until 60 "a leader at server s$((i + 1)) (http://127.0.0.1:${http[$i]}/v1/status/leader)" \
      has_leader "${http[$i]}" || { show_logs "$WORK"/s?.log; die "the Legate cluster did not elect a leader"; }
  done
  log "Legate cluster has a leader: $LEGATE_URLS (data in $WORK/s1..s3)"
}

stop_cluster() {
  [ "$KEEP" = 1 ] && return 0
  stop_pids "$@"
  local kept=() pid gone
  for pid in "${PIDS[@]}"; do
    gone=0
    for p in "$@"; do [ "$pid" = "$p" ] && gone=1; done
    [ "$gone" = 1 ] || kept+=("$pid")
  done
  PIDS=("${kept[@]}")
}

# check_alive NAME LOG PID NAME LOG PID ...: after a run, every server must still be running. A dead
# one's log is copied next to the results (the work directory is removed at exit) and shown.
check_alive() {
  local dead=0
  while [ $# -ge 3 ]; do
    if ! kill -0 "$3" 2>/dev/null; then
      dead=1
      cp "$2" "${RESULTS%.jsonl}-$1.log"
      log "server $1 (pid $3) has exited; its log is kept in ${RESULTS%.jsonl}-$1.log"
      show_logs "$2"
    fi
    shift 3
  done
  [ "$dead" = 0 ]
}

# --- load ----------------------------------------------------------------------------------------
# run_load TARGET URLS CLIENTS [legate-load args...]: one run, its JSON line appended to RESULTS.
run_load() {
  local target="$1" urls="$2" clients="$3" line
  shift 3
  line="$("$LOAD" --target "$target" --urls "$urls" --clients "$clients" --value-size "$VALUE_SIZE" "$@")" ||
    log "legate-load against $target with $clients clients: every request failed"
  [ -z "$line" ] || echo "$line" >>"$RESULTS"
}

data_sizes() {
  local label="$1" i
  for i in 1 2 3; do
    printf '%-9s s%d %12d bytes\n' "$label" "$i" "$(du -sb "$WORK/s$i" | cut -f1)"
  done
}

if [ -n "$COMPACTION" ]; then
  clients=$(printf '%s\n' $CLIENTS | sort -n | tail -n1)
  start_legate
  log "compaction run: ${COMPACTION}s, $clients clients, 1000 keys per client, ${VALUE_SIZE} B values"
  echo "data dir sizes (du -sb):"
  data_sizes before
  run_load legate "$LEGATE_URLS" "$clients" --duration "$COMPACTION" --keys 1000 &
  load_pid=$!
  PIDS+=("$load_pid")
  # Quarter marks (t=50% is the middle), then after the run ends.
  for q in 1 2 3; do
    sleep_s=$(((COMPACTION * q / 4) - (COMPACTION * (q - 1) / 4)))
    [ "$sleep_s" -eq 0 ] || sleep "$sleep_s"
    data_sizes "t=$((COMPACTION * q / 4))s"
  done
  wait "$load_pid" || true
  data_sizes after
  echo "files in s1 at the end (bytes, path), at most 20:"
  find "$WORK/s1" -type f -printf '%12s %P\n' | sort -k2 | head -n 20
  check_alive s1 "$WORK/s1.log" "${LEGATE_PIDS[0]}" s2 "$WORK/s2.log" "${LEGATE_PIDS[1]}" \
    s3 "$WORK/s3.log" "${LEGATE_PIDS[2]}" || log "a Legate server died during the compaction run"
  python3 - "$RESULTS" "$VALUE_SIZE" "$clients" <<'EOF'
import json, sys
path, value_size, clients = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
for line in open(path):
    r = json.loads(line)
    written = (r["requests"] - r["errors"]) * value_size
    live = clients * 1000 * value_size
    print(f"{r['requests'] - r['errors']} successful PUTs, {written} value bytes written in total; "
          f"live data is at most {live} value bytes ({clients} clients x 1000 keys x {value_size} B); "
          f"{r['ops_per_sec']} ops/s, p50 {r['p50_ms']} ms, p99 {r['p99_ms']} ms, errors {r['errors']}")
EOF
  log "results: $RESULTS"
  exit 0
fi

if want legate; then
  start_legate
  for c in $CLIENTS; do
    run_load legate "$LEGATE_URLS" "$c" --duration "$DURATION"
    check_alive s1 "$WORK/s1.log" "${LEGATE_PIDS[0]}" s2 "$WORK/s2.log" "${LEGATE_PIDS[1]}" \
      s3 "$WORK/s3.log" "${LEGATE_PIDS[2]}" || { log "a Legate server died; no further Legate runs"; break; }
  done
  stop_cluster "${LEGATE_PIDS[@]}"
fi
if want etcd; then
  start_etcd
  for c in $CLIENTS; do
    run_load etcd "$ETCD_URLS" "$c" --duration "$DURATION"
    check_alive e1 "$WORK/e1.log" "${ETCD_PIDS[0]}" e2 "$WORK/e2.log" "${ETCD_PIDS[1]}" \
      e3 "$WORK/e3.log" "${ETCD_PIDS[2]}" || { log "an etcd member died; no further etcd runs"; break; }
  done
  stop_cluster "${ETCD_PIDS[@]}"
fi

python3 - "$RESULTS" "$DURATION" "$VALUE_SIZE" <<'EOF'
import json, sys
path, duration, value_size = sys.argv[1], sys.argv[2], sys.argv[3]
runs = {}
for line in open(path):
    r = json.loads(line)
    runs[(r["target"], r["clients"])] = r
clients = sorted({c for _, c in runs})

def num(r, field, fmt):
    v = r.get(field) if r else None
    return "-" if v is None else format(v, fmt)

print(f"\nKV PUT, {value_size} B values, {duration} s per run, 3 servers each on 127.0.0.1, both fsyncing")
head = ["clients", "legate ops/s", "etcd ops/s", "legate/etcd",
        "legate p50 ms", "legate p99 ms", "etcd p50 ms", "etcd p99 ms", "errors l/e"]
rows = []
flagged = False
for c in clients:
    l, e = runs.get(("legate", c)), runs.get(("etcd", c))
    ratio = "-"
    if l and e and e["ops_per_sec"] > 0:
        ratio = f"{l['ops_per_sec'] / e['ops_per_sec']:.2f}"
        if l["errors"] or e["errors"]:
            ratio += "!"
            flagged = True
    rows.append([str(c), num(l, "ops_per_sec", ".0f"), num(e, "ops_per_sec", ".0f"), ratio,
                 num(l, "p50_ms", ".2f"), num(l, "p99_ms", ".2f"),
                 num(e, "p50_ms", ".2f"), num(e, "p99_ms", ".2f"),
                 f"{num(l, 'errors', 'd')}/{num(e, 'errors', 'd')}"])
widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(head)]
for r in [head] + rows:
    print("  ".join(cell.rjust(w) for cell, w in zip(r, widths)))
if flagged:
    print("! a run had errors: its ops/s count only the successful PUTs, so that ratio is not a fair one")
EOF
log "results: $RESULTS"
