#!/usr/bin/env bash
# Failover benchmark of `berth up`: time from `kill -9` of a task to a replacement that
# passes its health check with every file present, p50 and p99 over --runs runs, at
# volume sizes 10 MiB, 1 GiB and 4 GiB, with the same-host adopt path and with the
# restore path (`[controller] adopt = false`); `restic restore` of the same snapshot
# from berth's repository is timed beside the restore path as the peer. Then a mass
# interruption: --mass claims killed at once, time until all are replaced and healthy.
# Everything runs on loopback. Targets (issue 4): adopt p50 < 1 s at every size;
# 100 claims replaced in < 30 s.
#
# Usage: bench/failover.sh [--build] [--runs N] [--sizes 10M,1G,4G] [--paths adopt,restore] [--mass N]
# Environment: BENCH_DIR=bench/out (work files and results), BERTH_BIN=target/release/berth
# Prerequisites: python3, restic (apt-get install -y restic).
set -euo pipefail

REPO_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH_DIR=${BENCH_DIR:-$REPO_DIR/bench/out}
BERTH_BIN=${BERTH_BIN:-$REPO_DIR/target/release/berth}

ARGS=()
while [ $# -gt 0 ]; do
    case $1 in
    --build) (cd "$REPO_DIR" && cargo build --release --locked -p berth) ;;
    --runs | --sizes | --paths | --mass) ARGS+=("$1" "$2"); shift ;;
    -h | --help) sed -n '2,13p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done

command -v restic >/dev/null || { echo "restic is needed: apt-get install -y restic" >&2; exit 1; }
[ -x "$BERTH_BIN" ] || { echo "no berth binary at $BERTH_BIN (run with --build)" >&2; exit 1; }
mkdir -p "$BENCH_DIR"
echo "machine: $(nproc) cores, $(free -g | awk '/Mem/ {print $2}') GiB RAM; berth $("$BERTH_BIN" --version)"
exec python3 "$REPO_DIR/bench/failover.py" --berth "$BERTH_BIN" --work "$BENCH_DIR/failover" \
    --results "$BENCH_DIR/failover-results.md" "${ARGS[@]}"
