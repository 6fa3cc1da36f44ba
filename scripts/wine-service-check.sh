#!/usr/bin/env bash
# The Windows service under Wine, the way a user drives it: `install-service` registers and
# starts "MCP Memory Sync" (run where its litestream.yml is, as a user would: the service's command line names it),
# the service follows a database written in bursts with idle pauses between them,
# `restart-service` and `stop-service` return only once the old instance has stopped with
# everything committed shipped, and `uninstall-service` removes it. Restores run with the
# Windows build too; the writer is Debian's python3 (its SQLite and Wine's file locks agree).
#
# Wine ends its services when its last other process exits (the wineserver shuts down, and
# the next Wine command starts the service anew): a persistent wineserver runs for the length
# of the check, as the Service Control Manager does on Windows.
set -euo pipefail
cd "$(dirname "$0")/.."
H=${MEMSYNC_HARNESS:-$HOME/.cache/memsync-harness}
export WINEPREFIX="$H/wine" WINEDEBUG=-all
target=${CARGO_TARGET_DIR:-target}
c="$WINEPREFIX/drive_c"
[ -d "$c/windows/system32" ] || { echo "wine-service-check: no Wine prefix at $WINEPREFIX (scripts/wine-check.sh makes it)" >&2; exit 1; }
cargo build --locked --target x86_64-pc-windows-gnu
cp "$target/x86_64-pc-windows-gnu/debug/memsync.exe" "$c/memsync.exe"

log=""
fail() {
    echo "wine-service-check: $*" >&2
    [ -n "$log" ] && [ -f "$log" ] && tail -20 "$log" >&2
    exit 1
}
# Output through a file, not a pipe: Wine's own background processes, started by the first
# command, inherit its output and would hold a pipe open for good.
out_file=$(mktemp)
ms() {
    local rc=0
    (cd "${here:-$c}" && timeout 150 wine 'C:\memsync.exe' "$@" >"$out_file" 2>&1) || rc=$?
    grep -v ':err:\|:fixme:' "$out_file" || true
    return "$rc"
}
rows() { python3 -c "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute('select count(*) from t').fetchone()[0])" "$1"; }
write() {
    python3 - "$c/svccheck/db.sqlite" "$1" "$2" <<'EOF'
import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1], timeout=30)
for i in range(int(sys.argv[2]), int(sys.argv[3])):
    db.execute("INSERT INTO t VALUES (?, randomblob(3000))", (i,))
    db.commit()
    time.sleep(0.05)
EOF
}
# Restores the replica with the Windows build and checks it holds `want` rows.
restores() {
    rm -f "$c/svccheck/$1.db"
    ms restore -o "C:\\svccheck\\$1.db" 'C:\svccheck\replica-k1' >/dev/null || fail "restore $1 failed"
    got=$(rows "$c/svccheck/$1.db")
    [ "$got" = "$2" ] || fail "$1: the replica restored $got rows, $2 were committed"
}

wineserver -k 2>/dev/null || true
setsid wineserver -p </dev/null >/dev/null 2>&1 &
trap '(cd "$c" && timeout 60 wine "C:\memsync.exe" uninstall-service >/dev/null 2>&1) || true; wineserver -k 2>/dev/null || true; rm -f "$out_file"' EXIT
ms uninstall-service >/dev/null || true
rm -rf "$c/svccheck"
mkdir -p "$c/svccheck"
find "$c" -path '*/memsync/memsync.log*' -delete
python3 -c "
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
db.execute('PRAGMA journal_mode=WAL')
db.execute('CREATE TABLE t (id INTEGER PRIMARY KEY, b BLOB)')
db.commit()" "$c/svccheck/db.sqlite"
cat >"$c/svccheck/litestream.yml" <<'EOF'
dbs:
  - path: C:\svccheck\db.sqlite
    replicas:
      - type: file
        path: C:\svccheck\replica-${SVC_KEY}
        sync-interval: 5s
EOF

# SVC_KEY (a secret by its name, which the config refers to) is set for the installer only: the
# service gets it from its secrets file (%ProgramData%\memsync\secrets, SYSTEM and
# Administrators only), or its config would not load.
out=$(here="$c/svccheck" SVC_KEY=k1 ms install-service) || fail "install-service failed: $out"
echo "$out" | grep -q 'ran sc.exe start' || fail "install-service did not start the service: $out"
echo "$out" | grep -qF -- '-config C:\svccheck\litestream.yml' || fail "install-service did not name the config: $out"
log=$(find "$c" -path '*/memsync/memsync.log' | head -1)
sleep 1
grep -q 'secret settings from .*: SVC_KEY' "$log" || fail "the service did not load its secret settings"
# (Wine's sc.exe has no `query`: status-service is not checked here.)

# Bursts with an idle pause: the service follows the database after idling.
write 0 40
sleep 8
write 40 80
sleep 7
restores r1 80

# A restart waits for the old instance to stop before starting the new one.
out=$(ms restart-service) || fail "restart-service failed: $out"
echo "$out" | grep -q 'has stopped' || fail "restart-service did not wait for the stop: $out"
echo "$out" | grep -q 'ran sc.exe start' || fail "restart-service did not start it again: $out"
write 80 100
sleep 7
restores r2 100

# Commits of the last second before a stop are shipped by the stop, before it returns.
write 100 140
out=$(ms stop-service) || fail "stop-service failed: $out"
echo "$out" | grep -q 'has stopped' || fail "stop-service did not wait for the stop: $out"
pgrep -f 'memsync.exe run' >/dev/null && fail "the service process is still running after stop-service"
grep -q 'shutting down: shipping what is committed' "$log" || fail "the service log has no shutdown"
restores r3 140

out=$(ms uninstall-service) || fail "uninstall-service failed: $out"
echo "$out" | grep -q 'ran sc.exe delete' || fail "uninstall-service did not delete the service: $out"
[ ! -e "$c/ProgramData/memsync/secrets/service.json" ] && [ ! -e "$c/users/Public/memsync/secrets/service.json" ] ||
    fail "uninstall-service left the secrets file"
echo "wine-service-check: the Windows service under Wine: installed, followed writes across idle pauses, restarted, stopped with everything shipped, uninstalled"
