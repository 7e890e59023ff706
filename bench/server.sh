#!/usr/bin/env bash
# Server acceptance benchmark (issue 3; results in docs/PERFORMANCE.md, "Server acceptance").
#
# Durable acceptance of ~40 KB claim files at 1,000 concurrent connections on loopback
# (wrk + bench/post.lua, every body a distinct, valid file that gets checked), with its
# baselines measured in the same run:
#   ceiling  `tenken bench-server bare`: the same axum/hyper stack answering 202, no storage
#   floor    `tenken bench-server naive`: tmp + fsync + rename + fsync dir, one file at a time
# Scenarios (ONLY= selects):
#   server     closed loop: the most acknowledged (202) submissions/s; latency is then
#              Little's law (connections / throughput), not service time
#   workers1   the same with 1 ssk check worker instead of 2
#   paced      each connection waits uniform 0..2*PACED_DELAY_MS ms before each request
#              (~5,000/s offered at 1,000 connections, the aim): latency at that rate
#   paced-low  the same at ~1,000/s offered
#   tmpfs      diagnostic: data directory on /dev/shm (fsync costs nothing)
#   bare       the ceiling, closed loop and both paced rates
#   naive      the floor (and 32 parallel one-by-one writers, for comparison)
#   overload   uploads_inflight_max 16 and 1 (closed loop), and 1 paced: 503 counts and the
#              latency of refusals (with 1, nearly every response is a refusal)
#   skew       one 20,000-receipt file + 200 small ones for ssk; per-worker busy max/mean
#   swap       hot swap (issue 4): SWAP_SUBMITTERS clients submit and wait for their checks
#              while a release set is activated every SWAP_EVERY_MS in alternate phases of
#              SWAP_PHASE_S; checked receipts/s with and without swaps, and each activation's
#              request → live → first chunk on it (`tenken bench-server swap`)
# Every server scenario starts a fresh server (fresh data directory) per run.
#
# Usage: bench/server.sh            (RUNS=3 DURATION=15s CONNS=1000 ...; see below)
#        SKIP_BUILD=1 ONLY="skew" bench/server.sh
# Needs: wrk (installed with apt-get when missing), curl, a release build (made here).
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
BIN=${BIN:-$ROOT/target/release/tenken}
LUA=$ROOT/bench/post.lua

RUNS=${RUNS:-3}                         # runs per scenario; medians are reported
DURATION=${DURATION:-15s}               # wrk -d
CONNS=${CONNS:-1000}                    # wrk -c
THREADS=${THREADS:-2}                   # wrk -t
PACED_DELAY_MS=${PACED_DELAY_MS:-190}   # mean think time of the paced runs (~5,000/s offered at 1,000 connections)
PACED_LOW_DELAY_MS=${PACED_LOW_DELAY_MS:-990} # the same for "paced-low" (~1,000/s offered)
INSTITUTIONS=${INSTITUTIONS:-4}         # distinct institutions (tokens) posting
BODY_BYTES=${BODY_BYTES:-40960}
UPLOADS=${UPLOADS:-2000}                # uploads_inflight_max of the acceptance runs (>= CONNS: none refused)
NAIVE_FILES=${NAIVE_FILES:-5000}
SKEW_BIG=${SKEW_BIG:-20000}             # receipts in the big file of the skewed workload
SKEW_SMALL=${SKEW_SMALL:-200}           # small files
SKEW_SMALL_RECEIPTS=${SKEW_SMALL_RECEIPTS:-20}
SKEW_WORKERS=${SKEW_WORKERS:-2}
SWAP_PHASE_S=${SWAP_PHASE_S:-10}        # length of each phase of the swap scenario
SWAP_PAIRS=${SWAP_PAIRS:-3}             # (off, on) phase pairs
SWAP_EVERY_MS=${SWAP_EVERY_MS:-1000}
SWAP_SUBMITTERS=${SWAP_SUBMITTERS:-6}
ONLY=${ONLY:-"server workers1 paced paced-low tmpfs bare naive overload skew swap"}
KEEP=${KEEP:-0}                         # 1: keep data directories

