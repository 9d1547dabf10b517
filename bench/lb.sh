#!/usr/bin/env bash
# Load balancer benchmark of `berth up`: requests per second and MB/s through the
# load balancer's HTTPS listener against one task directly, in one run, on loopback.
# wrk on GET /health and on GET of a 1 MiB file; curl for one large upload and one
# large download each way; the `berth up` process's peak memory around the upload
# through it. Target (issue 5): at least 0.8x of direct on both.
#
# Usage: bench/lb.sh [--build] [--seconds N] [--big-mib N]
# Environment: BENCH_DIR=bench/out (work files and results), BERTH_BIN=target/release/berth
# Prerequisites: python3, curl, wrk (apt-get install -y wrk curl).
set -euo pipefail

REPO_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH_DIR=${BENCH_DIR:-$REPO_DIR/bench/out}
BERTH_BIN=${BERTH_BIN:-$REPO_DIR/target/release/berth}

ARGS=()
while [ $# -gt 0 ]; do
    case $1 in
    --build) (cd "$REPO_DIR" && cargo build --release --locked -p berth) ;;
    --seconds | --big-mib) ARGS+=("$1" "$2"); shift ;;
    -h | --help) sed -n '2,10p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done

for tool in wrk curl python3; do
    command -v "$tool" >/dev/null || { echo "$tool is needed: apt-get install -y wrk curl python3" >&2; exit 1; }
done
[ -x "$BERTH_BIN" ] || { echo "no berth binary at $BERTH_BIN (run with --build)" >&2; exit 1; }
mkdir -p "$BENCH_DIR"
echo "machine: $(nproc) cores, $(free -g | awk '/Mem/ {print $2}') GiB RAM; berth $("$BERTH_BIN" --version)"
exec python3 "$REPO_DIR/bench/lb.py" --berth "$BERTH_BIN" --work "$BENCH_DIR/lb" \
    --results "$BENCH_DIR/lb-results.md" ${ARGS[@]+"${ARGS[@]}"}
