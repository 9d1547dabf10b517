#!/usr/bin/env bash
# Benchmark berth's snapshots against restic and borg on one generated data set, in one
# run, side by side: first snapshot into a fresh repository, a snapshot with nothing
# changed, a snapshot after changing ~1 % of the files, and a restore of the latest
# snapshot into an empty folder (verified against the source). berth also gets the
# same-host adopt (`berth volume create --adopt ... --from ...`) timed at two sizes.
# Nothing here uses the network. Writes everything to $BENCH_DIR (default bench/out/,
# gitignored) and the results table to $BENCH_DIR/snapshots-results.md.
#
# Usage: bench/snapshots.sh [--small] [--build] [--peers-only] [--skip-adopt]
#   --small       ~200 MiB data set instead of ~2 GiB (quick run); adopt at that size only
#   --build       run `cargo build --release` first
#   --peers-only  run without berth (its cells say "not run"); for developing the script
#   --skip-adopt  run berth's snapshots but not the volume adopt part
#
# Environment (defaults):
#   BENCH_DIR=bench/out  BERTH_BIN=target/release/berth
#   BENCH_TIMEOUT=3600 (seconds; the whole run stops by itself after this)
#
# Data sets (generated once, deterministically, reused while unchanged; ~1 min for 2 GiB):
#   $BENCH_DIR/snap-data (~2 GiB) and $BENCH_DIR/snap-data-small (~200 MiB); the ~1 %
#   change is undone at the end of a run (or at the start of the next one).
#
# Prerequisites: apt-get install -y restic borgbackup time jq python3 (rsync optional).
set -euo pipefail

REPO_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH_DIR=${BENCH_DIR:-$REPO_DIR/bench/out}
BERTH_BIN=${BERTH_BIN:-$REPO_DIR/target/release/berth}
BENCH_TIMEOUT=${BENCH_TIMEOUT:-3600}

SMALL=0
BUILD=0
PEERS_ONLY=0
SKIP_ADOPT=0
for arg in "$@"; do
    case $arg in
    --small) SMALL=1 ;;
    --build) BUILD=1 ;;
    --peers-only) PEERS_ONLY=1 ;;
    --skip-adopt) SKIP_ADOPT=1 ;;
    -h | --help)
        sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
        exit 0
        ;;
    *)
        echo "unknown argument: $arg (try --help)" >&2
        exit 2
        ;;
    esac
done

GEN_VERSION=snapgen-v1 # bump when the generator changes: the data sets are regenerated
FULL_DATA=$BENCH_DIR/snap-data
SMALL_DATA=$BENCH_DIR/snap-data-small
if ((SMALL)); then
    DATA=$SMALL_DATA
    SCALE=small
    DD_MIB=512
    ADOPT_SIZES=(small)
else
    DATA=$FULL_DATA
    SCALE=full
    DD_MIB=2048
    ADOPT_SIZES=(full small)
fi
WORK=$BENCH_DIR/snap-work # repositories, caches, restore targets, berth's state
LOG_DIR=$BENCH_DIR/snap-logs
RESULTS=$BENCH_DIR/snapshots-results.md
DD_FILE=$BENCH_DIR/dd.bin
GEN_PY=$BENCH_DIR/snapgen.py
TOOLS=(berth restic borg)

# every tool reads its secrets and locations from the environment, all under $WORK
export RESTIC_PASSWORD=bench-snapshots RESTIC_REPOSITORY=$WORK/restic-repo
RESTIC_CACHE=$WORK/restic-cache
export BORG_PASSPHRASE=bench-snapshots BORG_REPO=$WORK/borg-repo BORG_BASE_DIR=$WORK/borg-home
export BERTH_PASSWORD=bench-snapshots BERTH_STATE=$WORK/berth-state BERTH_REPOSITORY=$WORK/berth-repo
export BERTH_LOG_FORMAT=text

declare -A R=()     # results: key -> value
NOTES=()            # free-text notes for the report
FAILURES=()         # wrong results (restore mismatch, berth errors): the run exits 1
VERIFIED_TREES=()   # restored trees equal to the source, removed once every tool has restored
WATCHDOG_PID=
DEADLINE=$(($(date +%s) + BENCH_TIMEOUT))
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)

log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() {
    printf '\nERROR: %s\n' "$*" >&2
    exit 1
}
now() { date +%s.%N; }
calc() { awk "BEGIN { printf \"$1\", ($2) }"; } # calc FORMAT EXPR
is_num() { [[ ${1:-} =~ ^[0-9]+([.][0-9]+)?([eE][-+]?[0-9]+)?$ ]]; }
remaining() { # seconds left before the time limit, at least 1
    local r=$((DEADLINE - $(date +%s)))
    ((r > 1)) || r=1
    echo "$r"
}
mib_of_dir() { calc '%.1f' "$(du -sb "$1" | cut -f1) / 1048576"; }
first_line() { "$@" 2>&1 | head -n 1 || true; }
fail() { # MESSAGE : a wrong result; reported loudly, the run goes on and exits 1
    printf '\n*** FAILURE: %s\n\n' "$1" >&2
    FAILURES+=("$1")
}

