#!/usr/bin/env bash
# DNS queries/s and latency: `web.service.consul A` with 10 healthy instances, answered by
# `legate agent -dev` from its catalog and by Knot DNS from a static zone holding the same 10
# A records, both on loopback, measured by the same dnsperf settings. See README.md here.
#
#   tests/bench/dns-vs-static.sh [--duration SECS] [--clients N] [--outstanding N] [--threads N]
#                                [--edns] [--tcp] [--only legate|static] [--build] [--keep]
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: tests/bench/dns-vs-static.sh [options]

Compares DNS queries/s and latency of Legate's DNS interface (legate agent -dev, 10 instances
of service "web" registered through the catalog API, all passing) with Knot DNS serving the
same 10 A records from a static zone "consul.", both on 127.0.0.1, with dnsperf. The query is
"web.service.consul A" for both; the dnsperf settings are the same for both.

  --duration SECS     length of each measured run, dnsperf -l (default 10)
  --clients N         dnsperf -c: client sockets (default 4)
  --outstanding N     dnsperf -q: queries in flight at most (default 100)
  --threads N         dnsperf -T: client threads (default 1)
  --edns              send EDNS0 (dnsperf -e); by default queries carry no OPT record
  --tcp               query over TCP (dnsperf -m tcp); the default is UDP
  --only legate|static
                      measure only one side (the table then has no ratio)
  --build             rebuild target/release/legate even when it is newer than its sources
  --keep              leave the servers running and keep the work directory at exit
  -h, --help          this text

Missing tools (dig, dnsperf, knotd, curl) are installed with apt-get, as root or through sudo.
Results (one JSON line per side) go to target/bench/; the script prints the path.
EOF
}

DURATION=10
CLIENTS=4
OUTSTANDING=100
THREADS=1
EDNS=0
MODE=udp
ONLY=""
BUILD=0
KEEP=0
while [ $# -gt 0 ]; do
  case "$1" in
    --duration) DURATION="${2:?--duration needs SECS}"; shift 2 ;;
    --clients) CLIENTS="${2:?--clients needs N}"; shift 2 ;;
    --outstanding) OUTSTANDING="${2:?--outstanding needs N}"; shift 2 ;;
    --threads) THREADS="${2:?--threads needs N}"; shift 2 ;;
    --edns) EDNS=1; shift ;;
    --tcp) MODE=tcp; shift ;;
    --only) ONLY="${2:?--only needs legate or static}"; shift 2 ;;
    --build) BUILD=1; shift ;;
    --keep) KEEP=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "dns-vs-static: unknown argument $1 (try --help)" >&2; exit 2 ;;
  esac
done

is_count() { [[ "$1" =~ ^[1-9][0-9]*$ ]]; }
is_count "$DURATION" || { echo "dns-vs-static: --duration must be a whole number of seconds" >&2; exit 2; }
is_count "$CLIENTS" || { echo "dns-vs-static: --clients must be a positive whole number" >&2; exit 2; }
is_count "$OUTSTANDING" || { echo "dns-vs-static: --outstanding must be a positive whole number" >&2; exit 2; }
is_count "$THREADS" || { echo "dns-vs-static: --threads must be a positive whole number" >&2; exit 2; }
[ "$THREADS" -le "$CLIENTS" ] || { echo "dns-vs-static: --threads cannot exceed --clients (dnsperf's rule)" >&2; exit 2; }
case "$ONLY" in ""|legate|static) ;; *) echo "dns-vs-static: --only takes legate or static" >&2; exit 2 ;; esac
want() { [ -z "$ONLY" ] || [ "$ONLY" = "$1" ]; }

log() { echo "dns-vs-static: $*" >&2; }
die() { log "$*"; exit 1; }

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
INSTANCES=10
QNAME=web.service.consul
command -v python3 >/dev/null || die "python3 is required (free ports, parsing dnsperf's output, the table)"
command -v cargo >/dev/null || die "cargo is required"

