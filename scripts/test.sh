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
# A one-off build gains nothing from incremental state, which would add gigabytes to target/.
export CARGO_INCREMENTAL=${CARGO_INCREMENTAL:-0}
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
# memsync builds for Windows too (the service host, `src/platform/windows.rs`): its lints,
cargo clippy --workspace --locked --target x86_64-pc-windows-gnu -- -D warnings
# the demo (replicate, restore, verify) of the Windows build under Wine, and its service under
# Wine's service manager (install, follow writes, restart, stop with everything shipped).
scripts/wine-check.sh
scripts/wine-service-check.sh
cargo test --workspace --locked --no-run
# The 15-minute restore-point test (tests/pitr_long.rs, ignored by a plain `cargo test`) runs
# beside the rest of the suite: it mostly waits between write phases.
long_bin=$(cargo test --locked --no-run --test pitr_long 2>&1 |
    sed -n 's/.*Executable tests\/pitr_long.rs (\(.*\))$/\1/p')
[ -x "$long_bin" ] || { echo "scripts/test.sh: pitr_long test binary not found" >&2; exit 1; }
long_log=$(mktemp)
"$long_bin" --ignored >"$long_log" 2>&1 &
long_pid=$!
status=0
cargo test --workspace --locked "$@" || status=$?
echo "waiting for the 15-minute restore-point test (tests/pitr_long.rs)"
if wait "$long_pid"; then
    grep -E "^test result" "$long_log"
else
    cat "$long_log"
    status=1
fi
rm -f "$long_log"
exit "$status"
