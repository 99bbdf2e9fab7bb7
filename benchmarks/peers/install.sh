#!/usr/bin/env bash
# Install everything the benchmark peer servers need.  Idempotent: re-running
# only re-checks the pins (pip) and re-creates node_modules from the lock (npm ci).
#
#   bash benchmarks/peers/install.sh            # all peers
#   PYTHON=python3.11 bash benchmarks/peers/install.sh
#
# Python packages go into the interpreter named by $PYTHON (default: python3),
# i.e. the current environment; Node packages into node-socketio/node_modules.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PYTHON="${PYTHON:-python3}"

# The C and Go anchors: nchan (nginx-light + libnginx-mod-nchan, one worker) and the Go
# centrifuge library Centrifugo is built on (Debian's build, v0.15; its package forgets some
# of its dependencies, listed here), built offline in GOPATH mode (go-centrifuge/build.sh).
DEBS="nginx-light libnginx-mod-nchan golang-go golang-github-centrifugal-centrifuge-dev
      golang-github-centrifugal-protocol-dev golang-github-fzambia-eagle-dev
      golang-github-igm-sockjs-go-dev golang-github-mna-redisc-dev"
missing=""
for deb in $DEBS; do dpkg -s "$deb" >/dev/null 2>&1 || missing="$missing $deb"; done
if [ -n "$missing" ]; then
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    echo "[peers/install] apt-get install$missing"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing
fi
bash "$HERE/go-centrifuge/build.sh"
echo "[peers/install]   nginx $(nginx -v 2>&1 | cut -d/ -f2), libnginx-mod-nchan $(dpkg-query -W -f='${Version}' libnginx-mod-nchan), centrifuge $(dpkg-query -W -f='${Version}' golang-github-centrifugal-centrifuge-dev)"

echo "[peers/install] pip: $("$PYTHON" -c 'import sys; print(sys.executable)')"
"$PYTHON" -m pip install --disable-pip-version-check -q -r "$HERE/requirements.txt"

if command -v npm >/dev/null 2>&1; then
    echo "[peers/install] npm ci in node-socketio (node $(node --version))"
    (cd "$HERE/node-socketio" && npm ci --no-audit --no-fund --loglevel=error)
else
    echo "[peers/install] npm not found: the node-socketio peer will not run" >&2
    exit 1
fi

"$PYTHON" - <<'PY'
import importlib.metadata as md
for dist in ("python-socketio", "python-engineio", "uvicorn", "uvloop", "httptools",
             "websockets", "Django", "channels", "daphne", "Twisted", "starlette",
             "broadcaster", "anyio"):
    print(f"[peers/install]   {dist}=={md.version(dist)}")
PY
(cd "$HERE/node-socketio" && node -e '
for (const p of ["socket.io", "engine.io", "ws", "bufferutil"]) {
  const v = require("fs").readFileSync(require("path").join("node_modules", p, "package.json"), "utf8");
  console.log(`[peers/install]   ${p}@${JSON.parse(v).version}`);
}')
echo "[peers/install] done"
