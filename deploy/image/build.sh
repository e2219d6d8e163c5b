#!/usr/bin/env bash
# Builds the image from the Dockerfile as it is, with podman, as CI does:
# the stand-in bases first (make-bases.sh), then `podman build`, then prints
# the image's size and the build's time. tests/image.rs runs the result
# (JWTD_IMAGE=localhost/jwtd:ci cargo test --test image).
#
# Usage: deploy/image/build.sh [TAG]   (default localhost/jwtd:ci; as root)
#
# What this machine needs beyond a Docker host (env.sh): runc with ulimits
# no higher than the host's, `--format docker` so the Dockerfile's SHELL is
# honoured, `--pull=never` since no registry answers, the host network for
# cargo's crates.io fetches, and the host's CA bundle mounted over the
# builder's so cargo trusts what the host trusts.
set -euo pipefail
cd "$(dirname "$0")/../.."
tag=${1:-localhost/jwtd:ci}
# shellcheck source=deploy/image/env.sh
source deploy/image/env.sh

start=$(date +%s)
bash deploy/image/make-bases.sh
bases=$(($(date +%s) - start))

start=$(date +%s)
podman build --quiet --format docker --pull=never --network host \
    --volume /etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:ro \
    --build-arg REVISION="$(git rev-parse HEAD 2>/dev/null || echo unknown)" \
    --build-arg CREATED="$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
    --tag "$tag" . >/dev/null
build=$(($(date +%s) - start))

size=$(podman image inspect --format '{{.Size}}' "$tag")
echo "image $tag: $((size / 1000000)) MB ($size bytes); bases ${bases} s, build ${build} s"
