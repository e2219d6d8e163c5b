#!/usr/bin/env bash
# Generates the Go stubs of jwtd.v1 into gen/jwtdv1 (not committed) from
# the repository's proto/, with protoc, protoc-gen-go and protoc-gen-go-grpc.
set -euo pipefail
cd "$(dirname "$0")"
PROTO_DIR=${JWTD_PROTO_DIR:-../../proto}
mkdir -p gen/jwtdv1
map=Mjwtd/v1/jwtd.proto=jwtdexample/gen/jwtdv1
protoc -I "$PROTO_DIR" \
    --go_out=. --go_opt="module=jwtdexample,$map" \
    --go-grpc_out=. --go-grpc_opt="module=jwtdexample,$map" \
    jwtd/v1/jwtd.proto
