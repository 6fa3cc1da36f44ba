#!/usr/bin/env bash
# Measures memory sync against real mcp-memory-service 12.4.0 servers on 127.0.0.1 (installed by
# scripts/harness.sh): staging N memories offline, pushing them, pulling them into a live local
# database over REST and from the server's replica. Prints wall time and peak RSS per step.
#   usage: scripts/bench-memory.sh [N=1000] [MEMSYNC=target/release/memsync]
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-1000}
B=$(realpath "${2:-target/release/memsync}")
[ -x "$B" ] || { echo "bench-memory: $B not found (cargo build --release)" >&2; exit 1; }
export MEMSYNC_HARNESS=${MEMSYNC_HARNESS:-$HOME/.cache/memsync-harness}
scripts/harness.sh >/dev/null
W=$(mktemp -d /tmp/memsync-bench-memory.XXXXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$W"; }
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
start() { # DIR PORT
  scripts/mms-server.sh "$1" "$2" >"$1.log" 2>&1 & PIDS+=($!)
  for _ in $(seq 1 300); do curl -sf "http://127.0.0.1:$2/api/health" >/dev/null && return; sleep 0.2; done
  echo "bench-memory: server on $2 did not start; see $1.log" >&2; exit 1
}
R=$(port); L1=$(port); L2=$(port)
start "$W/remote" "$R"; start "$W/local1" "$L1"; start "$W/local2" "$L2"
export HOME=$W/home REMOTE_MEMORY_HOST=127.0.0.1 REMOTE_MEMORY_PORT=$R REMOTE_MEMORY_API_KEY=testkey
export STAGING_DB_PATH=$W/st/staging.db
mkdir -p "$HOME"
measure() { # LABEL CMD...
  local out; out=$( { /usr/bin/time -f '%e %M' "${@:2}" >/dev/null; } 2>&1 | tail -1)
  printf '%-44s %8.2f s  %6.1f MB peak RSS\n' "$1" "${out% *}" "$(echo "${out#* } / 1024" | bc -l)"
}
t0=$(date +%s.%N)
for i in $(seq 1 "$N"); do
  "$B" store --offline "memory $i about replication, sqlite, WAL and $((i * 7919 % 1000)) other things" >/dev/null
done
t1=$(date +%s.%N)
printf '%-44s %8.2f ms each\n' "store --offline ($N processes)" "$(echo "($t1 - $t0) * 1000 / $N" | bc -l)"
measure "push $N staged memories" "$B" push
MCP_MEMORY_SQLITE_PATH=$W/local1/sqlite_vec.db measure "pull $N over REST into a live database" "$B" pull
MCP_MEMORY_SQLITE_PATH=$W/local1/sqlite_vec.db measure "pull again (nothing to do), REST" "$B" pull
"$B" replicate -once "$W/remote/sqlite_vec.db" "file://$W/replica" >/dev/null 2>&1
STAGING_DB_PATH=$W/st2/staging.db MCP_MEMORY_SQLITE_PATH=$W/local2/sqlite_vec.db REMOTE_MEMORY_REPLICA=file://$W/replica \
  measure "pull $N from the server's replica (vectors)" "$B" pull