WORK=${BENCH_DIR:-$(mktemp -d /tmp/tenken-bench.XXXXXX)}
mkdir -p "$WORK/results"
SUMMARY=$WORK/summary.md
PIDS=()

log() { printf '[%s] %s\n' "$(date +%T)" "$*" >&2; }

cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        if kill -0 "$pid" 2>/dev/null; then
            kill -TERM "$pid" 2>/dev/null || true
        fi
    done
    for pid in "${PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
}
trap cleanup EXIT

want() { [[ " $ONLY " == *" $1 "* ]]; }

# ---------------------------------------------------------------------------------------
# Tools and build

if ! command -v wrk >/dev/null; then
    log "installing wrk (Debian package)"
    apt-get install -y wrk >/dev/null 2>&1 || { apt-get update >/dev/null && apt-get install -y wrk >/dev/null; }
fi
command -v curl >/dev/null || { echo "curl is needed" >&2; exit 2; }
if [[ ${SKIP_BUILD:-0} != 1 ]]; then
    log "cargo build --release -p tenken"
    cargo build --release -p tenken
fi
[[ -x $BIN ]] || { echo "no binary at $BIN" >&2; exit 2; }
# What was measured: the commit at build time, and whether the tree had local changes then.
BUILT_FROM="commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet HEAD -- host plugins Cargo.toml 2>/dev/null || echo ' + uncommitted changes under host/ or plugins/'), binary of $(date -r "$BIN" -u '+%F %T') UTC"

# Compiled plugin artifacts are shared by every server started here (compiled once).
COMMON_ENV=(
    TENKEN_CFG__CACHE_DIR="$WORK/artifacts"
    TENKEN_CFG__ADMISSION__SUBMISSIONS_PER_INSTITUTION_PER_MINUTE_MAX=100000000
    TENKEN_CFG__ADMISSION__SUBMISSIONS_PER_INSTITUTION_BURST_MAX=100000000
    TENKEN_CFG__ADMISSION__CONNECTIONS_MAX=4096
    TENKEN_CFG__SSK__QUEUE_CHUNKS_MAX=100000000
    TENKEN_CFG__KOKUHO__WORKERS=1
)

# ---------------------------------------------------------------------------------------
# Bodies: one ~40 KB file per institution (distinct seeds, distinct codes)

