#!/usr/bin/env bash
# Benchmark `berth serve` against nginx (sendfile) and the reference Flask app under
# gunicorn (4 workers), all on 127.0.0.1 only. Writes everything to $BENCH_DIR
# (default bench/out/, gitignored) and the results table to $BENCH_DIR/serve-results.md.
#
# Usage: bench/serve.sh [--quick] [--build] [--peers-only]
#   --quick       3 s wrk runs and a 256 MiB upload file (smoke run)
#   --build       run `cargo build --release` first
#   --peers-only  run without berth (its cells say "not run"); for developing the script
#
# Environment (defaults):
#   BENCH_DIR=bench/out  BERTH_BIN=target/release/berth  REF_FLASK_DIR=../shared/ref-flask
#   PORT_BASE=18080 (berth +0, nginx +1, gunicorn +2, fresh upload servers +3/+4,
#                    /files servers +5/+6; each also settable as BERTH_PORT, NGINX_PORT, ...)
#   BENCH_TIMEOUT=2400 (seconds; the whole run stops by itself after this)
#   BERTH_ARGS / GUNICORN_ARGS: extra arguments for the servers (word-split)
#
# Prerequisites: apt-get install -y nginx-light wrk curl jq  (plus python3 with venv).
set -euo pipefail

REPO_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH_DIR=${BENCH_DIR:-$REPO_DIR/bench/out}
BERTH_BIN=${BERTH_BIN:-$REPO_DIR/target/release/berth}
REF_FLASK_DIR=${REF_FLASK_DIR:-$REPO_DIR/../shared/ref-flask}
NGINX_TMPL=${NGINX_TMPL:-$REPO_DIR/bench/nginx.conf.tmpl}
HOST=127.0.0.1 # loopback only, not configurable on purpose
PORT_BASE=${PORT_BASE:-18080}
BERTH_PORT=${BERTH_PORT:-$((PORT_BASE + 0))}
NGINX_PORT=${NGINX_PORT:-$((PORT_BASE + 1))}
GUNICORN_PORT=${GUNICORN_PORT:-$((PORT_BASE + 2))}
BERTH_UPLOAD_PORT=${BERTH_UPLOAD_PORT:-$((PORT_BASE + 3))}
GUNICORN_UPLOAD_PORT=${GUNICORN_UPLOAD_PORT:-$((PORT_BASE + 4))}
BERTH_FILES_PORT=${BERTH_FILES_PORT:-$((PORT_BASE + 5))}
GUNICORN_FILES_PORT=${GUNICORN_FILES_PORT:-$((PORT_BASE + 6))}
BENCH_TIMEOUT=${BENCH_TIMEOUT:-2400}
BERTH_ARGS=${BERTH_ARGS:-}
GUNICORN_ARGS=${GUNICORN_ARGS:-}

QUICK=0
BUILD=0
PEERS_ONLY=0
for arg in "$@"; do
    case $arg in
    --quick) QUICK=1 ;;
    --build) BUILD=1 ;;
    --peers-only) PEERS_ONLY=1 ;;
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

if ((QUICK)); then
    WRK_SECONDS=3
    UPLOAD_MIB=256
else
    WRK_SECONDS=10
    UPLOAD_MIB=1024
fi
WRK_THREADS=2
WRK_CONNS=32
DL_RUNS=5
FILES_COUNT=10000
FILES_RUNS=20
FILES_WARMUP=2
READY_TRIES=150 # x 0.2 s

DATA_DIR=$BENCH_DIR/data
FILES_DIR=$BENCH_DIR/data-10k
LOG_DIR=$BENCH_DIR/logs
RUN_DIR=$BENCH_DIR/run
VENV=$BENCH_DIR/venv
UPLOAD_SRC=$BENCH_DIR/upload-src-${UPLOAD_MIB}m.bin
RESULTS=$BENCH_DIR/serve-results.md
ONE_MIB=one-mib.bin
HUNDRED_MIB=hundred-mib.bin

