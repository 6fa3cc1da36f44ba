#!/usr/bin/env bash
# Runs the Windows build under Wine: `memsync.exe demo` replicates a memory database (with
# sqlite-vec) to a file replica while writing, restores it and verifies it, all through the
# Windows code paths (src/platform/windows.rs, the reactor without inotify, NTFS-style paths).
# Wine 8 (Debian bookworm) lacks bcryptprimitives.dll, which Rust's standard library asks for
# ProcessPrng: a two-line shim (scripts/wine/) is built with MinGW into the Wine prefix.
set -euo pipefail
cd "$(dirname "$0")/.."
H=${MEMSYNC_HARNESS:-$HOME/.cache/memsync-harness}
export WINEPREFIX="$H/wine" WINEDEBUG=-all
target=${CARGO_TARGET_DIR:-target}
cargo build --locked --target x86_64-pc-windows-gnu
exe="$target/x86_64-pc-windows-gnu/debug/memsync.exe"
mkdir -p "$H"
[ -d "$WINEPREFIX/drive_c/windows/system32" ] || wineboot -i >/dev/null 2>&1 || true
[ -d "$WINEPREFIX/drive_c/windows/system32" ] || { echo "wine-check: wineboot did not create $WINEPREFIX" >&2; exit 1; }
x86_64-w64-mingw32-gcc -shared -O2 -o "$WINEPREFIX/drive_c/windows/system32/bcryptprimitives.dll" \
    scripts/wine/bcryptprimitives.c scripts/wine/bcryptprimitives.def -ladvapi32
cp "$exe" "$WINEPREFIX/drive_c/memsync.exe"
rm -rf "$WINEPREFIX/drive_c/demo"
out=$(cd "$WINEPREFIX/drive_c" && timeout 300 wine 'C:\memsync.exe' demo --dir 'C:\demo' 2>&1) ||
    { echo "$out" | grep -v ':err:\|wine32\|multiarch\|dpkg\|apt-get' >&2; echo "wine-check: memsync.exe demo failed" >&2; exit 1; }
echo "$out" | grep -Eq "integrity ok, [0-9]+ memories, KNN query answered" ||
    { echo "$out" >&2; echo "wine-check: memsync.exe demo did not verify its restore" >&2; exit 1; }
echo "wine-check: memsync.exe demo under Wine: replicated, restored, verified"
