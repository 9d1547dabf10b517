#!/usr/bin/env bash
# Chaos soak of `berth up`: bounded load through the HTTPS load balancer (uploads,
# overwrites, deletes, downloads, each acknowledged operation recorded with its
# SHA-256) while a seeded random schedule kills tasks and berth up itself, stops
# tasks as Spot, health and user stops, takes backups, deploys and scales. At the
# end every acknowledged write must be there with its SHA-256 and every
# acknowledged delete stay deleted; `berth snapshot check --read-data` must pass,
# no orphan volume be left, and the ledger agree with the repository. Goal: 0 losses.
#
# Usage: bench/chaos.sh [--build] [--minutes 30] [--seed 20] [--workers 3] [--faults kill-task,spot,…]
# Environment: BENCH_DIR=bench/out (work files and results), BERTH_BIN=target/release/berth
# Prerequisites: python3.
set -euo pipefail

REPO_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH_DIR=${BENCH_DIR:-$REPO_DIR/bench/out}
BERTH_BIN=${BERTH_BIN:-$REPO_DIR/target/release/berth}

ARGS=()
while [ $# -gt 0 ]; do
    case $1 in
    --build) (cd "$REPO_DIR" && cargo build --release --locked -p berth) ;;
    --minutes | --seed | --workers | --faults) ARGS+=("$1" "$2"); shift ;;
    -h | --help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done

[ -x "$BERTH_BIN" ] || { echo "no berth binary at $BERTH_BIN (run with --build)" >&2; exit 1; }
mkdir -p "$BENCH_DIR"
echo "machine: $(nproc) cores, $(free -g | awk '/Mem/ {print $2}') GiB RAM; berth $("$BERTH_BIN" --version)"
exec python3 "$REPO_DIR/bench/chaos.py" --berth "$BERTH_BIN" --work "$BENCH_DIR/chaos" \
    --results "$BENCH_DIR/chaos-results.md" "${ARGS[@]}"