# --- tools: Debian packages, installed when missing ----------------------------------------------
# knotd lives in /usr/sbin, which a non-root PATH may lack.
find_tool() { command -v "$1" 2>/dev/null || { [ -x "/usr/sbin/$1" ] && echo "/usr/sbin/$1"; } || true; }
missing=()
[ -n "$(find_tool dig)" ] || missing+=(bind9-dnsutils)
[ -n "$(find_tool dnsperf)" ] || missing+=(dnsperf)
[ -n "$(find_tool curl)" ] || missing+=(curl)
if want static && [ -z "$(find_tool knotd)" ]; then missing+=(knot); fi
if [ "${#missing[@]}" -gt 0 ]; then
  SUDO=""
  if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null || die "missing Debian packages ${missing[*]}; installing them needs root or sudo"
    SUDO=sudo
  fi
  log "installing ${missing[*]} with apt"
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
DIG="$(find_tool dig)"
DNSPERF="$(find_tool dnsperf)"
CURL="$(find_tool curl)"
KNOTD="$(find_tool knotd)"
[ -n "$DIG" ] || die "no dig on PATH (Debian package bind9-dnsutils)"
[ -n "$DNSPERF" ] || die "no dnsperf on PATH (Debian package dnsperf)"
[ -n "$CURL" ] || die "no curl on PATH"
if want static; then [ -n "$KNOTD" ] || die "no knotd on PATH or in /usr/sbin (Debian package knot)"; fi

# --- build, only when the binary is missing or older than a file it was built from ---------------
TARGET_DIR="$(cd "$ROOT" && cargo metadata --format-version 1 --no-deps |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')"
LEGATE="$TARGET_DIR/release/legate"

# Prints why the binary needs a build, or nothing. The sources are those cargo lists in the
# binary's dep-info file (legate.d), plus the workspace's manifests and Cargo.lock.
stale_reason() {
  [ -x "$LEGATE" ] || { echo "$LEGATE is missing"; return; }
  [ -f "$LEGATE.d" ] || { echo "$LEGATE.d (cargo's list of its sources) is missing"; return; }
  python3 - "$LEGATE" "$ROOT" <<'EOF'
import glob, os, re, sys
binary, root = sys.argv[1], sys.argv[2]
built = os.path.getmtime(binary)
text = open(binary + ".d").read().replace("\\\n", " ")
files = []
for line in text.splitlines():
    if ":" not in line:
        continue
    deps = line.split(": ", 1)[1] if ": " in line else ""
    files += [f.replace("\\ ", " ") for f in re.split(r"(?<!\\)\s+", deps) if f]
files += [os.path.join(root, "Cargo.lock")] + glob.glob(os.path.join(root, "*", "Cargo.toml"))
files.append(os.path.join(root, "Cargo.toml"))
for f in files:
    try:
        if os.path.getmtime(f) > built:
            print(f"{os.path.relpath(f, root)} is newer than it")
            break
    except FileNotFoundError:
        print(f"{os.path.relpath(f, root)}, one of its sources, is gone")
        break
EOF
}

if want legate; then
  reason=""
  [ "$BUILD" = 1 ] && reason="--build"
  [ -n "$reason" ] || reason="$(stale_reason)"
  if [ -n "$reason" ]; then
    log "building legate (release; $reason)"
    (cd "$ROOT" && cargo build --release -p agent) || die "cargo build --release -p agent failed"
  fi
  [ -x "$LEGATE" ] || die "build did not produce $LEGATE"
fi

# --- work directory, results file, cleanup -------------------------------------------------------
WORK="$(mktemp -d "${TMPDIR:-/tmp}/legate-dns-bench.XXXXXX")"
mkdir -p "$TARGET_DIR/bench"
RESULTS="$TARGET_DIR/bench/dns-vs-static-$(date +%Y%m%d-%H%M%S).jsonl"
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

