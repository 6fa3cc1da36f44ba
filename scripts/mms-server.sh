#!/usr/bin/env bash
# Runs one mcp-memory-service 12.4.0 HTTP REST server in the foreground, fully offline, for tests.
#   usage: mms-server.sh DATA_DIR PORT [API_KEY]
# - DATA_DIR holds the database (DATA_DIR/sqlite_vec.db) and a private HOME (DATA_DIR/home).
# - Binds 127.0.0.1:PORT only. The API key (default "testkey") is accepted as
#   "Authorization: Bearer KEY" or "X-API-Key: KEY". GET /api/health needs no key.
# - Embeddings: deterministic hash fallback (no model, no download; ONNX off). Without
#   MCP_MEMORY_ALLOW_HASH_EMBEDDINGS=1 the server refuses to start on a DB that already holds rows.
# - Only exact duplicates are refused (semantic dedup off).
# - MMS_EVENTLOG=1           also turns on the v12 delta-sync event log (MCP_SYNC_EVENTLOG=on),
#                            which makes re-storing deleted content answer 409 unless restore_deleted=true.
# - MMS_TLS_CERT, MMS_TLS_KEY (both set) serve HTTPS with that certificate instead of HTTP.
# The server replaces this shell (exec): killing the PID this script started with stops the server.
# The venv comes from scripts/harness.sh: ${MEMSYNC_HARNESS:-$HOME/.cache/memsync-harness}/mms.
set -euo pipefail
if [ $# -lt 2 ] || [ $# -gt 3 ]; then
  echo "usage: $0 DATA_DIR PORT [API_KEY]" >&2
  exit 2
fi
DATA_DIR=$1
PORT=$2
API_KEY=${3:-testkey}
case $PORT in
  '' | *[!0-9]*) echo "mms-server: PORT must be a number, got '$PORT'" >&2; exit 2 ;;
esac
H=${MEMSYNC_HARNESS:-$HOME/.cache/memsync-harness}
PY="$H/mms/bin/python"
if [ ! -x "$PY" ]; then
  echo "mms-server: no venv at $H/mms; run scripts/harness.sh first" >&2
  exit 1
fi
mkdir -p "$DATA_DIR/home"
DATA_DIR=$(cd "$DATA_DIR" && pwd)

# A clean environment: nothing from the caller's MCP_* / HF_* settings leaks in.
ENVV=(
  "PATH=/usr/local/bin:/usr/bin:/bin"
  "HOME=$DATA_DIR/home"
  "LANG=C.UTF-8"
  "PYTHONUNBUFFERED=1"
  "PYTHONDONTWRITEBYTECODE=1"
  "MCP_MEMORY_STORAGE_BACKEND=sqlite_vec"
  "MCP_MEMORY_SQLITE_PATH=$DATA_DIR/sqlite_vec.db"
  "MCP_MEMORY_BASE_DIR=$DATA_DIR/home/mcp-memory"
  "MCP_HTTP_HOST=127.0.0.1"
  "MCP_HTTP_PORT=$PORT"
  "MCP_API_KEY=$API_KEY"
  "MCP_MDNS_ENABLED=false"
  "MCP_BACKUP_ENABLED=false"
  "MCP_CONSOLIDATION_ENABLED=false"
  "MCP_SEMANTIC_DEDUP_ENABLED=false"
  "MCP_QUALITY_SYSTEM_ENABLED=false"
  "MCP_QUALITY_AI_PROVIDER=none"
  "MCP_METRICS_ENABLED=false"
  "MCP_MEMORY_USE_ONNX=0"
  "MCP_MEMORY_ONNX_ALLOW_DOWNLOAD=0"
  "MCP_MEMORY_ALLOW_HASH_EMBEDDINGS=1"
  "MCP_MEMORY_OFFLINE=1"
  "HF_HUB_OFFLINE=1"
  "TRANSFORMERS_OFFLINE=1"
)
if [ "${MMS_EVENTLOG:-0}" = 1 ]; then
  ENVV+=("MCP_SYNC_EVENTLOG=on")
fi
TLS_ARGS=()
if [ -n "${MMS_TLS_CERT:-}" ] || [ -n "${MMS_TLS_KEY:-}" ]; then
  if [ -z "${MMS_TLS_CERT:-}" ] || [ -z "${MMS_TLS_KEY:-}" ]; then
    echo "mms-server: set both MMS_TLS_CERT and MMS_TLS_KEY (or neither)" >&2
    exit 2
  fi
  [ -r "$MMS_TLS_CERT" ] || { echo "mms-server: cannot read MMS_TLS_CERT=$MMS_TLS_CERT" >&2; exit 1; }
  [ -r "$MMS_TLS_KEY" ] || { echo "mms-server: cannot read MMS_TLS_KEY=$MMS_TLS_KEY" >&2; exit 1; }
  MMS_TLS_CERT=$(realpath "$MMS_TLS_CERT")
  MMS_TLS_KEY=$(realpath "$MMS_TLS_KEY")
  ENVV+=("MCP_HTTPS_ENABLED=true" "MCP_SSL_CERT_FILE=$MMS_TLS_CERT" "MCP_SSL_KEY_FILE=$MMS_TLS_KEY")
  TLS_ARGS=(--ssl-certfile "$MMS_TLS_CERT" --ssl-keyfile "$MMS_TLS_KEY")
fi
# The package loads a .env from the working directory; run where there is none.
cd "$DATA_DIR"
exec env -i "${ENVV[@]}" "$PY" -m uvicorn mcp_memory_service.web.app:app \
  --host 127.0.0.1 --port "$PORT" --log-level warning "${TLS_ARGS[@]}"
