#!/usr/bin/env bash
# Disaster-recovery benchmark (issue 7).
#
# 1. Replication throughput: a ~1 GiB volume (random, incompressible files plus
#    small text files) is snapshotted into a repository, then copied to an empty
#    replica three ways in turn: berth's replication (`berth snapshot copy`, the
#    copy the backup loop makes), `restic copy` (restic 0.14, the peer), and a
#    plain `cp -a` of the repository folder (the physical floor for a copy).
#    Then one more small snapshot and an incremental copy of it.
# 2. Drill RTO at 1 GiB: `berth up` with one claim of `berth serve`, 1 GiB
#    uploaded to it, `berth backup now` (quiesced snapshot + replication), then
#    `berth dr drill` (restore from the replica into a scratch volume, canary
#    task, health check), with `restic restore` of the same snapshot from the
#    replica beside it, and `dd` for the disk's own speed.
# Everything runs on loopback; work files are removed at the end.
#
# Usage: bench/dr.sh [--build] [--size-mib N]
# Environment: BENCH_DIR=bench/out, BERTH_BIN=target/release/berth
# Prerequisites: restic (apt-get install -y restic), curl, python3.
set -euo pipefail

REPO_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH_DIR=${BENCH_DIR:-$REPO_DIR/bench/out}
BERTH_BIN=${BERTH_BIN:-$REPO_DIR/target/release/berth}
SIZE_MIB=1024

while [ $# -gt 0 ]; do
    case $1 in
    --build) (cd "$REPO_DIR" && cargo build --release --locked -p berth) ;;
    --size-mib) SIZE_MIB=$2; shift ;;
    -h | --help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done

