#!/usr/bin/env bash
# The whole test suite, from a clean clone: installs what the tests need (scripts/harness.sh),
# checks formatting and lints, then runs every test of the workspace (unit, format fuzz and
# property tests, and the integration tests that drive real memsync processes against real
# SQLite databases with sqlite-vec loaded).
set -euo pipefail
cd "$(dirname "$0")/.."
export MEMSYNC_HARNESS=${MEMSYNC_HARNESS:-$HOME/.cache/memsync-harness}
scripts/harness.sh >/dev/null
export PATH="$MEMSYNC_HARNESS/venv/bin:$PATH"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked "$@"
