#!/usr/bin/env bash
# Generates the stubs and runs the Go tests against the real jwtd binary
# (JWTD_BIN, default <repo>/target/release/jwtd), with Debian's Go packages:
#   apt-get install golang-go golang-google-grpc-dev golang-google-protobuf-dev \
#       protobuf-compiler protoc-gen-go protoc-gen-go-grpc
# Debian's Go libraries are plain sources under /usr/share/gocode, so this
# builds in GOPATH mode (no module proxy needed), with this folder linked in
# as the package "jwtdexample".
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
"$here/generate.sh"
gopath="$(mktemp -d)"
trap 'rm -rf "$gopath"' EXIT
mkdir -p "$gopath/src"
ln -s "$here" "$gopath/src/jwtdexample"
export JWTD_BIN="${JWTD_BIN:-$(cd "$here/../.." && pwd)/target/release/jwtd}"
# grpc-go before 1.40 (Debian 12 ships 1.33) applies retry policies only with
# this set when the process starts; the tests check that retries happen.
export GRPC_GO_RETRY=on
cd "$gopath/src/jwtdexample"
GOPATH="$gopath:/usr/share/gocode" GO111MODULE=off GOFLAGS= go vet .
GOPATH="$gopath:/usr/share/gocode" GO111MODULE=off GOFLAGS= go test -count=1 -v .