command -v restic >/dev/null || { echo "restic is needed: apt-get install -y restic" >&2; exit 1; }
[ -x "$BERTH_BIN" ] || { echo "no berth binary at $BERTH_BIN (run with --build)" >&2; exit 1; }
WORK=$BENCH_DIR/dr
rm -rf "$WORK"
mkdir -p "$WORK"
UP_PID=
cleanup() {
    [ -n "$UP_PID" ] && kill "$UP_PID" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

export BERTH_PASSWORD=bench RESTIC_PASSWORD=bench
now() { date +%s.%N; }
secs() { python3 -c "print(f'{$2 - $1:.2f}')"; }
mbps() { python3 -c "print(f'{$1 / 1048576 / ($3 - $2):.0f}')"; }
size_of() { du -sb "$1" | cut -f1; }

echo "machine: $(nproc) cores, $(free -g | awk '/Mem/ {print $2}') GiB RAM; $("$BERTH_BIN" --version); $(restic version | cut -d' ' -f1-2)"

# The disk's own sequential write and read (the physical limit).
dd if=/dev/zero of="$WORK/dd" bs=1M count=1024 oflag=direct status=none 2>/dev/null || true
t0=$(now); dd if=/dev/zero of="$WORK/dd" bs=1M count=1024 oflag=direct conv=fsync status=none; t1=$(now)
echo "dd write 1 GiB: $(secs "$t0" "$t1") s, $(mbps 1073741824 "$t0" "$t1") MB/s"
sync; echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || true
t0=$(now); dd if="$WORK/dd" of=/dev/null bs=1M iflag=direct status=none; t1=$(now)
echo "dd read 1 GiB: $(secs "$t0" "$t1") s, $(mbps 1073741824 "$t0" "$t1") MB/s"
rm -f "$WORK/dd"

# --- 1. Replication throughput -------------------------------------------
VOL=$WORK/volume
mkdir -p "$VOL/text"
n_big=$((SIZE_MIB / 32))
for i in $(seq 1 "$n_big"); do head -c $((32 * 1048576)) /dev/urandom >"$VOL/big-$i.bin"; done
for i in $(seq 1 2000); do seq "$i" $((i + 400)) >"$VOL/text/f-$i.txt"; done
DATA=$(size_of "$VOL")
PRIMARY=$WORK/primary
"$BERTH_BIN" snapshot --repo "$PRIMARY" create "$VOL" --claim files-0 --kind scheduled >/dev/null
REPO_BYTES=$(size_of "$PRIMARY")
echo "data set: $((DATA / 1048576)) MiB in $n_big files of 32 MiB and 2000 text files; repository $((REPO_BYTES / 1048576)) MiB"

copy_berth() { "$BERTH_BIN" snapshot --repo "$PRIMARY" copy --to "$1" >/dev/null; }
copy_restic() {
    restic -r "$1" init --copy-chunker-params --from-repo "$PRIMARY" --from-password-file <(echo bench) >/dev/null 2>&1
    restic -r "$1" copy --from-repo "$PRIMARY" --from-password-file <(echo bench) --no-cache >/dev/null 2>&1
}
copy_cp() { cp -a "$PRIMARY" "$1"; sync; }

echo
echo "| replication of one snapshot (${REPO_BYTES} bytes of repository) | seconds | MB/s of repository |"
echo "|---|---|---|"
for tool in berth restic cp; do
    sync; echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || true
    DEST=$WORK/replica-$tool
    t0=$(now); "copy_$tool" "$DEST"; sync; t1=$(now)
    echo "| $tool | $(secs "$t0" "$t1") | $(mbps "$REPO_BYTES" "$t0" "$t1") |"
done

# An incremental copy: 1 % of the files changed, snapshotted and copied again.
for i in $(seq 1 20); do seq "$i" $((i + 9000)) >"$VOL/text/f-$i.txt"; done
head -c $((32 * 1048576)) /dev/urandom >"$VOL/big-1.bin"
"$BERTH_BIN" snapshot --repo "$PRIMARY" create "$VOL" --claim files-0 --kind scheduled >/dev/null
t0=$(now); copy_berth "$WORK/replica-berth"; t1=$(now)
echo "| berth, the next snapshot (1 % changed) | $(secs "$t0" "$t1") | – |"
t0=$(now); restic -r "$WORK/replica-restic" copy --from-repo "$PRIMARY" --from-password-file <(echo bench) --no-cache >/dev/null 2>&1; t1=$(now)
echo "| restic, the next snapshot (1 % changed) | $(secs "$t0" "$t1") | – |"
rm -rf "$WORK/replica-"* "$PRIMARY" "$VOL"

# --- 2. Drill RTO at 1 GiB --------------------------------------------------
SITE=$WORK/site
mkdir -p "$SITE"
cat >"$SITE/berth.toml" <<EOF
[controller]
resync_interval = "1s"
[lb]
enabled = false
[[service]]
name = "files"
desired_count = 1
[service.health_check]
interval = "500ms"
timeout = "2s"
retries = 2
start_period = "5s"
[service.autoscaling]
enabled = false
[service.backup]
interval = "1h"
[service.backup.objectives]
rpo = "1h"
rto = "5m"
[[service.backup.replica]]
name = "dr"
repo = "$SITE/replica"
EOF
"$BERTH_BIN" up --state "$SITE/state" --config "$SITE/berth.toml" >"$SITE/up.log" 2>&1 &
UP_PID=$!
B() { "$BERTH_BIN" "$@" --state "$SITE/state"; }
for _ in $(seq 1 120); do
    EP=$(B ps --json 2>/dev/null | python3 -c 'import json,sys; t=[t for t in json.load(sys.stdin) if t["last_status"]=="RUNNING" and t["health"]=="HEALTHY"]; print(t[0]["endpoint"] if t else "")' 2>/dev/null || true)
    [ -n "$EP" ] && break
    sleep 0.5
done
[ -n "$EP" ] || { echo "berth up did not start a healthy task; log:" >&2; tail -20 "$SITE/up.log" >&2; exit 1; }
for i in $(seq 1 $((SIZE_MIB / 64))); do
    head -c $((64 * 1048576)) /dev/urandom >"$WORK/upload.bin"
    curl -fsS -X PUT -H 'X-Berth-Scope: local' --data-binary @"$WORK/upload.bin" "http://$EP/files/part-$i.bin" >/dev/null
done
rm -f "$WORK/upload.bin"
t0=$(now); B backup now files-0 --json >"$WORK/backup.json"; t1=$(now)
echo
echo "| drill at ${SIZE_MIB} MiB | seconds |"
echo "|---|---|"
echo "| \`berth backup now\` (quiesce, snapshot, replicate) | $(secs "$t0" "$t1") |"
sync; echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || true
B dr drill files-0 --json >"$WORK/drill.json"
python3 - "$WORK/drill.json" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
print(f"| drill restore from the replica ({r['files']} files, {r['bytes'] / 1048576:.0f} MiB) | {r['restore_seconds']:.2f} |")
print(f"| drill RTO: start to healthy canary | {r['rto_seconds']:.2f} |")
print(f"| drill RPO (age of the replica's snapshot) | {r['rpo_seconds']:.2f} |")
print(f"| passed (objectives RTO 5 min, RPO 1 h) | {r['passed']} |")
EOF
SNAP=$(python3 -c "import json; print(json.load(open('$WORK/drill.json'))['snapshot'])")
sync; echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || true
t0=$(now); restic -r "$SITE/replica" --no-cache restore "$SNAP" --target "$WORK/restic-restore" >/dev/null; t1=$(now)
echo "| restic restore of the same snapshot from the replica (peer) | $(secs "$t0" "$t1") |"
kill "$UP_PID"; wait "$UP_PID" 2>/dev/null || true; UP_PID=
