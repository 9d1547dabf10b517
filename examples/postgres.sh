#!/usr/bin/env bash
# PostgreSQL under `berth up`: a real third-party workload as a container task on its
# persistent volume. The image is made offline from Debian's PostgreSQL 15 (its server
# binaries and the libraries ldd names) and busybox; each task initializes the database on
# its volume the first time and serves it on 5432, published on 127.0.0.1. The script
# commits rows, takes a scheduled backup quiesced by a command hook (CHECKPOINT), then a
# Spot stop and a `kill -9` of the container's postgres: after each, every committed row is
# there. Everything runs on loopback; the state folder is a temporary one.
#
# Usage: examples/postgres.sh [--keep]   (--keep leaves the state folder for a look)
# Prerequisites (as root): apt-get install -y postgresql-15 podman runc slirp4netns busybox-static curl;
# a berth binary (BERTH_BIN, default target/release/berth; `cargo build --release -p berth`).
set -euo pipefail

REPO_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BERTH_BIN=${BERTH_BIN:-$REPO_DIR/target/release/berth}
PG=/usr/lib/postgresql/15
KEEP=${1:-}
[ -x "$BERTH_BIN" ] || { echo "no berth binary at $BERTH_BIN (cargo build --release -p berth)" >&2; exit 1; }
[ -x "$PG/bin/postgres" ] || { echo "PostgreSQL 15 is needed: apt-get install -y postgresql-15" >&2; exit 1; }
command -v psql >/dev/null || { echo "psql is needed: apt-get install -y postgresql-client-15" >&2; exit 1; }

# The engine (Podman on a socket of its own), as the container benchmarks ready it.
# shellcheck source=bench/container-engine.sh
source "$REPO_DIR/bench/container-engine.sh" "$BERTH_BIN" >/dev/null