cleanup() {
    local rc=$?
    set +e
    trap - EXIT INT TERM
    if [[ -n $WATCHDOG_PID ]]; then
        kill -TERM "$WATCHDOG_PID" 2>/dev/null
        wait "$WATCHDOG_PID" 2>/dev/null
    fi
    rm -f "$DD_FILE" 2>/dev/null
    if [[ -f $DATA.state && $(cat "$DATA.state") == *changed ]]; then
        log "note: $DATA still holds the ~1 % change; the next run undoes it"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT
trap 'log "stopped by SIGTERM (or the ${BENCH_TIMEOUT}s time limit)"; exit 143' TERM

# ---------------------------------------------------------------- prerequisites
missing=()
for tool in restic borg python3 jq awk timeout dd du sha256sum xargs sync find; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
[[ -x /usr/bin/time ]] || missing+=("/usr/bin/time")
if ((${#missing[@]})); then
    die "missing: ${missing[*]}. Install with: apt-get install -y restic borgbackup time jq python3 coreutils findutils"
fi
env -C / true 2>/dev/null || die "this script needs 'env -C' (GNU coreutils 8.28 or newer)"
restic_ver=$(restic version 2>/dev/null | awk '{ print $2 }')
borg_ver=$(borg --version 2>/dev/null | awk '{ print $2 }')
[[ $restic_ver == 0.1[4-9]* ]] || log "warning: restic $restic_ver; this benchmark was written for 0.14"
[[ $borg_ver == 1.2* ]] || log "warning: borg $borg_ver; this benchmark was written for 1.2"

if ((BUILD)); then
    log "cargo build --release"
    (cd "$REPO_DIR" && timeout 1800 cargo build --release) || die "cargo build --release failed"
fi
RUN_BERTH=1
RUN_ADOPT=1
if ((PEERS_ONLY)); then
    RUN_BERTH=0
    RUN_ADOPT=0
elif [[ ! -x $BERTH_BIN ]]; then
    die "berth binary not found at $BERTH_BIN. Build it: (cd $REPO_DIR && cargo build --release), or pass --build; set BERTH_BIN for another path; --peers-only runs without berth"
elif ! timeout 10 "$BERTH_BIN" snapshot create --help 2>&1 | grep -q -- --claim; then
    die "'$BERTH_BIN snapshot create --help' failed or does not mention --claim: this binary has no snapshot subcommand yet (rebuild, or --peers-only)"
elif ((SKIP_ADOPT)); then
    RUN_ADOPT=0
elif ! timeout 10 "$BERTH_BIN" volume create --help 2>&1 | grep -q -- --adopt; then
    die "'$BERTH_BIN volume create --help' failed or does not mention --adopt: this binary has no volume adopt yet (rebuild, or --skip-adopt, or --peers-only)"
fi

mkdir -p "$BENCH_DIR" "$WORK" "$LOG_DIR"
rm -f "$LOG_DIR"/*

# the whole run stops by itself: every tool runs under `timeout` with the time left, and
# this watchdog ends the script itself
(
    trap 'kill "$sp" 2>/dev/null; exit 0' TERM
    sleep "$BENCH_TIMEOUT" &
    sp=$!
    wait "$sp"
    echo "time limit of ${BENCH_TIMEOUT}s reached, stopping" >&2
    kill -TERM $$
) &
WATCHDOG_PID=$!

# ---------------------------------------------------------------- data set
# snapgen.py generate|change|revert DIR full|small. Deterministic: every file's content
# comes from random.Random seeded with its name, so a change can be undone exactly.
cat >"$GEN_PY" <<'PY'
import os, random, shutil, string, sys

mode, root, scale = sys.argv[1], sys.argv[2], sys.argv[3]
MiB = 1 << 20
if scale == "full":
    N_SMALL, N_DIRS, N_MIB, N_BIG, BIG = 10000, 100, 200, 3, 512 * MiB
else:
    N_SMALL, N_DIRS, N_MIB, N_BIG, BIG = 1000, 20, 20, 3, 48 * MiB
MIB_MIN, MIB_MAX = 1 * MiB, 4 * MiB
DUP_EVERY = 10      # every 10th MiB file has a copy under dups/
CHANGE_EVERY = 100  # ~1 % of the files change

rng = random.Random("berth-bench-words")
WORDS = ["".join(rng.choices(string.ascii_lowercase, k=rng.randint(2, 10))) for _ in range(3000)]
rng = random.Random("berth-bench-lines")
LEVELS = ["DEBUG", "INFO", "INFO", "INFO", "WARN", "ERROR"]
LINES = [
    "2024-%02d-%02dT%02d:%02d:%02d %s %s: %s" % (
        rng.randint(1, 12), rng.randint(1, 28), rng.randint(0, 23), rng.randint(0, 59), rng.randint(0, 59),
        rng.choice(LEVELS), rng.choice(WORDS), " ".join(rng.choices(WORDS, k=rng.randint(4, 14))))
    for _ in range(20000)
]

def text(seed, size):
    r = random.Random(seed)
    out = b""
    while len(out) < size:
        out += ("\n".join(r.choices(LINES, k=size // 40 + 16)) + "\n").encode()
    return out[:size]

def rand_chunk(tag, k, n):
    return random.Random("%s#%d" % (tag, k)).randbytes(n)

def write(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)

def small_path(i):
    return os.path.join(root, "small", "d%03d" % (i % N_DIRS), "f%05d.txt" % i)

def small_data(i, gen=0):
    size = random.Random("small-size-%d" % i).randint(1024, 8192)
    return text("small-%d-v%d" % (i, gen), size)

def mib_path(j):
    return os.path.join(root, "mib", ("text-%03d.txt" if j % 2 == 0 else "rand-%03d.bin") % j)

def mib_data(j, gen=0):
    size = random.Random("mib-size-%d" % j).randint(MIB_MIN, MIB_MAX)
    if j % 2 == 0:
        return text("mib-%d-v%d" % (j, gen), size)
    tag = "mib-%d-v%d" % (j, gen)
    return b"".join(rand_chunk(tag, k, min(MiB, size - k * MiB)) for k in range((size + MiB - 1) // MiB))

def big_path(b):
    return os.path.join(root, "big", "big-%d.bin" % b)

def changed_small():
    return [i for i in range(N_SMALL) if i % CHANGE_EVERY == 0]

def changed_mib():  # one text and one random file per 200
    return [j for j in range(N_MIB) if (j // 2) % CHANGE_EVERY == 0]

BIG_CHANGE_AT = BIG // 2  # MiB-aligned: one MiB of big-0 is overwritten in place

if mode == "generate":
    for i in range(N_SMALL):
        write(small_path(i), small_data(i))
    for j in range(N_MIB):
        write(mib_path(j), mib_data(j))
        if j % DUP_EVERY == 0:
            dst = os.path.join(root, "dups", "copy-of-" + os.path.basename(mib_path(j)))
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            shutil.copyfile(mib_path(j), dst)
    for b in range(N_BIG):
        os.makedirs(os.path.dirname(big_path(b)), exist_ok=True)
        with open(big_path(b), "wb") as f:
            for k in range(BIG // MiB):
                f.write(rand_chunk("big-%d" % b, k, MiB))
elif mode in ("change", "revert"):
    gen = 1 if mode == "change" else 0
    n = 0
    for i in changed_small():
        write(small_path(i), small_data(i, gen)); n += 1
    for j in changed_mib():
        write(mib_path(j), mib_data(j, gen)); n += 1
    data = random.Random("big-0-change").randbytes(MiB) if gen else rand_chunk("big-0", BIG_CHANGE_AT // MiB, MiB)
    fd = os.open(big_path(0), os.O_WRONLY)
    try:
        os.pwrite(fd, data, BIG_CHANGE_AT)
    finally:
        os.close(fd)
    n += 1
    print(n)
else:
    sys.exit("unknown mode " + mode)
PY

gen() { timeout "$(remaining)" python3 "$GEN_PY" "$@"; }

ensure_data() { # DIR SCALE : generated and unchanged
    local dir=$1 scale=$2 st=$1.state want="$GEN_VERSION $2" cur='' t0
    [[ -f $st ]] && cur=$(cat "$st")
    if [[ -d $dir && $cur == "$want clean" ]]; then
        log "reusing data set $dir"
        return
    fi
    if [[ -d $dir && $cur == "$want changed" ]]; then
        log "undoing the ~1 % change of a previous run in $dir"
        gen revert "$dir" "$scale" >/dev/null || die "could not undo the change in $dir (remove it to regenerate)"
        echo "$want clean" >"$st"
        return
    fi
    log "generating the $scale data set in $dir"
    rm -rf "$dir" "$dir.tmp" "$st"
    t0=$(now)
    gen generate "$dir.tmp" "$scale" || die "data set generation failed"
    mv "$dir.tmp" "$dir"
    echo "$want clean" >"$st"
    log "  -> $(calc '%.0f' "$(now) - $t0") s"
}

data_bytes() { find "$1" -type f -printf '%s\n' | awk '{ s += $1 } END { printf "%.0f", s }'; }
data_files() { find "$1" -type f | wc -l; }

# manifest DIR OUT : OUT.tree (path, type, mode, size), OUT.sha (sha256 of every file),
# OUT.mtime (path, mtime of files); the folder itself is left out
manifest() {
    (cd "$1" && find . -mindepth 1 \( -type f -printf '%p\tf %m %s\n' \) -o -printf '%p\t%y %m\n' |
        LC_ALL=C sort) >"$2.tree"
    (cd "$1" && find . -type f -print0 | xargs -0 -r -P "$(nproc)" -n 200 sha256sum |
        LC_ALL=C sort -k2) >"$2.sha"
    (cd "$1" && find . -type f -printf '%p\t%T@\n' | LC_ALL=C sort) >"$2.mtime"
}

# verify KEY DIR SRC_MANIFEST : fails loudly unless DIR holds the same tree and bytes
verify() {
    local key=$1 dir=$2 src=$3 out=$LOG_DIR/$1.restored d t0
    log "verifying $dir against the source (sha256 of every file, paths, types, modes)"
    t0=$(now)
    if [[ ! -d $dir ]]; then
        R[verified.$key]=MISSING
        fail "$key: restore target $dir does not exist"
        return 1
    fi
    manifest "$dir" "$out"
    if cmp -s "$src.tree" "$out.tree" && cmp -s "$src.sha" "$out.sha"; then
        R[verified.$key]=yes
        log "  -> identical ($(calc '%.0f' "$(now) - $t0") s)"
        d=$(diff "$src.mtime" "$out.mtime" | grep -c '^>' || true)
        ((d == 0)) || NOTES+=("$key: restored tree is correct, but $d files have another mtime than the source")
        return 0
    fi
    R[verified.$key]=MISMATCH
    {
        echo "--- tree (path type mode size): < source, > restored"
        diff "$src.tree" "$out.tree" | head -n 20
        echo "--- content (sha256): < source, > restored"
        diff "$src.sha" "$out.sha" | head -n 20
    } >&2 || true
    fail "$key: restored tree differs from the source (kept in $dir; manifests $src.* and $out.*)"
    return 1
}

# ---------------------------------------------------------------- measurement
# timed KEY CMD... : sync, then CMD under timeout and /usr/bin/time. Sets SECS (wall time
# of the command, including the start of the timeout and time wrappers) and RSS_MIB (peak
# RSS). stdout and stderr go to $LOG_DIR/KEY.out and KEY.err. Returns CMD's status.
timed() {
    local key=$1 t0 t1 rc=0 tf=$LOG_DIR/$1.time
    shift
    timeout 300 sync || true
    printf '%s\n' "$*" >"$LOG_DIR/$key.cmd"
    t0=$(now)
    timeout -k 10 "$(remaining)" /usr/bin/time -f %M -o "$tf" "$@" >"$LOG_DIR/$key.out" 2>"$LOG_DIR/$key.err" || rc=$?
    t1=$(now)
    SECS=$(calc '%.3f' "$t1 - $t0")
    RSS_MIB=
    if [[ -s $tf ]] && is_num "$(tail -n 1 "$tf")"; then RSS_MIB=$(calc '%.1f' "$(tail -n 1 "$tf") / 1024"); fi
    if ((rc == 124 || rc == 137)); then log "  $key: killed by the ${BENCH_TIMEOUT}s time limit"; fi
    return "$rc"
}

# peer KEY CMD... : a restic or borg step; failing is fatal (the environment is broken)
peer() {
    local key=$1
    shift
    log "$key: $*"
    local rc=0
    timed "$key" "$@" || rc=$?
    if ((rc)); then
        tail -n 20 "$LOG_DIR/$key.err" >&2
        die "$key failed (exit $rc; log $LOG_DIR/$key.err)"
    fi
    log "  -> $SECS s, peak RSS $RSS_MIB MiB"
}

BERTH_OK=1
# berth_step KEY CMD... : a berth step; failing marks berth's later steps as not run
berth_step() {
    local key=$1 rc=0
    shift
    ((BERTH_OK)) || return 1
    log "$key: berth ${*:2}"
    timed "$key" "$@" || rc=$?
    if ((rc)); then
        tail -n 20 "$LOG_DIR/$key.err" >&2
        fail "$key: berth exited with status $rc: $(grep -v '^Command exited' "$LOG_DIR/$key.err" | tail -n 1 | cut -c1-300) (log $LOG_DIR/$key.err)"
        BERTH_OK=0
        return 1
    fi
    log "  -> $SECS s, peak RSS $RSS_MIB MiB"
}

json_field() { # KEY FIELD : a field of the JSON berth printed for step KEY
    jq -er ".$2 // empty" "$LOG_DIR/$1.out" 2>/dev/null
}

record() { # PREFIX TOOL [REPO_DIR] : SECS/RSS_MIB (and the repository size) into R
    R[$1_s.$2]=$SECS
    R[$1_rss.$2]=$RSS_MIB
    if [[ -n ${3:-} ]]; then R[$1_repo.$2]=$(mib_of_dir "$3"); fi
}

snapshot() { # TOOL STEP(first|unch|chg) : one snapshot of $DATA
    local t=$1 step=$2 key=$2-snapshot-$1
    case $t in
    restic)
        peer "$key" env -C "$DATA" restic --cache-dir "$RESTIC_CACHE" backup --host bench .
        record "$step" restic "$RESTIC_REPOSITORY"
        ;;
    borg)
        peer "$key" env -C "$DATA" borg create --stats "::$step" .
        record "$step" borg "$BORG_REPO"
        ;;
    berth)
        berth_step "$key" "$BERTH_BIN" snapshot create "$DATA" --claim bench-data --json || return 0
        record "$step" berth "$BERTH_REPOSITORY"
        BERTH_LATEST=$(json_field "$key" id) || {
            fail "$key: berth printed no id ($LOG_DIR/$key.out)"
            BERTH_OK=0
            return 0
        }
        local files
        files=$(json_field "$key" files || echo "?")
        [[ $files == "$DATA_FILES" ]] ||
            NOTES+=("berth $step snapshot reported $files files; the data set has $DATA_FILES")
        log "  berth: id $BERTH_LATEST, files $files, bytes $(json_field "$key" bytes || echo ?), data_added $(json_field "$key" data_added || echo ?), duration_secs $(json_field "$key" duration_secs || echo ?)"
        ;;
    esac
    if [[ $step == first && -n ${R[first_s.$t]:-} ]]; then
        R[first_mbs.$t]=$(calc '%.1f' "$DATA_BYTES / 1000000 / ${R[first_s.$t]}")
    fi
}

restore() { # TOOL : restore the latest snapshot into an empty folder, verify it
    local t=$1 key=restore-$1 target=$WORK/restore-$1 rc=0 t0
    rm -rf "$target"
    case $t in
    restic) peer "$key" restic --cache-dir "$RESTIC_CACHE" restore latest --target "$target" ;;
    borg)
        mkdir -p "$target"
        peer "$key" env -C "$target" borg extract ::chg
        ;;
    berth)
        [[ -n ${BERTH_LATEST:-} ]] || return 0
        berth_step "$key" "$BERTH_BIN" snapshot restore "$BERTH_LATEST" "$target" || return 0
        ;;
    esac
    record rest "$t"
    R[rest_mbs.$t]=$(calc '%.1f' "$DATA_BYTES / 1000000 / $SECS")
    t0=$(now)
    timeout 600 sync || true
    R[rest_sync.$t]=$(calc '%.1f' "$(now) - $t0")
    # The tree stays until every tool has restored: ext4 skips inodes freed in the last
    # seconds when it allocates, and 10,000 just-deleted files made the next tool's
    # restore spend a third of its CPU time in that scan (perf: recently_deleted).
    # A tree that differs stays for inspection, as the failure message says.
    if verify "$key" "$target" "$LOG_DIR/source-changed"; then VERIFIED_TREES+=("$target"); fi
}

# ---------------------------------------------------------------- 1: the disk's limits
# dd's write speed is what berth's restore is held against, so it gets the best of three
# runs, each started with no dirty pages in the cache
log "dd: write $DD_MIB MiB with conv=fsync (best of 3), then read it back"
best=0
dd_runs=()
for run in 1 2 3; do
    rm -f "$DD_FILE"
    sync
    t0=$(now)
    timeout "$(remaining)" dd if=/dev/zero of="$DD_FILE" bs=1M count="$DD_MIB" conv=fsync status=none || die "dd write failed"
    v=$(calc '%.1f' "$DD_MIB * 1048576 / 1000000 / ($(now) - $t0)")
    dd_runs+=("$v")
    log "  -> write run $run: $v MB/s"
    if [[ $(calc '%d' "$v > $best") == 1 ]]; then best=$v; fi
done
R[dd_write]=$best
if (sync && echo 3 >/proc/sys/vm/drop_caches) 2>/dev/null; then
    DD_READ_HOW="after dropping the page cache: from disk"
else
    DD_READ_HOW="page cache NOT dropped, no permission to write /proc/sys/vm/drop_caches: cached"
fi
t0=$(now)
timeout "$(remaining)" dd if="$DD_FILE" of=/dev/null bs=1M status=none || die "dd read failed"
R[dd_read]=$(calc '%.1f' "$DD_MIB * 1048576 / 1000000 / ($(now) - $t0)")
log "  -> read ${R[dd_read]} MB/s, $DD_READ_HOW"
t0=$(now)
if timeout "$(remaining)" dd if="$DD_FILE" of=/dev/null bs=1M iflag=direct status=none 2>"$LOG_DIR/dd-direct.err"; then
    R[dd_read_direct]=$(calc '%.1f' "$DD_MIB * 1048576 / 1000000 / ($(now) - $t0)")
    log "  -> read with O_DIRECT ${R[dd_read_direct]} MB/s"
else
    NOTES+=("dd iflag=direct (O_DIRECT read) failed: $(head -n 1 "$LOG_DIR/dd-direct.err")")
fi
rm -f "$DD_FILE"

# ---------------------------------------------------------------- 2: data set, fresh repositories
ensure_data "$DATA" "$SCALE"
if ((RUN_ADOPT)) && [[ " ${ADOPT_SIZES[*]} " == *" small "* && $DATA != "$SMALL_DATA" ]]; then
    ensure_data "$SMALL_DATA" small
fi
DATA_BYTES=$(data_bytes "$DATA")
DATA_FILES=$(data_files "$DATA")
log "data set: $DATA_FILES files, $(calc '%.1f' "$DATA_BYTES / 1048576") MiB; reading it into the page cache"
find "$DATA" -type f -print0 | xargs -0 -r cat >/dev/null

log "removing the repositories, caches and restore targets of earlier runs in $WORK"
rm -rf "${WORK:?}"/restic-* "${WORK:?}"/borg-* "${WORK:?}"/berth-* "${WORK:?}"/restore-*
mkdir -p "$RESTIC_CACHE" "$BORG_BASE_DIR" "$BERTH_STATE"
log "restic init, borg init -e repokey (not timed; berth creates its repository in its first snapshot)"
timeout 120 restic --cache-dir "$RESTIC_CACHE" init >"$LOG_DIR/restic-init.log" 2>&1 ||
    die "restic init failed: $(tail -n 3 "$LOG_DIR/restic-init.log")"
timeout 120 borg init -e repokey >"$LOG_DIR/borg-init.log" 2>&1 ||
    die "borg init failed: $(tail -n 3 "$LOG_DIR/borg-init.log")"
restic_repo_version=$(timeout 60 restic --cache-dir "$RESTIC_CACHE" cat config 2>/dev/null | jq -r .version || echo '?')

active_tools=()
for t in "${TOOLS[@]}"; do
    if [[ $t != berth ]] || ((RUN_BERTH)); then active_tools+=("$t"); fi
done

# ---------------------------------------------------------------- 3: first and unchanged snapshots
for t in "${active_tools[@]}"; do
    snapshot "$t" first
    snapshot "$t" unch
done

# ---------------------------------------------------------------- 4: change ~1 %, snapshot, restore
echo "$GEN_VERSION $SCALE changed" >"$DATA.state" # before the change: an interrupted change is undone next time
n=$(gen change "$DATA" "$SCALE") || die "changing the data set failed"
CHANGED_FILES=$n
log "changed $n of $DATA_FILES files (rewrote ~1 % of the small and MiB files, 1 MiB in place in one big file)"
DATA_BYTES=$(data_bytes "$DATA")
log "manifest of the changed source (sha256 of every file)"
manifest "$DATA" "$LOG_DIR/source-changed"

for t in "${active_tools[@]}"; do
    BERTH_LATEST_BEFORE=${BERTH_LATEST:-}
    snapshot "$t" chg
    if [[ $t == berth && ${BERTH_LATEST:-} == "$BERTH_LATEST_BEFORE" ]]; then BERTH_LATEST=; fi
done
for t in "${active_tools[@]}"; do
    restore "$t"
done
rm -rf "${VERIFIED_TREES[@]}"

log "undoing the change in $DATA"
gen revert "$DATA" "$SCALE" >/dev/null || die "could not undo the change in $DATA (remove it to regenerate)"
echo "$GEN_VERSION $SCALE clean" >"$DATA.state"

# ---------------------------------------------------------------- 5: berth's same-host adopt
adopt() { # SIZE : volume filled with a copy of that data set, snapshot, adopt, restore-path create
    local size=$1 src vol loc snap new_vol new_loc rvol rloc files
    if [[ $size == full ]]; then src=$FULL_DATA; else src=$SMALL_DATA; fi
    files=$(data_files "$src")
    BERTH_OK=1 # independent of the snapshot steps above: a failure there does not skip this
    berth_step "vol-create-$size" "$BERTH_BIN" volume create --claim "bench-adopt-$size" --json || return 0
    if ! vol=$(json_field "vol-create-$size" id) || ! loc=$(json_field "vol-create-$size" location); then
        fail "berth volume create printed no id/location ($LOG_DIR/vol-create-$size.out)"
        return 0
    fi
    [[ -d $loc && -z $(ls -A "$loc") ]] || {
        fail "berth volume create: location $loc is not an empty folder"
        return 0
    }
    log "copying $src into volume $vol ($loc)"
    if command -v rsync >/dev/null 2>&1; then
        timeout "$(remaining)" rsync -a "$src/" "$loc/" || die "rsync into $loc failed"
    else
        timeout "$(remaining)" cp -a "$src/." "$loc/" || die "cp -a into $loc failed"
    fi
    manifest "$loc" "$LOG_DIR/volume-$size"

    berth_step "vol-snapshot-$size" "$BERTH_BIN" volume snapshot "$vol" --json || return 0
    R[vsnap_s.$size]=$SECS
    snap=$(json_field "vol-snapshot-$size" id) || {
        fail "berth volume snapshot printed no id ($LOG_DIR/vol-snapshot-$size.out)"
        return 0
    }

    berth_step "adopt-$size" "$BERTH_BIN" volume create --claim "bench-adopt-$size" --adopt "$vol" --from "$snap" --json || return 0
    R[adopt_ms.$size]=$(calc '%.1f' "$SECS * 1000")
    R[adopt_rss.$size]=$RSS_MIB
    new_vol=$(json_field "adopt-$size" id) || true
    new_loc=$(json_field "adopt-$size" location) || true
    if [[ $(json_field "adopt-$size" adopted_from || true) == "$vol" ]]; then
        R[adopted.$size]=yes
    else
        R[adopted.$size]=no
        fail "berth volume create --adopt $vol did not adopt (adopted_from is $(jq -c .adopted_from "$LOG_DIR/adopt-$size.out" 2>/dev/null || echo '?')): it restored instead"
    fi
    if [[ -n $new_loc && -d $new_loc ]]; then
        [[ $(data_files "$new_loc") == "$files" ]] ||
            fail "adopted volume $new_vol holds $(data_files "$new_loc") files, expected $files"
    else
        fail "adopted volume's location '$new_loc' is not a folder"
    fi

    berth_step "from-create-$size" "$BERTH_BIN" volume create --claim "bench-restore-$size" --from "$snap" --json || return 0
    R[from_s.$size]=$SECS
    R[from_rss.$size]=$RSS_MIB
    rvol=$(json_field "from-create-$size" id) || true
    rloc=$(json_field "from-create-$size" location) || true
    verify "from-create-$size" "$rloc" "$LOG_DIR/volume-$size" || true

    for v in "$new_vol" "$rvol"; do
        [[ -n $v ]] || continue
        timeout 600 "$BERTH_BIN" volume delete "$v" >>"$LOG_DIR/vol-delete.log" 2>&1 ||
            NOTES+=("berth volume delete $v failed (see $LOG_DIR/vol-delete.log)")
    done
}
for size in "${ADOPT_SIZES[@]}"; do
    if [[ $size == full ]]; then d=$FULL_DATA; else d=$SMALL_DATA; fi
    if [[ -d $d ]]; then R[adopt_mib.$size]=$(calc '%.0f' "$(data_bytes "$d") / 1048576"); fi
done
if ((RUN_ADOPT)); then
    for size in "${ADOPT_SIZES[@]}"; do
        adopt "$size"
    done
fi

# ---------------------------------------------------------------- report
cell() { # KEY [FORMAT]
    local v=${R[$1]:-}
    if [[ -z $v ]]; then
        if [[ $1 == *berth || $1 == *full || $1 == *small ]] && ((!RUN_BERTH)); then
            echo "not run"
        elif [[ $1 == *full || $1 == *small ]] && ((!RUN_ADOPT)); then
            echo "not run"
        elif [[ $1 == *berth || $1 == *full || $1 == *small ]]; then
            echo "failed/not run"
        else
            echo "n/a"
        fi
    elif is_num "$v"; then
        calc "${2:-%.2f}" "$v"
    else
        echo "$v"
    fi
}
pf() { (($(calc '%d' "$1"))) && echo PASS || echo FAIL; }
# vs KEY OP [ABS_OP ABS_TARGET UNIT] : berth against restic (ratio berth/restic OP 1),
# and optionally an absolute target for berth's figure
vs() {
    local b=${R[$1.berth]:-} r=${R[$1.restic]:-} out
    if is_num "$b" && is_num "$r" && [[ $(calc '%d' "$r > 0") == 1 ]]; then
        out="$(calc '%.3f' "$b / $r")× restic (target $2 1×) $(pf "$b / $r $2 1")"
    else
        out="n/a (target berth/restic $2 1×)"
    fi
    if [[ -n ${3:-} ]]; then
        if is_num "$b"; then
            out+="; target $3 $4 $5 $(pf "$b $3 $4")"
        else
            out+="; n/a (target $3 $4 $5)"
        fi
    fi
    echo "$out"
}
vs_dd() { # KEY : berth's restore MB/s against half the disk's write speed
    local b=${R[$1.berth]:-} d=${R[dd_write]:-}
    if is_num "$b" && is_num "$d"; then
        echo "$(calc '%.2f' "$b / $d")× dd write (target >= 0.5×) $(pf "$b / $d >= 0.5")"
    else
        echo "n/a (target >= 0.5× dd write)"
    fi
}
arow() { # LABEL KEY_PREFIX FORMAT TARGET : one row of the adopt table, a cell per size
    local s sep=.
    [[ $2 == *- ]] && sep=''
    printf '| %s |' "$1"
    for s in "${ADOPT_SIZES[@]}"; do printf ' %s |' "$(cell "$2$sep$s" ${3:+"$3"})"; done
    printf ' %s |\n' "$4"
}
adopt_verdict() { # SIZE
    local v=${R[adopt_ms.$1]:-}
    if ! is_num "$v"; then
        echo "n/a (target < 50 ms, adopted)"
        return
    fi
    if [[ ${R[adopted.$1]:-} != yes ]]; then
        echo "FAIL: not adopted (restored)"
        return
    fi
    echo "target < 50 ms $(pf "$v < 50")"
}

berth_version="not run"
if ((RUN_BERTH)); then
    berth_version="$(first_line "$BERTH_BIN" --version | sed "s/^berth //") (git $(git -C "$REPO_DIR" rev-parse --short HEAD 2>/dev/null || echo 'no commit')$(git -C "$REPO_DIR" diff --quiet HEAD -- 2>/dev/null || echo ', uncommitted changes'))"
fi
fs_type=$(stat -f -c %T "$BENCH_DIR" 2>/dev/null || echo '?')
fs_dev=$(df -P "$BENCH_DIR" | awk 'NR == 2 { print $1 }')
data_mib=$(calc '%.0f' "$DATA_BYTES / 1048576")
{
    echo "# berth snapshot benchmark"
    echo
    echo "- date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
    echo "- machine: $(nproc) CPUs, $(grep -m1 '^model name' /proc/cpuinfo | sed 's/.*: //'), $(awk '/^MemTotal/ { printf "%.1f GiB RAM", $2 / 1048576 }' /proc/meminfo), kernel $(uname -r); $BENCH_DIR on $fs_dev ($fs_type); load average $LOAD_START at the start, $(cut -d' ' -f1-3 /proc/loadavg) at the end (other work on the machine skews the figures)"
    echo "- versions: berth $berth_version; restic $restic_ver (repository format v$restic_repo_version); borg $borg_ver; $(first_line python3 --version) (data generator)"
    echo "- data set ($SCALE): $DATA_FILES files, $data_mib MiB ($DATA_BYTES bytes): $(find "$DATA/small" -type f | wc -l) text files of 1–8 KiB in $(find "$DATA/small" -mindepth 1 -type d | wc -l) folders, $(find "$DATA/mib" -type f | wc -l) files of 1–4 MiB (half text-like, half random), $(find "$DATA/dups" -type f | wc -l) duplicates of MiB files, $(find "$DATA/big" -type f | wc -l) random files of $(calc '%.0f' "$(stat -c %s "$DATA/big/big-0.bin") / 1048576") MiB; deterministic (python3 random, fixed seeds); in the page cache throughout: caches are dropped only for dd's read, before the data set is read in"
    echo "- change step: $CHANGED_FILES of $DATA_FILES files rewritten (every 100th small file, 1 in 100 MiB files), plus 1 MiB overwritten in place in one big file"
    echo "- MB/s = data-set bytes / 10^6 / wall seconds; MiB = 2^20 bytes; peak RSS = \`/usr/bin/time -f %M\`; repository size = \`du -sb\`; \`sync\` before every timed step"
    echo
    echo "| measurement | berth | restic | borg | target/ratio |"
    echo "|---|---|---|---|---|"
    echo "| first snapshot, fresh repository (s) | $(cell first_s.berth) | $(cell first_s.restic) | $(cell first_s.borg) | $(vs first_s '<=') |"
    echo "| first snapshot (MB/s) | $(cell first_mbs.berth %.1f) | $(cell first_mbs.restic %.1f) | $(cell first_mbs.borg %.1f) | $(vs first_mbs '>=') |"
    echo "| first snapshot, peak RSS (MiB) | $(cell first_rss.berth %.1f) | $(cell first_rss.restic %.1f) | $(cell first_rss.borg %.1f) | $(vs first_rss '<=') |"
    echo "| repository after first snapshot (MiB) | $(cell first_repo.berth %.1f) | $(cell first_repo.restic %.1f) | $(cell first_repo.borg %.1f) | $(vs first_repo '<=') |"
    echo "| snapshot, nothing changed (s) | $(cell unch_s.berth %.3f) | $(cell unch_s.restic %.3f) | $(cell unch_s.borg %.3f) | $(vs unch_s '<=' '<' 0.5 s) |"
    echo "| snapshot, nothing changed, peak RSS (MiB) | $(cell unch_rss.berth %.1f) | $(cell unch_rss.restic %.1f) | $(cell unch_rss.borg %.1f) | $(vs unch_rss '<=') |"
    echo "| snapshot after changing ~1 % of the files (s) | $(cell chg_s.berth %.3f) | $(cell chg_s.restic %.3f) | $(cell chg_s.borg %.3f) | $(vs chg_s '<=') |"
    echo "| snapshot after the change, peak RSS (MiB) | $(cell chg_rss.berth %.1f) | $(cell chg_rss.restic %.1f) | $(cell chg_rss.borg %.1f) | $(vs chg_rss '<=') |"
    echo "| repository after the change (MiB) | $(cell chg_repo.berth %.1f) | $(cell chg_repo.restic %.1f) | $(cell chg_repo.borg %.1f) | $(vs chg_repo '<=') |"
    echo "| restore of the latest snapshot (s) | $(cell rest_s.berth) | $(cell rest_s.restic) | $(cell rest_s.borg) | $(vs rest_s '<=') |"
    echo "| restore (MB/s) | $(cell rest_mbs.berth %.1f) | $(cell rest_mbs.restic %.1f) | $(cell rest_mbs.borg %.1f) | $(vs rest_mbs '>=') ; $(vs_dd rest_mbs) |"
    echo "| restore, peak RSS (MiB) | $(cell rest_rss.berth %.1f) | $(cell rest_rss.restic %.1f) | $(cell rest_rss.borg %.1f) | $(vs rest_rss '<=') |"
    echo "| sync after the restore, not in its time (s) | $(cell rest_sync.berth %.1f) | $(cell rest_sync.restic %.1f) | $(cell rest_sync.borg %.1f) | |"
    echo "| restored tree equals the source | $(cell verified.restore-berth) | $(cell verified.restore-restic) | $(cell verified.restore-borg) | |"
    echo
    echo "Physical limits: \`dd bs=1M count=$DD_MIB\`: write with conv=fsync **$(cell dd_write %.1f) MB/s** (best of runs ${dd_runs[*]}); read $(cell dd_read %.1f) MB/s ($DD_READ_HOW); read with iflag=direct (O_DIRECT, not cached) $(cell dd_read_direct %.1f) MB/s."
    echo
    echo "berth's same-host adopt (\`berth volume create --adopt VOLUME --from SNAPSHOT\`: a stopped volume unchanged since its snapshot is taken over by rename):"
    echo
    echo "| measurement |$(for s in "${ADOPT_SIZES[@]}"; do printf ' %s (%s MiB) |' "$s" "$(cell "adopt_mib.$s" %.0f)"; done) target |"
    echo "|---|$(for _ in "${ADOPT_SIZES[@]}"; do printf -- '---|'; done)---|"
    arow "\`volume snapshot\` of the filled volume (s)" vsnap_s %.3f ""
    arow "adopt: \`volume create --adopt --from\` (ms, wall time of the command)" adopt_ms %.1f \
        "$(for s in "${ADOPT_SIZES[@]}"; do printf '%s: %s' "$s" "$(adopt_verdict "$s")"; [[ $s == "${ADOPT_SIZES[-1]}" ]] || printf '; '; done)"
    arow "adopt: adopted_from set" adopted "" ""
    arow "adopt: peak RSS (MiB)" adopt_rss %.1f ""
    arow "restore path for contrast: \`volume create --from\` (s)" from_s %.3f ""
    arow "restore path: volume equals the source" verified.from-create- "" ""
    echo
    echo "Notes:"
    echo "- restic: \`restic init\` (not timed), \`restic backup --host bench .\` run in the data folder, \`restic restore latest --target DIR\`; restic's default cache, placed in $RESTIC_CACHE with \`--cache-dir\` (empty before the first snapshot); default compression (auto) of repository format v$restic_repo_version."
    echo "- borg: \`borg init -e repokey\` (not timed), \`borg create ::NAME .\` run in the data folder, \`borg extract ::NAME\` run in the empty target; default files cache and default compression (lz4); BORG_BASE_DIR=$BORG_BASE_DIR (its cache, empty before the first snapshot)."
    echo "- berth: \`berth snapshot create DIR --claim bench-data --json\`, \`berth snapshot restore ID TARGET\`; BERTH_STATE=$BERTH_STATE, BERTH_REPOSITORY=$BERTH_REPOSITORY, both empty before the first snapshot, which therefore includes creating the repository."
    echo "- Every timed step runs under \`timeout\` and \`/usr/bin/time\`; wall times include starting the process (and those two wrappers, about a millisecond each) and opening the repository (restic and borg derive the key from the password each time)."
    echo "- Restore times end when the tool exits; the data may still be in the page cache, the \`sync\` after it is timed separately. dd's write speed includes an fsync."
    echo "- Restores are verified by comparing sha256 of every file, and the paths, types, modes and sizes of every entry, with the source; a difference fails the run."
    for n in ${NOTES[@]+"${NOTES[@]}"}; do echo "- $n"; done
    for f in ${FAILURES[@]+"${FAILURES[@]}"}; do echo "- **FAILURE**: $f"; done
} >"$RESULTS"

echo
cat "$RESULTS"
echo
log "results written to $RESULTS (logs in $LOG_DIR)"
if ((${#FAILURES[@]})); then
    printf '\n%d FAILURE(S):\n' "${#FAILURES[@]}" >&2
    printf '  - %s\n' "${FAILURES[@]}" >&2
    exit 1
fi
