#!/usr/bin/env bash
# Build the go-centrifuge peer offline from Debian's Go sources (GOPATH mode, no proxy):
# golang-go and golang-github-centrifugal-centrifuge-dev (+ the dependencies Debian's package
# forgets: its protocol, eagle, sockjs-go and redisc packages), as install.sh installs them.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$WORK/src/gocentrifugepeer"
cp "$HERE/main.go" "$WORK/src/gocentrifugepeer/"
cd "$WORK/src/gocentrifugepeer"
GO111MODULE=off GOPATH="$WORK:/usr/share/gocode" GOPROXY=off GOFLAGS= GOCACHE="$WORK/cache" \
    go build -o "$HERE/go-centrifuge" .
echo "[go-centrifuge] built $HERE/go-centrifuge ($(go version | cut -d' ' -f3))"
