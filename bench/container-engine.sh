#!/usr/bin/env bash
# Readies a container engine for the container benchmarks, and the image of
# `berth serve` they run, made offline as the tests make theirs
# (crates/berth-local/tests/support/engine.rs): busybox-static, the berth
# binary with the libraries ldd names, a non-root user (10001), and
# `berth serve` as the entry point. Podman runs with runc and cgroupfs, as
# ../shared/containers.md says works on these machines.
#
# Usage: source bench/container-engine.sh BERTH_BIN
# Sets DOCKER_HOST (an engine that answers; started if none does),
# CONTAINERS_CONF (for podman commands) and BENCH_IMAGE.
# Prerequisites: podman runc slirp4netns busybox-static (apt-get install -y podman runc slirp4netns busybox-static), curl.

berth_bin=$1
engine_dir=/tmp/berth-bench-engine
mkdir -p "$engine_dir"
export CONTAINERS_CONF=$engine_dir/containers.conf
cat >"$CONTAINERS_CONF" <<'EOF'
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=4096:4096"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
EOF
for tool in podman runc slirp4netns /bin/busybox; do
    command -v "$tool" >/dev/null || { echo "$tool is needed: apt-get install -y podman runc slirp4netns busybox-static" >&2; return 1; }
done
export DOCKER_HOST=${DOCKER_HOST:-unix://$engine_dir/podman.sock}
socket=${DOCKER_HOST#unix://}
if ! curl -fs -o /dev/null --max-time 5 --unix-socket "$socket" http://d/v1.41/version; then
    rm -f "$socket"
    (cd / && nohup podman system service --time=0 "$DOCKER_HOST" >"$engine_dir/service.log" 2>&1 &)
    for _ in $(seq 300); do
        curl -fs -o /dev/null --max-time 5 --unix-socket "$socket" http://d/v1.41/version && break
        sleep 0.1
    done
fi

stamp=$(sha256sum "$berth_bin" | cut -c1-16)
export BENCH_IMAGE=localhost/berth-bench:$stamp
if ! podman image exists "$BENCH_IMAGE"; then
    root=$(mktemp -d)
    mkdir -p "$root"/{bin,usr/local/bin,etc,data,tmp}
    chmod 1777 "$root/tmp"
    cp /bin/busybox "$root/bin/"
    for applet in sh wget test sleep cat ls kill echo id; do ln -s busybox "$root/bin/$applet"; done
    strip -o "$root/usr/local/bin/berth" "$berth_bin" 2>/dev/null || cp "$berth_bin" "$root/usr/local/bin/berth"
    for lib in $(ldd "$berth_bin" | grep -o '/[^ ]*'); do
        mkdir -p "$root$(dirname "$lib")"
        cp "$lib" "$root$lib"
    done
    printf 'root:x:0:0:root:/root:/bin/sh\nberth:x:10001:10001::/data:/bin/sh\n' >"$root/etc/passwd"
    tar -C "$root" -cf "$root.tar" .
    podman import -q --change 'ENTRYPOINT ["/usr/local/bin/berth", "serve"]' --change 'USER 10001:10001' \
        --change 'ENV PATH=/usr/local/bin:/bin' "$root.tar" "$BENCH_IMAGE" >/dev/null
    rm -rf "$root" "$root.tar"
fi
echo "engine: $(podman --version), $DOCKER_HOST; image $BENCH_IMAGE"