# Free loopback ports, free for both TCP and UDP, all held open at once so none repeats.
free_ports() {
  python3 - "$1" <<'EOF'
import socket, sys
held, ports = [], []
while len(ports) < int(sys.argv[1]):
    t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    t.bind(("127.0.0.1", 0))
    port = t.getsockname()[1]
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        u.bind(("127.0.0.1", port))
    except OSError:
        held.append(t)
        continue
    held += [t, u]
    ports.append(port)
print(" ".join(map(str, ports)))
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

EXPECTED="$(for n in $(seq "$INSTANCES"); do echo "10.0.0.$n"; done)"

# ask_dns PORT: one query for QNAME A with the benchmark's transport and EDNS setting, no retry
# over TCP on truncation (dnsperf does not retry either). Prints dig's output; fails when dig
# got no answer.
ask_dns() {
  local opts=(+time=2 +tries=1 +ignore +noall +comments +answer)
  if [ "$EDNS" = 1 ]; then opts+=(+edns=0); else opts+=(+noedns); fi
  [ "$MODE" = tcp ] && opts+=(+tcp)
  "$DIG" @127.0.0.1 -p "$1" "$QNAME" A "${opts[@]}" 2>&1
}

# answer_addresses: the sorted A addresses of QNAME in dig's output on stdin.
answer_addresses() { awk -v q="$QNAME." 'tolower($1) == q && $3 == "IN" && $4 == "A" {print $5}' | sort -t. -k4,4n; }

# check_answer NAME PORT LOG: the server must answer NOERROR with exactly the 10 addresses, not
# truncated. Waits up to 10 s for the full set (the catalog may lag the registrations).
check_answer() {
  local name="$1" port="$2" logf="$3" out got deadline=$((SECONDS + 10))
  while :; do
    if ! out="$(ask_dns "$port")"; then
      show_logs "$logf"
      die "$name answered no DNS: dig @127.0.0.1 -p $port $QNAME ($MODE, $([ "$EDNS" = 1 ] && echo EDNS || echo no EDNS)): $(echo "$out" | grep -v '^$' | tail -n 3 | tr '\n' ' ')"
    fi
    got="$(answer_addresses <<<"$out")"
    if [ "$got" = "$EXPECTED" ] && grep -q 'status: NOERROR' <<<"$out" && ! grep -q 'flags:[^;]* tc[ ;]' <<<"$out"; then
      log "$name answers $QNAME A with the $INSTANCES addresses (port $port, $MODE)"
      return 0
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      echo "$out" >&2
      die "$name's answer to $QNAME A is not the $INSTANCES addresses 10.0.0.1-$INSTANCES, NOERROR, untruncated (got $(echo $got | wc -w) addresses; dig output above)"
    fi
    sleep 0.5
  done
}

# --- Knot DNS with the static zone ---------------------------------------------------------------
KNOT_PID=""
KNOT_PORT=""

start_knot() {
  local n
  KNOT_PORT="$(free_ports 1)"
  mkdir -p "$WORK/knot"
  {
    echo "\$ORIGIN consul."
    echo "\$TTL 0"
    echo "@    0 IN SOA ns.consul. hostmaster.consul. 1 3600 600 86400 0"
    echo "@    0 IN NS  ns.consul."
    echo "ns   0 IN A   127.0.0.1"
    for n in $(seq "$INSTANCES"); do echo "$QNAME. 0 IN A 10.0.0.$n"; done
  } >"$WORK/knot/consul.zone"
  # No user: knotd runs as whoever runs this script. Worker counts are Knot's defaults (one UDP
  # and one TCP worker per CPU). Nothing is written back to the zone file; no journal.
  cat >"$WORK/knot/knot.conf" <<EOF
server:
    rundir: "$WORK/knot"
    listen: 127.0.0.1@$KNOT_PORT
log:
  - target: stderr
    any: info
database:
    storage: "$WORK/knot"
template:
  - id: default
    storage: "$WORK/knot"
    zonefile-sync: -1
    zonefile-load: whole
    journal-content: none
zone:
  - domain: consul.
    file: consul.zone
EOF
  "$KNOTD" -c "$WORK/knot/knot.conf" >"$WORK/knot.log" 2>&1 &
  KNOT_PID=$!
  PIDS+=("$KNOT_PID")
  knot_up() { kill -0 "$KNOT_PID" 2>/dev/null && ask_dns "$KNOT_PORT" | grep -q 'status: NOERROR'; }
  if ! wait_until 20 "knotd on 127.0.0.1:$KNOT_PORT" knot_up; then
    show_logs "$WORK/knot.log"
    kill -0 "$KNOT_PID" 2>/dev/null || die "knotd exited at start (log above)"
    die "knotd did not answer on 127.0.0.1:$KNOT_PORT (log above)"
  fi
  check_answer "Knot" "$KNOT_PORT" "$WORK/knot.log"
  log "$("$KNOTD" --version | head -n1) serves zone consul. on 127.0.0.1:$KNOT_PORT (config in $WORK/knot)"
}

# --- legate agent -dev with 10 instances of web --------------------------------------------------
LEGATE_PID=""
DNS_PORT=""

has_leader() { "$CURL" -sf --max-time 2 "http://127.0.0.1:$1/v1/status/leader" | grep -q '^"[^"]\+"$'; }

start_legate() {
  local ports http n body answer
  read -r -a ports <<<"$(free_ports 5)"
  http=${ports[0]}
  DNS_PORT=${ports[1]}
  "$LEGATE" agent -dev -node bench -http-port "$http" -dns-port "$DNS_PORT" -server-port "${ports[2]}" \
    -serf-lan-port "${ports[3]}" -serf-wan-port "${ports[4]}" >"$WORK/legate.log" 2>&1 &
  LEGATE_PID=$!
  PIDS+=("$LEGATE_PID")
  if ! wait_until 60 "a leader (http://127.0.0.1:$http/v1/status/leader)" has_leader "$http"; then
    show_logs "$WORK/legate.log"
    kill -0 "$LEGATE_PID" 2>/dev/null || die "legate exited at start (log above)"
    die "legate agent -dev did not elect itself leader"
  fi
  # One node per instance, with its own address; the check (passing, bound to the service) is
  # the registration's "Check", as /v1/catalog/register reads it (agent/src/http/catalog.rs).
  for n in $(seq "$INSTANCES"); do
    body="{\"Node\":\"web-$n\",\"Address\":\"10.0.0.$n\",\"Service\":{\"Service\":\"web\",\"Port\":80},"
    body+="\"Check\":{\"CheckID\":\"web-$n-ok\",\"Name\":\"ok\",\"Status\":\"passing\",\"ServiceID\":\"web\"}}"
    answer="$("$CURL" -s --max-time 5 -X PUT --data "$body" "http://127.0.0.1:$http/v1/catalog/register" 2>&1)" || true
    [ "$answer" = true ] || die "registering web on node web-$n failed: ${answer:-no answer}"
  done
  answer="$("$CURL" -s --max-time 5 "http://127.0.0.1:$http/v1/health/service/web?passing" |
    python3 -c 'import json, sys; print(len(json.load(sys.stdin)))' 2>/dev/null)" || true
  [ "$answer" = "$INSTANCES" ] || die "/v1/health/service/web?passing lists ${answer:-no} instances, expected $INSTANCES"
  log "legate agent -dev has $INSTANCES passing instances of web (HTTP 127.0.0.1:$http)"
  check_answer "legate" "$DNS_PORT" "$WORK/legate.log"
}

