# syntax=docker/dockerfile:1
#
# jwtd container image: a distroless, non-root image with the release binary
# and an example config at /etc/jwtd/jwtd.toml.
#
#   docker build -t jwtd:0.1.0 \
#       --build-arg REVISION="$(git rev-parse HEAD)" \
#       --build-arg CREATED="$(date -u +%Y-%m-%dT%H:%M:%SZ)" .
#   docker run --rm -p 50051:50051 -p 9464:9464 jwtd:0.1.0
#
# CI builds this file as it is with podman and runs the image as a user
# would (deploy/image/build.sh, then tests/image.rs): non-root on a read-only
# root filesystem, gRPC health SERVING, a token verifying, `--version` naming
# the commit, SIGTERM draining to exit 0. CI reaches no image registry,
# so deploy/image/make-bases.sh makes stand-ins for the two bases below from
# Debian's packages; users build with the official ones. hadolint lints this
# file.

# The toolchain CI and developers use (rust-version in Cargo.toml is the
# floor, 1.88; the builds are made and tested with 1.95). Bookworm, so the
# binary's glibc matches the distroless Debian 12 runtime below. For
# byte-for-byte repeatable images, pin both FROMs by digest as well
# (rust:1.95.0-bookworm@sha256:...); this repository cannot look digests up.
ARG RUST_VERSION=1.95.0

# ---- skeleton: what decides the dependency build, and nothing else --------
# Every manifest, the lock file, build.rs and the protos it compiles, with each
# crate root (src/main.rs, src/lib.rs, src/bin/*, benches/*: cargo checks
# that declared targets exist) replaced by an empty `fn main() {}`. This stage
# reruns on every source change, but its output changes only when
# dependencies do, so the builder's dependency layer below stays cached. It
# finds workspace members by their Cargo.toml, so a new member (loadtest/, say)
# needs no edit here.
FROM rust:${RUST_VERSION}-bookworm AS skeleton
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
WORKDIR /src
COPY . .
RUN mkdir /skeleton \
 && find . -path ./target -prune -o -type f \
        \( -name Cargo.toml -o -name Cargo.lock -o -name build.rs -o -path './proto/*' \) -print \
    | tar -cf - -T - | tar -xf - -C /skeleton \
 && find . -path ./target -prune -o -type f \
        \( -path '*/src/main.rs' -o -path '*/src/lib.rs' -o -path '*/src/bin/*.rs' -o -path '*/benches/*.rs' \) -print \
    | while read -r f; do mkdir -p "/skeleton/${f%/*}"; echo 'fn main() {}' > "/skeleton/$f"; done

# ---- builder ---------------------------------------------------------------
FROM rust:${RUST_VERSION}-bookworm AS builder
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
WORKDIR /src
# 1. Dependencies only, against the stub crates: cached until Cargo.toml,
#    Cargo.lock, build.rs or proto/ change.
COPY --from=skeleton /skeleton ./
RUN cargo build --release --locked --bin jwtd
# 2. The real sources. COPY keeps the context's modification times, which can
#    be older than the stub build's outputs: touch every Rust file so cargo
#    rebuilds jwtd's own crates instead of keeping the stub binary. The
#    context has no .git, so the commit `jwtd --version` prints comes from
#    REVISION (build.rs reads JWTD_REVISION); declared here, below the
#    dependency layer, so a new commit does not rebuild the dependencies.
COPY . .
ARG REVISION=unknown
RUN find . -path ./target -prune -o -name '*.rs' -print0 | xargs -0 touch \
 && JWTD_REVISION="${REVISION}" cargo build --release --locked --bin jwtd \
 && ./target/release/jwtd --version

# ---- runtime ---------------------------------------------------------------
# glibc, libgcc and CA certificates (for https JWKS and discovery fetches), no
# shell, no package manager; runs as the numeric user 65532 so Kubernetes'
# runAsNonRoot can verify it.
FROM gcr.io/distroless/cc-debian12:nonroot

ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown
LABEL org.opencontainers.image.title="jwtd" \
      org.opencontainers.image.description="A gRPC service that verifies JSON Web Tokens in batches, and an Envoy ext_authz server" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="gcr.io/distroless/cc-debian12:nonroot"

COPY --from=builder /src/target/release/jwtd /usr/local/bin/jwtd
# The example config (placeholder issuer): Kubernetes mounts its ConfigMap over
# /etc/jwtd; with plain docker, mount your own file there.
COPY deploy/kubernetes/jwtd.toml /etc/jwtd/jwtd.toml

USER 65532:65532
# 50051: gRPC (Verify, ext_authz Check, health, reflection); 9464: /metrics.
EXPOSE 50051 9464

# No HEALTHCHECK: the image has no shell or probe binary to run, and health is
# a gRPC service (grpc.health.v1). Kubernetes probes it natively (grpc:
# liveness and readiness probes, deploy/kubernetes/deployment.yaml), Envoy and
# Istio by their own health checks; Docker's HEALTHCHECK is ignored by
# Kubernetes anyway.
ENTRYPOINT ["/usr/local/bin/jwtd"]
CMD ["--config", "/etc/jwtd/jwtd.toml"]
