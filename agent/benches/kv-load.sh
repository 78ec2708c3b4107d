#!/usr/bin/env bash
# Measures KV PUT and GET requests/s against a `legate agent -dev` with wrk.
#
#   agent/benches/kv-load.sh [duration-seconds] [connections]
#
# Builds the release binary, installs wrk (Debian's package) if missing, starts a dev agent on
# a free port, then runs wrk for GET /v1/kv/bench and for PUT /v1/kv/bench-<n> (values of
# 64 bytes). Prints wrk's summaries and a one-line result per workload. Figures depend on the
# machine; compare runs made on the same machine at the same time.
set -euo pipefail

duration="${1:-10}"
connections="${2:-32}"
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"

if ! command -v wrk >/dev/null 2>&1; then
  echo "==> installing wrk"
  if [ "$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq wrk >/dev/null
  else sudo apt-get update -qq && sudo apt-get install -y -qq wrk >/dev/null; fi
fi

echo "==> building the release binary"
cargo build --release -q -p agent --bin legate
bin="$root/target/release/legate"

port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
log="$(mktemp)"
"$bin" agent -dev -http-port "$port" -node bench -log-level warn >"$log" 2>&1 &
agent_pid=$!
trap 'kill $agent_pid 2>/dev/null || true; rm -f "$log" "$lua"' EXIT

base="http://127.0.0.1:$port"
for _ in $(seq 1 100); do
  if [ -n "$(curl -s "$base/v1/status/leader" | tr -d '"')" ]; then break; fi
  sleep 0.1
done
curl -sf -X PUT -d 'hello-benchmark' "$base/v1/kv/bench" >/dev/null

lua="$(mktemp --suffix=.lua)"
cat >"$lua" <<'LUA'
counter = 0
request = function()
  counter = counter + 1
  local body = string.rep("v", 64)
  return wrk.format("PUT", "/v1/kv/bench-" .. (counter % 1000), nil, body)
end
LUA

threads=2
echo "==> GET /v1/kv/bench: ${duration}s, $connections connections, $threads threads"
get_out="$(wrk -t"$threads" -c"$connections" -d"${duration}s" --latency "$base/v1/kv/bench")"
echo "$get_out"
echo "==> PUT /v1/kv/bench-<n>: ${duration}s, $connections connections, $threads threads"
put_out="$(wrk -t"$threads" -c"$connections" -d"${duration}s" --latency -s "$lua" "$base")"
echo "$put_out"

get_rps="$(echo "$get_out" | awk '/Requests\/sec/ {print $2}')"
put_rps="$(echo "$put_out" | awk '/Requests\/sec/ {print $2}')"
echo
echo "RESULT kv GET requests/s: $get_rps"
echo "RESULT kv PUT requests/s: $put_rps"