# --- measurement ---------------------------------------------------------------------------------
echo "$QNAME A" >"$WORK/queries.txt"
PERF_ARGS=(-s 127.0.0.1 -d "$WORK/queries.txt" -m "$MODE" -l "$DURATION" -c "$CLIENTS" -q "$OUTSTANDING" -T "$THREADS")
[ "$EDNS" = 1 ] && PERF_ARGS+=(-e)

# measure NAME PORT PID LOG SOFTWARE: one dnsperf run; its figures as a JSON line in RESULTS and
# its output next to RESULTS.
measure() {
  local name="$1" port="$2" pid="$3" logf="$4" software="$5" out="${RESULTS%.jsonl}-$1.dnsperf.txt"
  log "measuring $name: dnsperf -p $port ${PERF_ARGS[*]}"
  # In the background, so that a signal stops the script (and dnsperf, in cleanup) at once
  # rather than at the end of the run.
  "$DNSPERF" -p "$port" "${PERF_ARGS[@]}" >"$out" 2>&1 &
  local perf=$! status=0
  PIDS+=("$perf")
  wait "$perf" || status=$?
  local kept=() p
  for p in "${PIDS[@]}"; do [ "$p" = "$perf" ] || kept+=("$p"); done
  PIDS=("${kept[@]}")
  [ "$status" = 0 ] || { cat "$out" >&2; die "dnsperf against $name failed (exit status $status)"; }
  if ! kill -0 "$pid" 2>/dev/null; then
    cp "$logf" "${RESULTS%.jsonl}-$name.log"
    show_logs "$logf"
    die "$name (pid $pid) exited during the run; its log is kept in ${RESULTS%.jsonl}-$name.log"
  fi
  python3 - "$out" "$name" "$port" "$software" "$MODE" "$EDNS" "$DURATION" "$CLIENTS" "$OUTSTANDING" \
    "$THREADS" >>"$RESULTS" <<'EOF' || die "could not read dnsperf's statistics in $out"
import json, re, sys
path, name, port, software, mode, edns, duration, clients, outstanding, threads = sys.argv[1:]
text = open(path).read()
def ms(seconds):
    return round(float(seconds) * 1000, 3)
def grab(pattern, conv=float):
    m = re.search(pattern, text)
    if not m:
        sys.exit(f"no match for {pattern!r}")
    return conv(m.group(1))
rcodes = {}
m = re.search(r"Response codes:\s*(.*)", text)
if m:
    for code, count in re.findall(r"([A-Z]+) (\d+) \(", m.group(1)):
        rcodes[code] = int(count)
avg = re.search(r"Average Latency \(s\):\s*([\d.]+) \(min ([\d.]+), max ([\d.]+)\)", text)
size = re.search(r"Average packet size:\s*request (\d+), response (\d+)", text)
print(json.dumps({
    "target": name, "server": f"127.0.0.1:{port}", "software": software, "qname": "web.service.consul",
    "qtype": "A", "mode": mode, "edns": edns == "1", "duration_s": int(duration),
    "clients": int(clients), "outstanding": int(outstanding), "threads": int(threads),
    "queries_sent": grab(r"Queries sent:\s*(\d+)", int),
    "queries_completed": grab(r"Queries completed:\s*(\d+)", int),
    "queries_lost": grab(r"Queries lost:\s*(\d+)", int),
    "rcodes": rcodes,
    "request_bytes": int(size.group(1)) if size else None,
    "response_bytes": int(size.group(2)) if size else None,
    "run_time_s": grab(r"Run time \(s\):\s*([\d.]+)"),
    "qps": grab(r"Queries per second:\s*([\d.]+)"),
    "latency_avg_ms": ms(avg.group(1)) if avg else None,
    "latency_min_ms": ms(avg.group(2)) if avg else None,
    "latency_max_ms": ms(avg.group(3)) if avg else None,
    "latency_stddev_ms": ms(grab(r"Latency StdDev \(s\):\s*([\d.]+)")) if avg else None,
}))
EOF
}