BODIES=()
CODES=()
RECEIPTS_LIST=()
seed=1
while ((${#BODIES[@]} < INSTITUTIONS)); do
    f=$WORK/body-$seed.UKE
    read -r code receipts bytes < <("$BIN" bench-server body --out "$f" --bytes "$BODY_BYTES" --seed "$seed")
    seed=$((seed + 1))
    if [[ " ${CODES[*]} " == *" $code "* ]]; then continue; fi
    BODIES+=("$f")
    CODES+=("$code")
    RECEIPTS_LIST+=("$receipts")
    log "body $f: institution $code, $receipts receipts, $bytes bytes"
done
BODY_SIZE=$(stat -c %s "${BODIES[@]}" | awk '{ s += $1 } END { printf "%.0f", s / NR }')
BODY_RECEIPTS=$(printf '%s\n' "${RECEIPTS_LIST[@]}" | awk '{ s += $1 } END { printf "%.0f", s / NR }')

# ---------------------------------------------------------------------------------------
# Helpers

# cpu_ticks PID [THREAD-NAME-PREFIX]: utime+stime clock ticks of a process (all threads,
# live and exited) or of its live threads whose name starts with the prefix.
cpu_ticks() {
    local pid=$1 prefix=${2:-}
    if [[ -z $prefix ]]; then
        awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$pid/stat"
        return
    fi
    local total=0 t comm
    for t in /proc/"$pid"/task/*; do
        comm=$(cat "$t/comm" 2>/dev/null || true)
        if [[ $comm == "$prefix"* ]]; then
            total=$((total + $(awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "$t/stat" 2>/dev/null || echo 0)))
        fi
    done
    echo "$total"
}
HZ=$(getconf CLK_TCK)
# machine_ticks: busy (user+nice+system+irq+softirq) and steal clock ticks of all CPUs.
machine_ticks() { awk '$1 == "cpu" { print $2 + $3 + $4 + $7 + $8, $9 }' /proc/stat; }
# others_line BEFORE AFTER OWN_TICKS: CPU seconds the rest of the machine used (other
# processes: a noisy neighbour shows here), and steal.
others_line() {
    local b=($1) a=($2)
    awk -v busy=$((a[0] - b[0] - $3)) -v steal=$((a[1] - b[1])) -v h="$HZ" \
        'BEGIN { printf " others_cpu_s=%.1f steal_s=%.1f", (busy < 0 ? 0 : busy) / h, steal / h }'
}

# start_server NAME [ENV=VALUE ...]: fresh data dir, one institution token per CODES entry,
# server started; sets SERVER_PID, SERVER_URL, SERVER_DIR, TOKENS (same order as CODES).
start_server() {
    local name=$1
    shift
    SERVER_DIR=${DATA_ROOT:-$WORK}/data-$name
    rm -rf "$SERVER_DIR"
    mkdir -p "$SERVER_DIR"
    TOKENS=()
    local code
    for code in "${CODES[@]}"; do
        TOKENS+=("$(env "${COMMON_ENV[@]}" "$@" "$BIN" token create --data-dir "$SERVER_DIR" --institution "$code" 2>/dev/null)")
    done
    env "${COMMON_ENV[@]}" "$@" "$BIN" serve --listen 127.0.0.1:0 --data-dir "$SERVER_DIR" --demo-masters --windows always-open \
        >"$SERVER_DIR.out" 2>"$SERVER_DIR.log" &
    SERVER_PID=$!
    PIDS+=("$SERVER_PID")
    local i
    for ((i = 0; i < 3000; i++)); do
        if [[ -s $SERVER_DIR/serve.addr ]] && curl -sf "http://$(cat "$SERVER_DIR/serve.addr")/readyz" >/dev/null 2>&1; then
            SERVER_URL=http://$(cat "$SERVER_DIR/serve.addr")
            return
        fi
        kill -0 "$SERVER_PID" 2>/dev/null || { tail -20 "$SERVER_DIR.log" >&2; echo "server $name died" >&2; exit 1; }
        sleep 0.1
    done
    echo "server $name did not become ready" >&2
    exit 1
}

stop_pid() {
    local pid=$1 i
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 600; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

stop_server() {
    stop_pid "$SERVER_PID"
    if [[ $KEEP != 1 ]]; then
        rm -rf "$SERVER_DIR"
    fi
}

# metric URL NAME-WITH-LABELS: the value of one sample in /metrics (0 when absent).
metric() {
    { curl -sf "$1/metrics" || true; } | awk -v k="$2" '$1 == k { v = $2 } END { print v == "" ? 0 : v }'
}

# run_wrk OUT URL DELAY_MS [TOKENS...]: one wrk run; the RESULT line goes to OUT.
run_wrk() {
    local out=$1 url=$2 delay=$3
    shift 3
    BENCH_BODIES="${BODIES[*]}" BENCH_TOKENS="$*" BENCH_THREADS=$THREADS BENCH_DELAY_MS=$delay \
        /usr/bin/time -f '%U %S' -o "$out.time" \
        wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --timeout 10s --latency -s "$LUA" "$url/v1/submissions" >"$out.wrk" 2>&1 || true
    grep '^RESULT' "$out.wrk" | sed 's/^RESULT //' >"$out"
    [[ -s $out ]] || { cat "$out.wrk" >&2; echo "wrk produced no RESULT" >&2; exit 1; }
    local wrk_cpu
    wrk_cpu=$(awk '{ printf "%.1f", $1 + $2 }' "$out.time")
    echo " wrk_cpu_s=$wrk_cpu" >>"$out"
    sed -i ':a;N;$!ba;s/\n//g' "$out"
}

# wait_quiet: before a run, wait (up to QUIET_WAIT_S) until the rest of the machine uses
# less than a fifth of a CPU over 2 s (the machine is shared; other builds and tests skew
# the figures). Proceeds anyway after the wait, and says so.
QUIET_WAIT_S=${QUIET_WAIT_S:-300}
wait_quiet() {
    local start=$SECONDS b a busy
    while :; do
        b=($(machine_ticks))
        sleep 2
        a=($(machine_ticks))
        busy=$((a[0] - b[0]))
        if ((busy * 5 < 2 * HZ)); then return; fi
        if ((SECONDS - start > QUIET_WAIT_S)); then
            log "machine still busy ($(awk -v t="$busy" -v h="$HZ" 'BEGIN { printf "%.2f", t / h / 2 }') CPUs used by others); running anyway"
            return
        fi
        sleep 3
    done
}

# wrk_ticks OUT: wrk's CPU of a run, in clock ticks.
wrk_ticks() { awk -v h="$HZ" '{ printf "%d", ($1 + $2) * h }' "$1.time"; }

# server_scenario NAME DELAY_MS [ENV=VALUE ...]: RUNS fresh servers, one wrk run each.
server_scenario() {
    local name=$1 delay=$2
    shift 2
    local r
    for ((r = 1; r <= RUNS; r++)); do
        wait_quiet
        start_server "$name" "$@"
        local before_all before_ssk before_wr
        before_all=$(cpu_ticks "$SERVER_PID")
        before_ssk=$(cpu_ticks "$SERVER_PID" tenken-ssk)
        before_wr=$(cpu_ticks "$SERVER_PID" tenken-store)
        local before_m
        before_m=$(machine_ticks)
        local out=$WORK/results/$name.$r
        log "$name run $r/$RUNS: wrk -t$THREADS -c$CONNS -d$DURATION (delay ${delay} ms) against $SERVER_URL"
        run_wrk "$out" "$SERVER_URL" "$delay" "${TOKENS[@]}"
        local after_m all ssk wr checked accepted
        after_m=$(machine_ticks)
        all=$(($(cpu_ticks "$SERVER_PID") - before_all))
        ssk=$(($(cpu_ticks "$SERVER_PID" tenken-ssk) - before_ssk))
        wr=$(($(cpu_ticks "$SERVER_PID" tenken-store) - before_wr))
        checked=$(metric "$SERVER_URL" 'tenken_receipts_checked_total{payer="ssk"}')
        accepted=$(metric "$SERVER_URL" 'tenken_submissions_total{outcome="accepted"}')
        curl -sf "$SERVER_URL/metrics" >"$out.metrics" || true
        printf ' server_cpu_s=%s check_cpu_s=%s writer_cpu_s=%s receipts_checked=%s accepted_metric=%s\n' \
            "$(awk -v t="$all" -v h="$HZ" 'BEGIN { printf "%.1f", t / h }')" \
            "$(awk -v t="$ssk" -v h="$HZ" 'BEGIN { printf "%.1f", t / h }')" \
            "$(awk -v t="$wr" -v h="$HZ" 'BEGIN { printf "%.1f", t / h }')" \
            "$checked" "$accepted" >>"$out"
        others_line "$before_m" "$after_m" $((all + $(wrk_ticks "$out"))) >>"$out"
        sed -i ':a;N;$!ba;s/\n//g' "$out"
        log "  $(cat "$out")"
        stop_server
    done
}

bare_scenario() {
    local name=$1 delay=$2 r
    local addr_file=$WORK/bare.addr
    rm -f "$addr_file"
    "$BIN" bench-server bare --listen 127.0.0.1:0 --addr-file "$addr_file" >"$WORK/bare.out" 2>&1 &
    local pid=$!
    PIDS+=("$pid")
    for ((r = 0; r < 100; r++)); do [[ -s $addr_file ]] && break; sleep 0.1; done
    local url=http://$(cat "$addr_file")
    for ((r = 1; r <= RUNS; r++)); do
        local out=$WORK/results/$name.$r
        local before
        wait_quiet
        before=$(cpu_ticks "$pid")
        local before_m after_m used
        before_m=$(machine_ticks)
        log "$name run $r/$RUNS: wrk -t$THREADS -c$CONNS -d$DURATION (delay ${delay} ms) against $url (bare)"
        run_wrk "$out" "$url" "$delay"
        after_m=$(machine_ticks)
        used=$(($(cpu_ticks "$pid") - before))
        printf ' server_cpu_s=%s\n' "$(awk -v t="$used" -v h="$HZ" 'BEGIN { printf "%.1f", t / h }')" >>"$out"
        others_line "$before_m" "$after_m" $((used + $(wrk_ticks "$out"))) >>"$out"
        sed -i ':a;N;$!ba;s/\n//g' "$out"
        log "  $(cat "$out")"
    done
    stop_pid "$pid"
}

# get FILE KEY: a key=value from a result file.
get() { tr ' ' '\n' <"$1" | awk -F= -v k="$2" '$1 == k { print $2 }'; }
# runs_of NAME: the result files of a scenario (NAME.1, NAME.2, ...).
runs_of() {
    local f
    for f in "$WORK"/results/"$1".[0-9]*; do
        if [[ $f =~ \.[0-9]+$ ]]; then echo "$f"; fi
    done
}
# med NAME KEY: median over the runs of a scenario; all NAME KEY: the values, comma-separated.
med() { runs_of "$1" | while read -r f; do get "$f" "$2"; done | sort -g | awk '{ a[NR] = $1 } END { if (NR) print a[int((NR + 1) / 2)]; else print "-" }'; }
all() { runs_of "$1" | while read -r f; do get "$f" "$2"; done | paste -sd, -; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b + 0 > 0 && a != "-") printf "%.2f", a / b; else print "-" }'; }

# ---------------------------------------------------------------------------------------
# Scenarios

log "work directory $WORK; bodies of $BODY_SIZE bytes ($BODY_RECEIPTS receipts) on average, ${#BODIES[@]} institutions"
UPL=(TENKEN_CFG__ADMISSION__UPLOADS_INFLIGHT_MAX=$UPLOADS)

# The floor first, before the server runs write gigabytes to the same file system.
if want naive; then
    for ((r = 1; r <= RUNS; r++)); do
        rm -rf "$WORK/naive"
        wait_quiet
        log "naive run $r/$RUNS: $NAIVE_FILES files one by one"
        "$BIN" bench-server naive --dir "$WORK/naive" --files "$NAIVE_FILES" --body "${BODIES[0]}" | tee "$WORK/results/naive.$r.wrk" |
            grep '^RESULT' | sed 's/^RESULT //' >"$WORK/results/naive.$r"
    done
    rm -rf "$WORK/naive"
    wait_quiet
    log "parallel writers (32 threads, each one by one): what parallel fsyncs alone give"
    "$BIN" bench-server naive --dir "$WORK/naive" --files "$NAIVE_FILES" --body "${BODIES[0]}" --threads 32 |
        tee "$WORK/results/naive32.1.wrk" | grep '^RESULT' | sed 's/^RESULT //' >"$WORK/results/naive32.1"
    rm -rf "$WORK/naive"
fi

want server && server_scenario server 0 "${UPL[@]}"
want workers1 && server_scenario workers1 0 "${UPL[@]}" TENKEN_CFG__SSK__WORKERS=1
want paced && server_scenario paced "$PACED_DELAY_MS" "${UPL[@]}"
want paced-low && server_scenario paced-low "$PACED_LOW_DELAY_MS" "${UPL[@]}"
# Diagnostic, not a baseline: the data directory on tmpfs, where fsync costs nothing, shows
# what the acceptance path costs apart from storage I/O.
if want tmpfs && [[ $(stat -f -c %T /dev/shm 2>/dev/null) == tmpfs ]]; then
    DATA_ROOT=$(mktemp -d /dev/shm/tenken-bench.XXXXXX)
    server_scenario tmpfs 0 "${UPL[@]}"
    rm -rf "$DATA_ROOT"
    unset DATA_ROOT
fi
if want bare; then
    bare_scenario bare 0
    bare_scenario bare-paced "$PACED_DELAY_MS"
    bare_scenario bare-paced-low "$PACED_LOW_DELAY_MS"
fi
if want overload; then
    server_scenario overload16 0 TENKEN_CFG__ADMISSION__UPLOADS_INFLIGHT_MAX=16
    server_scenario overload1 0 TENKEN_CFG__ADMISSION__UPLOADS_INFLIGHT_MAX=1
    server_scenario overload1-paced "$PACED_DELAY_MS" TENKEN_CFG__ADMISSION__UPLOADS_INFLIGHT_MAX=1
fi

SKEW_LINE=""
if want skew; then
    big=$WORK/skew-big.UKE
    small=$WORK/skew-small.UKE
    read -r big_code big_receipts big_bytes < <("$BIN" bench-server body --out "$big" --receipts "$SKEW_BIG" --seed 101)
    read -r small_code _ small_bytes < <("$BIN" bench-server body --out "$small" --receipts "$SKEW_SMALL_RECEIPTS" --seed 102)
    log "skew: big file $big_receipts receipts ($big_bytes bytes, institution $big_code); $SKEW_SMALL small files of $SKEW_SMALL_RECEIPTS receipts ($small_bytes bytes, institution $small_code)"
    # Distinct 請求年月 for each small file, so none supersedes another.
    mkdir -p "$WORK/skew-small"
    for ((i = 0; i < SKEW_SMALL; i++)); do
        m=$((2021 * 12 + 10 + i))
        LC_ALL=C sed "1s/^\(\([^,]*,\)\{7\}\)[0-9]*/\1$(printf '%04d%02d' $((m / 12)) $((m % 12 + 1)))/" "$small" >"$WORK/skew-small/$i.UKE"
    done
    saved_codes=("${CODES[@]}")
    CODES=("$big_code" "$small_code")
    wait_quiet
    start_server skew TENKEN_CFG__SSK__WORKERS="$SKEW_WORKERS"
    CODES=("${saved_codes[@]}")
    t0=$(date +%s.%N)
    code=$(curl -s -o "$WORK/results/skew-big.json" -w '%{http_code}' -H "Authorization: Bearer ${TOKENS[0]}" \
        --data-binary @"$big" "$SERVER_URL/v1/submissions")
    [[ $code == 202 ]] || { cat "$WORK/results/skew-big.json" >&2; echo "big file: HTTP $code" >&2; exit 1; }
    for ((i = 0; i < SKEW_SMALL; i++)); do
        code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer ${TOKENS[1]}" \
            --data-binary @"$WORK/skew-small/$i.UKE" "$SERVER_URL/v1/submissions")
        [[ $code == 202 ]] || { echo "small file $i: HTTP $code" >&2; exit 1; }
    done
    want_done=$((SKEW_SMALL + 1))
    for ((i = 0; i < 18000; i++)); do
        done_n=$(metric "$SERVER_URL" 'tenken_check_latency_seconds_count{payer="ssk"}')
        ((done_n >= want_done)) && break
        sleep 0.1
    done
    t1=$(date +%s.%N)
    curl -sf "$SERVER_URL/metrics" >"$WORK/results/skew.metrics"
    busy=$(awk '$1 ~ /^tenken_worker_busy_seconds_total\{payer="ssk"/ { print $2 }' "$WORK/results/skew.metrics" | paste -sd' ' -)
    SKEW_LINE=$(awk -v b="$busy" -v t0="$t0" -v t1="$t1" -v n="$done_n" 'BEGIN {
        k = split(b, v, " "); s = 0; mx = 0
        for (i = 1; i <= k; i++) { s += v[i]; if (v[i] > mx) mx = v[i] }
        printf "workers=%d busy_s=%s mean_s=%.2f max_over_mean=%.3f wall_s=%.1f checked=%d", k, b, s / k, mx / (s / k), t1 - t0, n }')
    echo "$SKEW_LINE" >"$WORK/results/skew.1"
    log "skew: $SKEW_LINE"
    stop_server
fi

SWAP_LINES=""
if want swap; then
    wait_quiet
    start_server swap
    staff=$(env "${COMMON_ENV[@]}" "$BIN" token create --data-dir "$SERVER_DIR" --staff ssk 2>/dev/null)
    "$BIN" bench-server swap --server "$SERVER_URL" --institution-token "${TOKENS[0]}" --staff-token "$staff" \
        --body "${BODIES[0]}" --phase-s "$SWAP_PHASE_S" --pairs "$SWAP_PAIRS" --swap-every-ms "$SWAP_EVERY_MS" \
        --submitters "$SWAP_SUBMITTERS" >"$WORK/results/swap.1"
    SWAP_LINES=$(sed -n 's/^RESULT //p' "$WORK/results/swap.1")
    log "swap: $SWAP_LINES"
    stop_server
fi

# ---------------------------------------------------------------------------------------
# Summary

{
    echo "## tenken server acceptance ($(date -u +%F), $(nproc) CPUs, bodies ~$BODY_SIZE bytes / ~$BODY_RECEIPTS receipts, -c$CONNS -t$THREADS -d$DURATION, $RUNS run(s) each, medians)"
    echo
    echo "| scenario | acknowledged/s (202) | other responses/s | p50 ms | p99 ms | socket errors | server CPU s (check workers) | wrk CPU s | others CPU s | runs (ack/s) |"
    echo "|---|---|---|---|---|---|---|---|---|---|"
    for s in server workers1 paced paced-low tmpfs bare bare-paced bare-paced-low overload16 overload1 overload1-paced; do
        compgen -G "$WORK/results/$s.1" >/dev/null || continue
        ok=$(med "$s" ok_per_s)
        rps=$(med "$s" rps)
        other=$(awk -v a="$rps" -v b="$ok" 'BEGIN { printf "%.0f", a - b }')
        errs=$(runs_of "$s" | while read -r f; do
            echo $(($(get "$f" err_connect) + $(get "$f" err_read) + $(get "$f" err_write) + $(get "$f" err_timeout)))
        done | sort -g | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }')
        echo "| $s | $ok | $other | $(med "$s" p50_ms) | $(med "$s" p99_ms) | $errs | $(med "$s" server_cpu_s) ($(med "$s" check_cpu_s)) | $(med "$s" wrk_cpu_s) | $(med "$s" others_cpu_s) | $(all "$s" ok_per_s) |"
    done
    if compgen -G "$WORK/results/naive.1" >/dev/null; then
        echo "| naive (fsync one by one) | $(med naive files_per_s) files/s | | $(med naive p50_ms) | $(med naive p99_ms) | | | | | $(all naive files_per_s) |"
    fi
    if compgen -G "$WORK/results/naive32.1" >/dev/null; then
        echo "| naive, 32 writers | $(med naive32 files_per_s) files/s | | $(med naive32 p50_ms) | $(med naive32 p99_ms) | | | | | $(all naive32 files_per_s) |"
    fi
    echo
    echo "- binary: $BIN ($BUILT_FROM)"
    srv=$(med server ok_per_s)
    echo "- server / floor (naive): $(ratio "$srv" "$(med naive files_per_s)")×; server / ceiling (bare): $(ratio "$srv" "$(med bare ok_per_s)")×"
    if compgen -G "$WORK/results/workers1.1" >/dev/null; then
        w1=$(med workers1 ok_per_s)
        echo "- with 1 ssk worker: $w1/s; / floor $(ratio "$w1" "$(med naive files_per_s)")×; / ceiling $(ratio "$w1" "$(med bare ok_per_s)")×"
    fi
    for s in overload16 overload1 overload1-paced; do
        compgen -G "$WORK/results/$s.1" >/dev/null || continue
        echo "- $s: per run 202 $(all "$s" ok); 503 $(all "$s" s503); other $(all "$s" other); p50 $(all "$s" p50_ms) ms, p99 $(all "$s" p99_ms) ms (all responses); socket errors connect/read/write/timeout $(all "$s" err_connect)/$(all "$s" err_read)/$(all "$s" err_write)/$(all "$s" err_timeout)"
    done
    [[ -n $SWAP_LINES ]] && echo "$SWAP_LINES" | sed "s/^/- swap ($SWAP_SUBMITTERS submitters, activation every $SWAP_EVERY_MS ms, $SWAP_PAIRS × ${SWAP_PHASE_S}+${SWAP_PHASE_S} s): /"
    [[ -n $SKEW_LINE ]] && echo "- skew ($SKEW_BIG + $SKEW_SMALL×$SKEW_SMALL_RECEIPTS receipts, $SKEW_WORKERS ssk workers): $SKEW_LINE"
    echo
    echo "Raw results: $WORK/results"
} | tee "$SUMMARY"