declare -A R=()  # results: key -> number
NOTES=()         # free-text notes for the report
SERVER_PIDS=()   # every server this script started and has not stopped yet
WATCHDOG_PID=

log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() {
    printf '\nERROR: %s\n' "$*" >&2
    exit 1
}
now() { date +%s.%N; }
calc() { awk "BEGIN { printf \"$1\", ($2) }"; } # calc FORMAT EXPR
is_num() { [[ ${1:-} =~ ^[0-9]+([.][0-9]+)?([eE][-+]?[0-9]+)?$ ]]; }

# ---------------------------------------------------------------- process control
alive() { # a zombie (exited, not yet reaped) counts as dead
    local st
    [[ -r /proc/$1/stat ]] || return 1
    st=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1) || return 1
    [[ -n $st && $st != Z && $st != X ]]
}

forget_pid() {
    local p keep=()
    for p in ${SERVER_PIDS[@]+"${SERVER_PIDS[@]}"}; do [[ $p == "$1" ]] || keep+=("$p"); done
    SERVER_PIDS=(${keep[@]+"${keep[@]}"})
}

# stop_pid PID [NAME]: SIGTERM, wait up to 15 s, then SIGKILL (and its children).
# Sets STOP_RC to the exit status and STOP_CLEAN=1 if it exited after SIGTERM alone.
stop_pid() {
    local pid=$1 name=${2:-server} i kids
    STOP_CLEAN=0
    STOP_RC=
    if alive "$pid"; then
        kill -TERM "$pid" 2>/dev/null || true
        for ((i = 0; i < 150; i++)); do
            alive "$pid" || break
            sleep 0.1
        done
        if alive "$pid"; then
            log "$name (pid $pid) still running 15 s after SIGTERM; sending SIGKILL"
            kids=$(pgrep -P "$pid" 2>/dev/null || true)
            kill -KILL "$pid" 2>/dev/null || true
            [[ -n $kids ]] && kill -KILL $kids 2>/dev/null || true
        else
            STOP_CLEAN=1
        fi
    fi
    STOP_RC=0
    wait "$pid" 2>/dev/null || STOP_RC=$?
    forget_pid "$pid"
}