# Both servers are started and checked before anything is measured; then Legate is measured, then
# Knot. An idle server takes next to no CPU, so both stay up.
want static && start_knot
want legate && start_legate
REV="$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
[ -z "$(git -C "$ROOT" status --porcelain --untracked-files=no 2>/dev/null)" ] || REV+="+dirty"
want legate && measure legate "$DNS_PORT" "$LEGATE_PID" "$WORK/legate.log" "legate $REV"
want static && measure static "$KNOT_PORT" "$KNOT_PID" "$WORK/knot.log" "$("$KNOTD" --version | head -n1)"

python3 - "$RESULTS" "$("$DNSPERF" -h 2>&1 | sed -n 's/^Version //p')" "${PERF_ARGS[*]}" <<'EOF'
import json, sys
path, perf_version, perf_args = sys.argv[1], sys.argv[2], sys.argv[3]
runs = {}
for line in open(path):
    r = json.loads(line)
    runs[r["target"]] = r
l, s = runs.get("legate"), runs.get("static")
any_run = l or s
args = perf_args.split(" ")
shown = " ".join(a for i, a in enumerate(args) if a not in ("-s", "-d") and args[i - 1] not in ("-s", "-d"))
print(f"\n{any_run['qname']} A, 10 healthy instances: legate agent -dev (catalog) vs Knot DNS (static zone)")
print(f"dnsperf {perf_version} {shown} ({'EDNS0' if any_run['edns'] else 'no EDNS'}), both on 127.0.0.1")

def rcodes(r):
    total = sum(r["rcodes"].values()) or 1
    return " ".join(f"{k} {100 * v / total:.1f}%" for k, v in sorted(r["rcodes"].items())) or "-"

rows = [
    ("queries/s", "qps", ".0f"),
    ("avg latency ms", "latency_avg_ms", ".3f"),
    ("min latency ms", "latency_min_ms", ".3f"),
    ("max latency ms", "latency_max_ms", ".3f"),
    ("latency stddev ms", "latency_stddev_ms", ".3f"),
    ("queries sent", "queries_sent", "d"),
    ("queries lost", "queries_lost", "d"),
    ("response bytes", "response_bytes", "d"),
]
head = ["", "legate", "static", "legate/static"]
table = []
for label, field, fmt in rows:
    lv = l.get(field) if l else None
    sv = s.get(field) if s else None
    ratio = "-"
    if field in ("qps", "latency_avg_ms") and lv is not None and sv:
        ratio = f"{lv / sv:.2f}"
    table.append([label, "-" if lv is None else format(lv, fmt), "-" if sv is None else format(sv, fmt), ratio])
table.append(["response codes", rcodes(l) if l else "-", rcodes(s) if s else "-", ""])
widths = [max(len(h), *(len(r[i]) for r in table)) for i, h in enumerate(head)]
for r in [head] + table:
    print(r[0].ljust(widths[0]) + "  " + "  ".join(c.rjust(w) for c, w in zip(r[1:], widths[1:])))
suspect = [r["target"] for r in (l, s) if r and (r["queries_lost"] or set(r["rcodes"]) - {"NOERROR"})]
if suspect:
    print(f"! {' and '.join(suspect)}: lost queries or answers other than NOERROR; that figure is not a fair one")
EOF
log "results: $RESULTS (dnsperf's own output beside it: ${RESULTS%.jsonl}-*.dnsperf.txt)"
