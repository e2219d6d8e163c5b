# Sourced by make-bases.sh and build.sh: the podman settings this CI
# machine needs (see README.md beside this file). Not needed where podman or
# Docker already runs containers.

# runc, not crun: this machine's cgroups are hybrid (v1), which crun refuses.
# Container ulimits no higher than the host's hard limits, or runc fails to
# set them. Overlay on the host's own filesystem.
conf_dir="$(mktemp -d)"
cat > "$conf_dir/containers.conf" <<EOF
[containers]
default_ulimits = ["nofile=$(ulimit -Hn):$(ulimit -Hn)", "nproc=32768:32768"]

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
EOF
# The Dockerfile's builder base is a short name (rust:...): resolve it in
# docker.io, where make-bases.sh tags the stand-in, without prompting.
cat > "$conf_dir/registries.conf" <<EOF
unqualified-search-registries = ["docker.io"]
short-name-mode = "permissive"
EOF
export CONTAINERS_CONF="$conf_dir/containers.conf"
export CONTAINERS_REGISTRIES_CONF="$conf_dir/registries.conf"

# The two bases the Dockerfile names, exactly.
RUST_VERSION="$(sed -n 's/^ARG RUST_VERSION=//p' Dockerfile)"
BUILDER_BASE="docker.io/library/rust:${RUST_VERSION}-bookworm"
RUNTIME_BASE="$(sed -n 's/^FROM \(gcr.io\/[^ ]*\).*/\1/p' Dockerfile)"