cleanup() {
    local rc=$? p
    set +e
    trap - EXIT INT TERM
    for p in ${SERVER_PIDS[@]+"${SERVER_PIDS[@]}"}; do
        log "cleanup: stopping server pid $p"
        stop_pid "$p"
    done
    if [[ -n $WATCHDOG_PID ]]; then
        kill -TERM "$WATCHDOG_PID" 2>/dev/null
        wait "$WATCHDOG_PID" 2>/dev/null
    fi
    rm -f "$DATA_DIR/dd.bin" "$DATA_DIR/big.bin" 2>/dev/null
    exit "$rc"
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT
trap 'log "stopped by SIGTERM (or the ${BENCH_TIMEOUT}s time limit)"; exit 143' TERM

port_in_use() { (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null; }

wait_ready() { # NAME PID URL LOGFILE
    local name=$1 pid=$2 url=$3 logf=$4 i
    for ((i = 0; i < READY_TRIES; i++)); do
        if ! alive "$pid"; then
            tail -n 30 "$logf" >&2 || true
            die "$name exited during startup (log: $logf)"
        fi
        if curl -fsS --max-time 2 -o /dev/null "$url" 2>/dev/null; then return 0; fi
        sleep 0.2
    done
    tail -n 30 "$logf" >&2 || true
    die "$name did not answer $url within $((READY_TRIES / 5)) s (log: $logf)"
}

# start_server NAME PORT LOGFILE CMD...; sets SERVER_PID. Waits for /health.
start_server() {
    local name=$1 port=$2 logf=$3
    shift 3
    port_in_use "$port" && die "port $port on $HOST is already in use (set PORT_BASE or ${name^^}_PORT)"
    log "starting $name on $HOST:$port"
    "$@" >"$logf" 2>&1 &
    SERVER_PID=$!
    SERVER_PIDS+=("$SERVER_PID")
    wait_ready "$name" "$SERVER_PID" "http://$HOST:$port/health" "$logf"
}

start_berth() { # PORT STORAGE_DIR LOG_TAG
    # shellcheck disable=SC2086
    start_server berth "$1" "$LOG_DIR/berth-$3.log" \
        "$BERTH_BIN" serve --storage "$2" --port "$1" --listen "$HOST" $BERTH_ARGS
}

start_gunicorn() { # PORT STORAGE_DIR LOG_TAG
    # shellcheck disable=SC2086
    start_server gunicorn "$1" "$LOG_DIR/gunicorn-$3.log" \
        env STORAGE_PATH="$2" "$VENV/bin/gunicorn" -w 4 -b "$HOST:$1" \
        --chdir "$REF_FLASK_DIR" $GUNICORN_ARGS app:app
}

start_nginx() { # PORT
    local run=$RUN_DIR/nginx user_line=
    rm -rf "$run"
    mkdir -p "$run"
    # as root, nginx workers would run as nobody; keep them as the invoking user so that
    # they can read $DATA_DIR wherever BENCH_DIR is
    if ((EUID == 0)); then user_line="user $(id -un) $(id -gn);"; fi
    sed -e "s|@PORT@|$1|g" -e "s|@RUN_DIR@|$run|g" -e "s|@DATA_DIR@|$DATA_DIR|g" \
        -e "s|@USER_LINE@|$user_line|g" "$NGINX_TMPL" >"$run/nginx.conf"
    nginx -t -q -p "$run/" -c "$run/nginx.conf" -e "$run/error.log" ||
        die "nginx rejected $run/nginx.conf"
    start_server nginx "$1" "$LOG_DIR/nginx.log" \
        nginx -p "$run/" -c "$run/nginx.conf" -e "$run/error.log"
}

stop_server() { # PID NAME
    stop_pid "$1" "$2"
    if [[ $2 == berth* ]]; then
        if ((STOP_CLEAN)); then
            log "$2 stopped on SIGTERM (exit status $STOP_RC)"
        else
            NOTES+=("$2 did not stop within 15 s of SIGTERM (had to SIGKILL)")
        fi
    fi
}

# ---------------------------------------------------------------- measurements
wrk_rps() { # KEY URL EXPECTED_BYTES(or -)
    local key=$1 url=$2 want=$3 got out rps non2xx sockerr
    got=$(curl -sS -f --max-time 30 -o /dev/null -w '%{size_download}' "$url") ||
        die "$url did not answer 200 before the wrk run"
    if [[ $want != - && $got != "$want" ]]; then die "$url returned $got bytes, expected $want"; fi
    log "wrk -t$WRK_THREADS -c$WRK_CONNS -d${WRK_SECONDS}s $url"
    out=$(timeout $((WRK_SECONDS + 60)) wrk -t"$WRK_THREADS" -c"$WRK_CONNS" -d"${WRK_SECONDS}s" \
        --timeout 5s "$url" 2>&1) || die "wrk failed on $url: $out"
    printf '### %s %s\n%s\n\n' "$key" "$url" "$out" >>"$LOG_DIR/wrk.log"
    rps=$(awk '/^Requests\/sec:/ { print $2 }' <<<"$out")
    is_num "$rps" || die "could not read Requests/sec from wrk output for $url: $out"
    non2xx=$(awk '/Non-2xx or 3xx responses:/ { print $NF }' <<<"$out")
    [[ -z $non2xx ]] || die "wrk saw $non2xx non-2xx responses from $url (see $LOG_DIR/wrk.log)"
    sockerr=$(grep -m1 'Socket errors' <<<"$out" || true)
    [[ -z $sockerr ]] || NOTES+=("$key: wrk ${sockerr# *}")
    R[$key]=$rps
    log "  -> $rps req/s"
}

median_of() { sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
p95_of() { sort -g | awk '{ v[NR] = $1 } END { i = int(NR * 0.95); if (i < NR * 0.95) i++; print v[i] }'; }

dl_speed() { # KEY URL  : median MiB/s of $DL_RUNS curl downloads
    local key=$1 url=$2 i out speeds=() want
    want=$(stat -c %s "$DATA_DIR/$HUNDRED_MIB")
    log "curl x$DL_RUNS $url"
    for ((i = 0; i < DL_RUNS; i++)); do
        out=$(curl -sS -f --max-time 120 -o /dev/null -w '%{speed_download} %{size_download}' "$url") ||
            die "download of $url failed"
        [[ ${out#* } == "$want" ]] || die "$url: got ${out#* } bytes, expected $want"
        speeds+=("$(calc '%.1f' "${out%% *} / 1048576")")
    done
    R[$key]=$(printf '%s\n' "${speeds[@]}" | median_of)
    log "  -> runs ${speeds[*]} MiB/s, median ${R[$key]}"
}

vmhwm_kib() { awk '/^VmHWM:/ { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0; }

# timed_upload KEY -- CURL_ARGS... : MiB/s = UPLOAD_MIB / wall seconds
timed_upload() {
    local key=$1 t0 t1 code
    shift
    sync # start every upload with no dirty pages from the one before
    t0=$(now)
    code=$(curl -sS --max-time 900 -o "$LOG_DIR/$key-response.txt" -w '%{http_code}' "$@") ||
        die "$key: curl failed (response in $LOG_DIR/$key-response.txt)"
    t1=$(now)
    [[ $code == 2?? ]] || die "$key: HTTP $code: $(head -c 500 "$LOG_DIR/$key-response.txt")"
    R[$key]=$(calc '%.1f' "$UPLOAD_MIB / ($t1 - $t0)")
    log "  -> $key: ${R[$key]} MiB/s ($(calc '%.2f' "$t1 - $t0") s)"
}

clean_uploads() { # remove everything but the download fixtures from $DATA_DIR, flush to disk
    find "$DATA_DIR" -mindepth 1 -maxdepth 1 ! -name "$ONE_MIB" ! -name "$HUNDRED_MIB" \
        -exec rm -rf {} +
    timeout 300 sync || true
}

check_uploaded() { # KEY : some new file in $DATA_DIR has exactly the source's size
    local size
    size=$(stat -c %s "$UPLOAD_SRC")
    find "$DATA_DIR" -maxdepth 1 -type f ! -name "$ONE_MIB" ! -name "$HUNDRED_MIB" \
        -size "${size}c" | grep -q . || die "$1: no file of $size bytes in $DATA_DIR after upload"
}

files_latency() { # KEY URL : median and p95 in ms of $FILES_RUNS requests
    local key=$1 url=$2 i t times=() body
    body=$LOG_DIR/$key-files.json
    for ((i = 0; i < FILES_WARMUP; i++)); do
        curl -sS -f --max-time 120 -o "$body" "$url" || die "$url failed"
    done
    jq -e --argjson n "$FILES_COUNT" '.count == $n and (.files | length) == $n' "$body" >/dev/null ||
        die "$url: expected count == $FILES_COUNT and $FILES_COUNT entries in .files, got count=$(jq -c .count "$body" 2>/dev/null) and $(jq '.files | length' "$body" 2>/dev/null) entries (body in $body)"
    log "curl x$FILES_RUNS $url"
    for ((i = 0; i < FILES_RUNS; i++)); do
        t=$(curl -sS -f --max-time 120 -o /dev/null -w '%{time_total}' "$url") || die "$url failed"
        times+=("$(calc '%.3f' "$t * 1000")")
    done
    R[$key.med]=$(printf '%s\n' "${times[@]}" | median_of)
    R[$key.p95]=$(printf '%s\n' "${times[@]}" | p95_of)
    log "  -> median ${R[$key.med]} ms, p95 ${R[$key.p95]} ms"
}

# ---------------------------------------------------------------- prerequisites
missing=()
for tool in wrk nginx curl jq python3 awk pgrep timeout dd; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if ((${#missing[@]})); then
    die "missing: ${missing[*]}. Install with: apt-get install -y nginx-light wrk curl jq python3 python3-venv procps"
fi
[[ -f $REF_FLASK_DIR/app.py && -f $REF_FLASK_DIR/requirements.txt ]] ||
    die "reference Flask app not found in $REF_FLASK_DIR (set REF_FLASK_DIR)"
[[ -f $NGINX_TMPL ]] || die "nginx template $NGINX_TMPL not found"

if ((BUILD)); then
    log "cargo build --release"
    (cd "$REPO_DIR" && timeout 1800 cargo build --release) || die "cargo build --release failed"
fi
RUN_BERTH=1
if ((PEERS_ONLY)); then
    RUN_BERTH=0
elif [[ ! -x $BERTH_BIN ]]; then
    die "berth binary not found at $BERTH_BIN. Build it: (cd $REPO_DIR && cargo build --release), or pass --build; set BERTH_BIN for another path; --peers-only runs without berth"
elif ! timeout 10 "$BERTH_BIN" serve --help 2>&1 | grep -q -- --storage; then
    die "'$BERTH_BIN serve --help' failed or does not mention --storage: this binary has no serve subcommand yet (rebuild, or --peers-only)"
fi

for port in "$BERTH_PORT" "$NGINX_PORT" "$GUNICORN_PORT" "$BERTH_UPLOAD_PORT" "$GUNICORN_UPLOAD_PORT" \
    "$BERTH_FILES_PORT" "$GUNICORN_FILES_PORT"; do
    if port_in_use "$port"; then die "port $port on $HOST is already in use (set PORT_BASE or the *_PORT variables)"; fi
done

mkdir -p "$BENCH_DIR" "$DATA_DIR" "$FILES_DIR" "$LOG_DIR" "$RUN_DIR"
: >"$LOG_DIR/wrk.log"

# the whole run stops by itself
(
    trap 'kill "$sp" 2>/dev/null; exit 0' TERM
    sleep "$BENCH_TIMEOUT" &
    sp=$!
    wait "$sp"
    echo "time limit of ${BENCH_TIMEOUT}s reached, stopping" >&2
    kill -TERM $$
) &
WATCHDOG_PID=$!

# ---------------------------------------------------------------- fixtures
make_random() { # FILE MIB
    if [[ ! -f $1 || $(stat -c %s "$1") != $(($2 * 1048576)) ]]; then
        log "generating $1 ($2 MiB random)"
        head -c $(($2 * 1048576)) /dev/urandom >"$1.tmp"
        mv "$1.tmp" "$1"
    fi
}
clean_uploads
make_random "$DATA_DIR/$ONE_MIB" 1
make_random "$DATA_DIR/$HUNDRED_MIB" 100
make_random "$UPLOAD_SRC" "$UPLOAD_MIB"
n=$(find "$FILES_DIR" -mindepth 1 -maxdepth 1 | wc -l)
if ((n != FILES_COUNT)); then
    log "generating $FILES_COUNT files of 100 bytes in $FILES_DIR"
    find "$FILES_DIR" -mindepth 1 -delete
    for ((i = 0; i < FILES_COUNT; i++)); do
        printf -v name 'f%05d.txt' "$i"
        printf '%099d\n' "$i" >"$FILES_DIR/$name"
    done
fi
# warm the page cache for the downloads and the upload source
cat "$DATA_DIR/$ONE_MIB" "$DATA_DIR/$HUNDRED_MIB" "$UPLOAD_SRC" >/dev/null

if [[ ! -x $VENV/bin/gunicorn ]] || ! "$VENV/bin/python" -c 'import flask, gunicorn' 2>/dev/null; then
    log "creating venv $VENV with $REF_FLASK_DIR/requirements.txt"
    rm -rf "$VENV"
    timeout 300 python3 -m venv "$VENV" || die "python3 -m venv failed (apt-get install -y python3-venv)"
    timeout 900 "$VENV/bin/pip" install -q -r "$REF_FLASK_DIR/requirements.txt" >"$LOG_DIR/pip.log" 2>&1 ||
        die "pip install -r $REF_FLASK_DIR/requirements.txt failed (log: $LOG_DIR/pip.log)"
fi

# ---------------------------------------------------------------- 1: /health, 1 MiB, 100 MiB
read_side() { # NAME PORT
    local name=$1 base="http://$HOST:$2"
    wrk_rps "health.$name" "$base/health" -
    wrk_rps "dl1.$name" "$base/download/$ONE_MIB" 1048576
    dl_speed "dl100.$name" "$base/download/$HUNDRED_MIB"
}
if ((RUN_BERTH)); then
    start_berth "$BERTH_PORT" "$DATA_DIR" main
    read_side berth "$BERTH_PORT"
    stop_server "$SERVER_PID" berth
fi
start_nginx "$NGINX_PORT"
read_side nginx "$NGINX_PORT"
stop_server "$SERVER_PID" nginx
start_gunicorn "$GUNICORN_PORT" "$DATA_DIR" main
read_side gunicorn "$GUNICORN_PORT"
stop_server "$SERVER_PID" gunicorn

# ---------------------------------------------------------------- 2: uploads and peak RSS
log "upload: dd bs=1M conv=fsync ($UPLOAD_MIB MiB), the physical limit"
# dd is the bound the uploads are held against, so it gets the best of
# three runs, each started with no dirty pages in the cache.
best=0
for run in 1 2 3; do
    clean_uploads
    sync
    t0=$(now)
    timeout 900 dd if="$UPLOAD_SRC" of="$DATA_DIR/dd.bin" bs=1M conv=fsync status=none || die "dd failed"
    t1=$(now)
    v=$(calc '%.1f' "$UPLOAD_MIB / ($t1 - $t0)")
    log "  -> dd run $run: $v MiB/s"
    if [[ $(calc '%d' "$v > $best") == 1 ]]; then best=$v; fi
done
R[dd]=$best
clean_uploads

if ((RUN_BERTH)); then
    log "upload: berth PUT /files/big.bin (fresh server)"
    start_berth "$BERTH_UPLOAD_PORT" "$DATA_DIR" upload-put
    timed_upload put.berth -T "$UPLOAD_SRC" "http://$HOST:$BERTH_UPLOAD_PORT/files/big.bin"
    [[ $(stat -c %s "$DATA_DIR/big.bin" 2>/dev/null) == $(stat -c %s "$UPLOAD_SRC") ]] ||
        die "berth PUT: $DATA_DIR/big.bin missing or of the wrong size"
    R[rss_put.berth]=$(calc '%.1f' "$(vmhwm_kib "$SERVER_PID") / 1024")
    log "  -> berth peak RSS (PUT): ${R[rss_put.berth]} MiB"
    stop_server "$SERVER_PID" berth-upload
    clean_uploads

    log "upload: berth POST /upload multipart (fresh server)"
    start_berth "$BERTH_UPLOAD_PORT" "$DATA_DIR" upload-multipart
    timed_upload mp.berth -F "file=@$UPLOAD_SRC" "http://$HOST:$BERTH_UPLOAD_PORT/upload"
    check_uploaded mp.berth
    R[rss_mp.berth]=$(calc '%.1f' "$(vmhwm_kib "$SERVER_PID") / 1024")
    log "  -> berth peak RSS (multipart): ${R[rss_mp.berth]} MiB"
    stop_server "$SERVER_PID" berth-upload
    clean_uploads
fi

log "upload: gunicorn POST /upload multipart (fresh server)"
start_gunicorn "$GUNICORN_UPLOAD_PORT" "$DATA_DIR" upload
timed_upload mp.gunicorn -F "file=@$UPLOAD_SRC" "http://$HOST:$GUNICORN_UPLOAD_PORT/upload"
check_uploaded mp.gunicorn
max=0
for w in $(pgrep -P "$SERVER_PID"); do
    k=$(vmhwm_kib "$w")
    if ((k > max)); then max=$k; fi
done
R[rss_mp.gunicorn]=$(calc '%.1f' "$max / 1024")
log "  -> gunicorn peak RSS (max over workers): ${R[rss_mp.gunicorn]} MiB"
stop_server "$SERVER_PID" gunicorn
clean_uploads

# ---------------------------------------------------------------- 3: /files with 10,000 files
if ((RUN_BERTH)); then
    start_berth "$BERTH_FILES_PORT" "$FILES_DIR" files
    files_latency files.berth "http://$HOST:$BERTH_FILES_PORT/files?limit=100000"
    stop_server "$SERVER_PID" berth
fi
start_gunicorn "$GUNICORN_FILES_PORT" "$FILES_DIR" files
files_latency files.gunicorn "http://$HOST:$GUNICORN_FILES_PORT/files"
stop_server "$SERVER_PID" gunicorn

# ---------------------------------------------------------------- report
cell() { # KEY [UNIT-FORMAT]
    local v=${R[$1]:-}
    if [[ -z $v ]]; then
        if [[ $1 == *.berth* ]] && ((!RUN_BERTH)); then echo "not run"; else echo "n/a"; fi
    else
        calc "${2:-%.1f}" "$v"
    fi
}
# verdict NUM_KEY DEN_KEY DESCRIPTION [OP TARGET]
verdict() {
    local a=${R[$1]:-} b=${R[$2]:-} r ok
    if ! is_num "$a" || ! is_num "$b" || [[ $(calc '%d' "$b == 0") == 1 ]]; then
        echo "n/a ($3${4:+, target $4$5×})"
        return
    fi
    r=$(calc '%.2f' "$a / $b")
    if [[ -z ${4:-} ]]; then
        echo "${r}× $3"
        return
    fi
    ok=$(calc '%d' "$r $4 $5")
    echo "${r}× $3 (target $4$5×) $( ((ok)) && echo PASS || echo FAIL)"
}
rss_verdict() {
    local v=${R[$1]:-}
    if ! is_num "$v"; then
        echo "n/a (target < 64 MiB)"
        return
    fi
    echo "target < 64 MiB $( (($(calc '%d' "$v < 64"))) && echo PASS || echo FAIL)"
}
first_line() { "$@" 2>&1 | head -n 1 || true; }

berth_version=n/a
if ((RUN_BERTH)); then
    berth_version="$(first_line "$BERTH_BIN" --version) (git $(git -C "$REPO_DIR" rev-parse --short HEAD 2>/dev/null || echo 'no commit'))"
fi
dd_cell="dd: $(cell dd)"
{
    echo "# berth serve benchmark"
    echo
    echo "- date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
    echo "- machine: $(nproc) CPUs, $(grep -m1 '^model name' /proc/cpuinfo | sed 's/.*: //'), $(awk '/^MemTotal/ { printf "%.1f GiB RAM", $2 / 1048576 }' /proc/meminfo), kernel $(uname -r)"
    echo "- versions: berth $berth_version; $(first_line nginx -v | sed 's/^nginx version: //'); gunicorn $("$VENV/bin/gunicorn" --version 2>&1 | awk '{ print $NF }' | tr -d '()'); flask $("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("flask"))'); $(first_line wrk -v | awk '{ print $1, $2 }'); $(first_line curl --version | awk '{ print $1, $2 }')"
    echo "- mode: $( ((QUICK)) && echo quick || echo full): wrk -t$WRK_THREADS -c$WRK_CONNS -d${WRK_SECONDS}s; 100 MiB download median of $DL_RUNS curl runs (page cache warm); upload of $UPLOAD_MIB MiB of random data, MiB/s = $UPLOAD_MIB / wall seconds; /files median and p95 of $FILES_RUNS curl runs after $FILES_WARMUP warm-ups, $FILES_COUNT files of 100 bytes; all on $HOST"
    echo
    echo "| measurement | berth | nginx | gunicorn (flask) | target/ratio |"
    echo "|---|---|---|---|---|"
    echo "| GET /health (req/s) | $(cell health.berth %.0f) | $(cell health.nginx %.0f) | $(cell health.gunicorn %.0f) | $(verdict health.berth health.gunicorn berth/gunicorn '>=' 10) |"
    echo "| GET /download 1 MiB (req/s) | $(cell dl1.berth %.0f) | $(cell dl1.nginx %.0f) | $(cell dl1.gunicorn %.0f) | $(verdict dl1.berth dl1.gunicorn berth/gunicorn '>=' 10) |"
    echo "| GET /download 100 MiB (MiB/s, median of $DL_RUNS) | $(cell dl100.berth) | $(cell dl100.nginx) | $(cell dl100.gunicorn) | $(verdict dl100.berth dl100.nginx berth/nginx '>=' 0.9) |"
    echo "| upload $UPLOAD_MIB MiB, PUT /files/{name} (MiB/s) | $(cell put.berth) | $dd_cell | n/a | $(verdict put.berth dd berth/dd '>=' 0.8) |"
    echo "| upload $UPLOAD_MIB MiB, POST /upload multipart (MiB/s) | $(cell mp.berth) | $dd_cell | $(cell mp.gunicorn) | $(verdict mp.berth dd berth/dd '>=' 0.8) |"
    echo "| peak RSS during PUT upload (MiB, VmHWM) | $(cell rss_put.berth) | n/a | n/a | $(rss_verdict rss_put.berth) |"
    echo "| peak RSS during multipart upload (MiB, VmHWM; gunicorn: max over workers) | $(cell rss_mp.berth) | n/a | $(cell rss_mp.gunicorn) | $(rss_verdict rss_mp.berth) |"
    echo "| GET /files, $FILES_COUNT files, median (ms) | $(cell files.berth.med %.2f) | n/a | $(cell files.gunicorn.med %.2f) | $(verdict files.gunicorn.med files.berth.med gunicorn/berth '>=' 8) |"
    echo "| GET /files, $FILES_COUNT files, p95 (ms) | $(cell files.berth.p95 %.2f) | n/a | $(cell files.gunicorn.p95 %.2f) | $(verdict files.gunicorn.p95 files.berth.p95 gunicorn/berth) |"
    echo
    echo "Notes:"
    echo "- nginx: sendfile on, \`location /download/ { alias DIR/; }\` and a static /health; it has no upload or listing, so its upload cells show dd (\`dd bs=1M conv=fsync\`, the disk's physical limit) instead."
    echo "- gunicorn: \`gunicorn -w 4\` (sync workers) running $REF_FLASK_DIR/app.py; berth's /files is called with \`?limit=100000\`."
    echo "- peak RSS: VmHWM of a freshly started server process read right after its upload."
    echo "- dd includes an fsync, and so does berth before it answers (fsync of the file, rename, fsync of the folder); dd is the best of three runs, every upload starts after a \`sync\`."
    echo "- gunicorn's send_file also uses sendfile (wsgi.file_wrapper), so 1 MiB downloads are bound by 4 sync workers and the loopback, not by Python."
    for n in ${NOTES[@]+"${NOTES[@]}"}; do echo "- $n"; done
} >"$RESULTS"

echo
cat "$RESULTS"
echo
log "results written to $RESULTS (logs in $LOG_DIR)"
