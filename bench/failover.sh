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
# With --runtimes process,container the same cells run with container tasks too (the
# `berth serve` image made offline by bench/container-engine.sh, on Podman), next to the
# floor: the engine's own `podman run` of that image until it answers.
#
# Usage: bench/failover.sh [--build] [--runs N] [--sizes 10M,1G,4G] [--paths adopt,restore] [--mass N]
#                          [--runtimes process,container] [--defaults] [--background 2s]
# --background sets the service's background_snapshots (issue 23): the first failover
# after writing the data is timed once a background snapshot holds it.
# --defaults adds the shipped-defaults scenario (issue 23): one task, the blog's health
# check settings and the load balancer's, first `berth up` → /health through HTTPS, and
# Spot stop → an uploaded file downloads through the load balancer again.
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
    --runs | --sizes | --paths | --mass | --background) ARGS+=("$1" "$2"); shift ;;
    --runtimes) RUNTIMES=$2; ARGS+=("$1" "$2"); shift ;;
    --defaults) ARGS+=("$1") ;;
    -h | --help) sed -n '2,23p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done

command -v restic >/dev/null || { echo "restic is needed: apt-get install -y restic" >&2; exit 1; }
[ -x "$BERTH_BIN" ] || { echo "no berth binary at $BERTH_BIN (run with --build)" >&2; exit 1; }
mkdir -p "$BENCH_DIR"
if [[ ${RUNTIMES:-} == *container* ]]; then
    # shellcheck source=bench/container-engine.sh
    source "$REPO_DIR/bench/container-engine.sh" "$BERTH_BIN"
    ARGS+=(--image "$BENCH_IMAGE")
fi
echo "machine: $(nproc) cores, $(free -g | awk '/Mem/ {print $2}') GiB RAM; berth $("$BERTH_BIN" --version)"
exec python3 "$REPO_DIR/bench/failover.py" --berth "$BERTH_BIN" --work "$BENCH_DIR/failover" \
    --results "$BENCH_DIR/failover-results.md" "${ARGS[@]}"
