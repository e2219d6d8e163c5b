#!/usr/bin/env bash
# Stand-ins for the two base images the Dockerfile names, made from Debian's
# packages and tagged with exactly those names, for CI machines that reach
# the Debian and crates.io mirrors but no image registry. Users build with
# the official bases, as the Dockerfile says; nothing here is part of the
# image a user builds.
#
#   builder  docker.io/library/rust:<RUST_VERSION>-bookworm
#            Debian bookworm (mmdebstrap, minbase) with gcc, libc6-dev, make,
#            pkg-config and ca-certificates, plus this machine's own Rust
#            toolchain (rustc --print sysroot; the version must be the
#            Dockerfile's RUST_VERSION) in /usr/local/rust, CARGO_HOME
#            /usr/local/cargo as in the official image.
#   runtime  gcr.io/distroless/cc-debian12:nonroot
#            the packages distroless' cc image holds (base-files, netbase,
#            tzdata, libc6, libgcc-s1, gcc-12-base, libstdc++6, libssl3 and
#            ca-certificates' bundle), unpacked with dpkg-deb: no shell, no
#            package manager; users root, nonroot (65532) and nobody; USER
#            65532, WORKDIR /home/nonroot.
#
# Usage: deploy/image/make-bases.sh [--force]   (run from anywhere, as root)
# Skips a base that already exists unless --force. About 90 s on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=deploy/image/env.sh
source deploy/image/env.sh

force=${1:-}
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

have() { [ "$force" != --force ] && podman image exists "$1"; }

# ---- builder ----------------------------------------------------------------
if have "$BUILDER_BASE"; then
    echo "builder base $BUILDER_BASE: present"
else
    sysroot="$(rustc --print sysroot)"
    host_version="$(rustc --version | cut -d' ' -f2)"
    if [ "$host_version" != "$RUST_VERSION" ]; then
        echo "this machine's rustc is $host_version, the Dockerfile's RUST_VERSION $RUST_VERSION" >&2
        exit 1
    fi
    echo "builder base $BUILDER_BASE: mmdebstrap bookworm + rustc $host_version"
    # The toolchain without its documentation (share/, 800 MB).
    mmdebstrap --quiet --variant=minbase \
        --include=gcc,libc6-dev,make,pkg-config,ca-certificates \
        --customize-hook="mkdir -p \"\$1/usr/local/rust\" \"\$1/usr/local/cargo\"" \
        --customize-hook="cp -a '$sysroot/bin' '$sysroot/lib' '$sysroot/libexec' \"\$1/usr/local/rust/\"" \
        --customize-hook="rm -rf \"\$1\"/var/lib/apt/lists/* \"\$1\"/var/cache/apt/*" \
        bookworm "$work/builder.tar" http://deb.debian.org/debian
    podman import --quiet \
        --change 'ENV CARGO_HOME=/usr/local/cargo' \
        --change 'ENV PATH=/usr/local/cargo/bin:/usr/local/rust/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'CMD ["bash"]' \
        "$work/builder.tar" "$BUILDER_BASE" >/dev/null
fi

# ---- runtime ----------------------------------------------------------------
if have "$RUNTIME_BASE"; then
    echo "runtime base $RUNTIME_BASE: present"
else
    echo "runtime base $RUNTIME_BASE: distroless cc's packages from bookworm"
    apt-get update -qq
    mkdir "$work/debs" "$work/rootfs"
    # apt downloads as its own user, _apt, where it can.
    chmod 0755 "$work" && chown _apt "$work/debs" 2>/dev/null || true
    (cd "$work/debs" && apt-get download -qq base-files netbase tzdata libc6 libgcc-s1 \
        gcc-12-base libstdc++6 libssl3 ca-certificates)
    for deb in "$work"/debs/*.deb; do dpkg-deb -x "$deb" "$work/rootfs"; done
    root="$work/rootfs"
    # ca-certificates' postinst builds the bundle; there is no postinst here.
    mkdir -p "$root/etc/ssl/certs"
    cat "$root"/usr/share/ca-certificates/mozilla/*.crt > "$root/etc/ssl/certs/ca-certificates.crt"
    rm -rf "$root/usr/share/doc" "$root/usr/share/man" "$root/usr/share/lintian" "$root/usr/share/info"
    cat > "$root/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin
nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin
EOF
    cat > "$root/etc/group" <<'EOF'
root:x:0:
nobody:x:65534:
tty:x:5:
staff:x:50:
nonroot:x:65532:
EOF
    install -d -m 0700 "$root/root"
    install -d -m 0700 -o 65532 -g 65532 "$root/home/nonroot"
    install -d -m 1777 "$root/tmp"
    tar --numeric-owner -C "$root" -cf "$work/runtime.tar" .
    podman import --quiet \
        --change 'USER 65532' \
        --change 'WORKDIR /home/nonroot' \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt' \
        "$work/runtime.tar" "$RUNTIME_BASE" >/dev/null
fi
podman images --format '{{.Repository}}:{{.Tag}} {{.Size}}' | grep -E 'rust|distroless'