IMAGE=localhost/berth-example-postgres:15-2
if ! podman image exists "$IMAGE"; then
    echo "== building $IMAGE offline from $PG"
    root=$(mktemp -d)
    mkdir -p "$root"/{bin,etc,tmp,data,usr/local/bin,usr/share/postgresql}
    chmod 1777 "$root/tmp"
    cp /bin/busybox "$root/bin/"
    for applet in sh test cat ls echo id sleep mkdir; do ln -s busybox "$root/bin/$applet"; done
    mkdir -p "$root$PG"
    cp -a "$PG/bin" "$PG/lib" "$root$PG/"
    cp -a /usr/share/postgresql/15 "$root/usr/share/postgresql/"
    cp -a /usr/share/postgresql-common "$root/usr/share/" 2>/dev/null || true
    for binary in "$PG"/bin/* "$PG"/lib/*.so; do
        for lib in $(ldd "$binary" 2>/dev/null | grep -o '/[^ ]*' || true); do
            [ -e "$root$lib" ] && continue
            mkdir -p "$root$(dirname "$lib")"
            cp -L "$lib" "$root$lib"
        done
    done
    printf 'root:x:0:0:root:/root:/bin/sh\npostgres:x:10001:10001::/data:/bin/sh\n' >"$root/etc/passwd"
    printf 'root:x:0:\npostgres:x:10001:\n' >"$root/etc/group"
    # Initialize on the volume the first time, then run the server as the container's pid 1.
    cat >"$root/usr/local/bin/pg-entry" <<EOF
#!/bin/sh
set -e
export PGDATA="\$STORAGE_PATH/pgdata"
if [ ! -s "\$PGDATA/PG_VERSION" ]; then
    $PG/bin/initdb -D "\$PGDATA" -U postgres --auth=trust --no-locale -E UTF8 >/dev/null
    # Connections come through the engine's bridge (published on 127.0.0.1 only).
    echo "host all all 0.0.0.0/0 trust" >>"\$PGDATA/pg_hba.conf"
fi
exec $PG/bin/postgres -D "\$PGDATA" -c listen_addresses='*' -p 5432 -c unix_socket_directories=/tmp
EOF
    chmod 755 "$root/usr/local/bin/pg-entry"
    tar -C "$root" -cf "$root.tar" .
    # SIGINT is PostgreSQL's fast shutdown (SIGTERM waits for every client to leave).
    podman import -q --change 'ENTRYPOINT ["/usr/local/bin/pg-entry"]' --change 'USER 10001:10001' \
        --change 'STOPSIGNAL SIGINT' --change "ENV PATH=$PG/bin:/bin TZ=UTC" "$root.tar" "$IMAGE" >/dev/null
    rm -rf "$root" "$root.tar"
fi

WORK=$(mktemp -d /tmp/berth-postgres-XXXX)
cleanup() {
    "$BERTH_BIN" down --state "$WORK/.berth" >/dev/null 2>&1 || true
    wait 2>/dev/null || true
    [ "$KEEP" = --keep ] && echo "state kept in $WORK" || rm -rf "$WORK"
}
trap cleanup EXIT
cat >"$WORK/berth.toml" <<EOF
[controller]
resync_interval = "2s"
[lb]
enabled = false
[[service]]
name = "pg"
desired_count = 1
image = "$IMAGE"
port = 5432
cpu = 512
memory = 512
stop_timeout = "20s"
[service.health_check]
command = ["CMD", "pg_isready", "-h", "127.0.0.1", "-p", "5432", "-U", "postgres"]
interval = "500ms"
timeout = "5s"
retries = 3
start_period = "30s"
[service.autoscaling]
enabled = false
[service.backup]
interval = "1h"
hook = "command"
# Run on this machine with the task's environment; BERTH_TASK_ENDPOINT is 127.0.0.1:PORT.
quiesce_command = ["sh", "-c", "psql -X -q -h 127.0.0.1 -p \${BERTH_TASK_ENDPOINT##*:} -U postgres -c CHECKPOINT"]
EOF

berth() { "$BERTH_BIN" "$@" --state "$WORK/.berth"; }
endpoint() { berth ps --json | python3 -c 'import json,sys; t=[t for t in json.load(sys.stdin) if t["claim"]=="pg-0" and t["last_status"]=="RUNNING" and t["health"]=="HEALTHY"]; print(t[0]["endpoint"] if t else "")'; }
generation() { berth claims --json | python3 -c 'import json,sys; print([c for c in json.load(sys.stdin) if c["name"]=="pg-0"][0]["generation"])'; }
wait_serving() { # wait_serving MIN_GENERATION: the endpoint of a healthy task of pg-0 at that generation or later
    for _ in $(seq 1200); do
        local ep gen
        ep=$(endpoint 2>/dev/null || true)
        gen=$(generation 2>/dev/null || echo 0)
        if [ -n "$ep" ] && [ "$gen" -ge "$1" ]; then echo "$ep"; return; fi
        sleep 0.1
    done
    echo "pg-0 not serving at generation $1; see $WORK/up.log" >&2; exit 1
}
sql() { psql -X -q -t -A -h 127.0.0.1 -p "${1##*:}" -U postgres -c "$2"; }

BERTH_PASSWORD=example "$BERTH_BIN" up --state "$WORK/.berth" --config "$WORK/berth.toml" >"$WORK/up.log" 2>&1 &
ep=$(wait_serving 1)
echo "== pg-0 generation $(generation) serves on $ep"
sql "$ep" "CREATE TABLE orders (id bigserial PRIMARY KEY, item text NOT NULL, at timestamptz DEFAULT now())"
sql "$ep" "INSERT INTO orders (item) SELECT 'item-' || g FROM generate_series(1, 1000) g"
echo "committed: $(sql "$ep" "SELECT count(*) FROM orders") rows"

echo "== a scheduled backup now, quiesced by the command hook (CHECKPOINT)"
berth backup now pg-0

sql "$ep" "INSERT INTO orders (item) SELECT 'after-backup-' || g FROM generate_series(1, 500) g"
committed=$(sql "$ep" "SELECT count(*) FROM orders")
echo "committed: $committed rows"

echo "== Spot stop of the task"
task=$(berth ps --json | python3 -c 'import json,sys; print([t for t in json.load(sys.stdin) if t["claim"]=="pg-0" and t["last_status"]=="RUNNING"][0]["arn"])')
gen=$(generation)
berth stop-task "$task" --reason spot >/dev/null
ep=$(wait_serving $((gen + 1)))
echo "pg-0 generation $(generation) serves on $ep: $(sql "$ep" "SELECT count(*) FROM orders") rows (committed $committed)"
[ "$(sql "$ep" "SELECT count(*) FROM orders")" = "$committed" ] || { echo "rows lost" >&2; exit 1; }

sql "$ep" "INSERT INTO orders (item) SELECT 'before-kill-' || g FROM generate_series(1, 250) g"
committed=$(sql "$ep" "SELECT count(*) FROM orders")
echo "committed: $committed rows"

echo "== kill -9 of the container's postgres"
pid=$(berth ps --json | python3 -c 'import json,sys; print([t for t in json.load(sys.stdin) if t["claim"]=="pg-0" and t["last_status"]=="RUNNING"][0]["pid"])')
gen=$(generation)
kill -9 "$pid"
ep=$(wait_serving $((gen + 1)))
echo "pg-0 generation $(generation) serves on $ep: $(sql "$ep" "SELECT count(*) FROM orders") rows (committed $committed)"
[ "$(sql "$ep" "SELECT count(*) FROM orders")" = "$committed" ] || { echo "rows lost" >&2; exit 1; }

echo "== the claim's history"
berth claim history pg-0
echo "every committed row survived"
