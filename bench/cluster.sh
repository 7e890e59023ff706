#!/usr/bin/env bash
# Cluster benchmark (issue 12; results in docs/PERFORMANCE.md, "Several nodes on PostgreSQL").
#
# One run, side by side, every configuration on a fresh store:
#   ack     acknowledged (202) submissions/s of ~40 KB files at CONNS connections (wrk +
#           bench/post.lua, every body a distinct valid file), split evenly over the nodes,
#           for the SQLite single node and for 1, 2 and 3 nodes on one PostgreSQL; with
#           PostgreSQL's own CPU and WAL bytes per acknowledgement
#   check   checked receipts/s: BATCH_FILES files (~40 KB each) submitted round-robin to the
#           nodes, timed from the first submission to the last receipt checked; with
#           PostgreSQL's CPU and WAL bytes per chunk
#   skew    the same batch submitted to node a only (acceptance skewed onto one node): the
#           per-payer busy max/mean over the nodes, from GET /v1/cluster
#   kill    3 nodes checking; node c SIGKILLed while it holds claims: time until its claims
#           are running elsewhere (read from the database)
#
# Usage: bench/cluster.sh                      (RUNS=1 DURATION=15s CONNS=1000 BATCH_FILES=300)
#        SKIP_BUILD=1 ONLY="ack check" bench/cluster.sh
# Needs: wrk, curl, psql, Debian's postgresql (scripts/pg-test-cluster.sh), a release build.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
BIN=${BIN:-$ROOT/target/release/tenken}
LUA=$ROOT/bench/post.lua
RUNS=${RUNS:-1}
DURATION=${DURATION:-15s}
CONNS=${CONNS:-1000}
THREADS=${THREADS:-2}
BODY_BYTES=${BODY_BYTES:-40960}
BATCH_FILES=${BATCH_FILES:-300}
LEASE_MS=${LEASE_MS:-15000}
ONLY=${ONLY:-"ack check skew kill"}
WORK=${BENCH_DIR:-$(mktemp -d /tmp/tenken-cluster-bench.XXXXXX)}
mkdir -p "$WORK"
PIDS=()
log() { printf '[%s] %s\n' "$(date +%T)" "$*" >&2; }
want() { [[ " $ONLY " == *" $1 "* ]]; }

cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
    [[ -n ${PG_TEST_DIR:-} ]] && scripts/pg-test-cluster.sh stop "$PG_TEST_DIR"
}
trap cleanup EXIT

command -v wrk >/dev/null || { apt-get install -y wrk >/dev/null 2>&1 || { apt-get update >/dev/null && apt-get install -y wrk >/dev/null; }; }
if [[ ${SKIP_BUILD:-0} != 1 ]]; then
    log "cargo build --release -p tenken"
    cargo build --release -p tenken
fi
BUILT_FROM="commit $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- host plugins Cargo.toml || echo ' + uncommitted changes'), binary of $(date -r "$BIN" -u '+%F %T') UTC"

eval "$(scripts/pg-test-cluster.sh start)"
BASE_URL=$TENKEN_TEST_DATABASE_URL
PSQL_BASE=${BASE_URL%/*}
HZ=$(getconf CLK_TCK)

COMMON_ENV=(
    TENKEN_CFG__CACHE_DIR="$WORK/artifacts"
    TENKEN_CFG__ADMISSION__SUBMISSIONS_PER_INSTITUTION_PER_MINUTE_MAX=100000000
    TENKEN_CFG__ADMISSION__SUBMISSIONS_PER_INSTITUTION_BURST_MAX=100000000
    TENKEN_CFG__ADMISSION__CONNECTIONS_MAX=4096
    TENKEN_CFG__ADMISSION__UPLOADS_INFLIGHT_MAX=2000
    TENKEN_CFG__SSK__QUEUE_CHUNKS_MAX=100000000
    TENKEN_CFG__KOKUHO__QUEUE_CHUNKS_MAX=100000000
    TENKEN_CFG__SCHEDULE__LEASE_MS=$LEASE_MS
    TENKEN_CFG__STORE__CONNECTIONS_MAX=32
    TENKEN_CFG__STORE__STATS_WINDOW_MS=600000
)

# Bodies: 12 institutions (4 per node at most, so two wrk processes never post the same
# institution and month: no file supersedes another).
BODIES=()
CODES=()
seed=1
while ((${#BODIES[@]} < 12)); do
    f=$WORK/body-$seed.UKE
    # Both payers: every other institution submits to kokuho.
    payer=ssk
    ((${#BODIES[@]} % 2 == 1)) && payer=kokuho
    read -r code _receipts _bytes < <("$BIN" bench-server body --out "$f" --bytes "$BODY_BYTES" --seed "$seed" --payer "$payer")
    seed=$((seed + 1))
    [[ " ${CODES[*]} " == *" $code "* ]] && continue
    BODIES+=("$f")
    CODES+=("$code")
done
BODY_RECEIPTS=$(for f in "${BODIES[@]}"; do grep -c $'^RE,' "$f" || true; done | awk '{ s += $1 } END { printf "%.0f", s / NR }')

psql_q() { psql "$1" -Atqc "$2"; }
# pg_ticks: CPU clock ticks of every postgres process now (backends of the pooled
# connections live through a run).
pg_ticks() {
    local t=0 p
    for p in $(pgrep -x postgres); do
        t=$((t + $(awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$p/stat" 2>/dev/null || echo 0)))
    done
    echo "$t"
}
wal_lsn() { psql_q "$1" "SELECT pg_current_wal_lsn() - '0/0'::pg_lsn"; }

# start_nodes KIND N: KIND sqlite (N=1) or postgres; sets NODE_URLS, NODE_PIDS, DB_URL.
start_nodes() {
    local kind=$1 n=$2 i
    NODE_URLS=()
    NODE_PIDS=()
    DB_URL=
    local store=()
    if [[ $kind == postgres ]]; then
        local db=bench_$RANDOM$RANDOM
        psql_q "$BASE_URL" "CREATE DATABASE $db"
        DB_URL=$PSQL_BASE/$db
        store=(--database-url "$DB_URL")
    fi
    for ((i = 0; i < n; i++)); do
        local name=${NAMES[$i]} dir=$WORK/data-$kind-$n-${NAMES[$i]}
        rm -rf "$dir"
        mkdir -p "$dir"
        env "${COMMON_ENV[@]}" "$BIN" serve --listen 127.0.0.1:0 --data-dir "$dir" "${store[@]}" --node-name "$name" \
            --demo-masters --windows always-open >"$dir.out" 2>"$dir.log" &
        NODE_PIDS+=($!)
        PIDS+=($!)
        local k
        for ((k = 0; k < 3000; k++)); do
            [[ -s $dir/serve.addr ]] && curl -sf "http://$(cat "$dir/serve.addr")/readyz" >/dev/null 2>&1 && break
            sleep 0.1
        done
        NODE_URLS+=("http://$(cat "$dir/serve.addr")")
        NODE_DIRS[$i]=$dir
    done
    TOKENS=()
    local code
    for code in "${CODES[@]}"; do
        TOKENS+=("$("$BIN" token create --data-dir "${NODE_DIRS[0]}" "${store[@]}" --institution "$code" 2>/dev/null)")
    done
    ADMIN=$("$BIN" token create --data-dir "${NODE_DIRS[0]}" "${store[@]}" --admin 2>/dev/null)
}
NAMES=(a b c)
declare -a NODE_DIRS

stop_nodes() {
    local p
    for p in "${NODE_PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${NODE_PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
}

# metric_sum NAME-PREFIX: a counter summed over the nodes and label sets.
metric_sum() {
    local u s=0 v
    for u in "${NODE_URLS[@]}"; do
        v=$({ curl -sf "$u/metrics" || true; } | awk -v k="$1" 'index($1, k) == 1 { s += $2 } END { print s + 0 }')
        s=$(awk -v a="$s" -v b="$v" 'BEGIN { print a + b }')
    done
    echo "$s"
}

SUMMARY=$WORK/summary.md
{
    echo "# bench/cluster.sh, $(date -u '+%F %T') UTC"
    echo
    echo "$BUILT_FROM; $(nproc) CPUs; PostgreSQL $(psql_q "$BASE_URL" 'SHOW server_version'); bodies ~$BODY_BYTES bytes, ~$BODY_RECEIPTS receipts"
    echo
} >"$SUMMARY"

# ---------------------------------------------------------------------------------------
if want ack; then
    echo "| acceptance ($CONNS connections, $DURATION, closed loop) | acknowledged/s | per node | PostgreSQL CPU ms / ack | WAL KB / ack |" >>"$SUMMARY"
    echo "|---|---|---|---|---|" >>"$SUMMARY"
    for cfg in "sqlite 1" "postgres 1" "postgres 2" "postgres 3"; do
        read -r kind n <<<"$cfg"
        for ((r = 1; r <= RUNS; r++)); do
            start_nodes "$kind" "$n"
            pg0=$(pg_ticks)
            [[ -n $DB_URL ]] && wal0=$(wal_lsn "$DB_URL")
            per=$((CONNS / n))
            wrkpids=()
            for ((i = 0; i < n; i++)); do
                # Node i posts institutions 4i..4i+3.
                BENCH_BODIES="${BODIES[*]:$((4 * i)):4}" BENCH_TOKENS="${TOKENS[*]:$((4 * i)):4}" BENCH_THREADS=1 BENCH_DELAY_MS=0 \
                    wrk -t1 -c"$per" -d"$DURATION" --timeout 10s -s "$LUA" "${NODE_URLS[$i]}/v1/submissions" \
                    >"$WORK/ack-$kind-$n-$r-$i.wrk" 2>&1 &
                wrkpids+=($!)
            done
            for p in "${wrkpids[@]}"; do wait "$p" || true; done
            pg1=$(pg_ticks)
            acks=0
            for ((i = 0; i < n; i++)); do
                a=$(grep '^RESULT' "$WORK/ack-$kind-$n-$r-$i.wrk" | tr ' ' '\n' | awk -F= '$1 == "ok_per_s" { print $2 }')
                acks=$(awk -v s="$acks" -v a="${a:-0}" 'BEGIN { print s + a }')
            done
            secs=${DURATION%s}
            if [[ -n $DB_URL ]]; then
                wal1=$(wal_lsn "$DB_URL")
                pgcpu=$(awk -v t=$((pg1 - pg0)) -v h="$HZ" -v a="$acks" -v s="$secs" 'BEGIN { printf "%.2f", t / h * 1000 / (a * s) }')
                walkb=$(awk -v w=$((wal1 - wal0)) -v a="$acks" -v s="$secs" 'BEGIN { printf "%.1f", w / 1024 / (a * s) }')
            else
                pgcpu="-"
                walkb="-"
            fi
            log "ack $kind x$n run $r: $acks/s (PostgreSQL $pgcpu ms CPU, $walkb KB WAL per ack)"
            echo "| $kind, $n node(s), run $r | $(printf '%.0f' "$acks") | $(awk -v a="$acks" -v n="$n" 'BEGIN { printf "%.0f", a / n }') | $pgcpu | $walkb |" >>"$SUMMARY"
            stop_nodes
        done
    done
    echo >>"$SUMMARY"
fi

# make_batch: BATCH_FILES distinct files in $WORK/batch (body i mod 12 with its own 請求年月
# from 2021-11 on), written once before any timing.
make_batch() {
    rm -rf "$WORK/batch"
    mkdir -p "$WORK/batch"
    python3 - "$WORK/batch" "$BATCH_FILES" "${BODIES[@]}" <<'EOF'
import sys
out, n, bodies = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
data = [open(b, "rb").read() for b in bodies]
for i in range(n):
    d = data[i % len(bodies)]
    m = 2021 * 12 + 10 + i // len(bodies)
    eol = d.index(b"\r\n")
    f = d[:eol].split(b",")
    f[7] = b"%04d%02d" % (m // 12, m % 12 + 1)
    open(f"{out}/{i}.UKE", "wb").write(b",".join(f) + d[eol:])
EOF
}

# submit_batch TARGETS...: posts the batch (16 parallel curl loops), file i to target i mod
# the number of targets, with the token of its institution.
submit_batch() {
    local targets=("$@")
    seq 0 $((BATCH_FILES - 1)) | TOKENS_S="${TOKENS[*]}" TARGETS_S="${targets[*]}" xargs -P 16 -I{} bash -c '
        i={}; tokens=($TOKENS_S); targets=($TARGETS_S)
        curl -sf -o /dev/null -X POST -H "Authorization: Bearer ${tokens[$((i % 12))]}" \
            --data-binary @"$WORK/batch/$i.UKE" "${targets[$((i % ${#targets[@]}))]}/v1/submissions" || echo "submit $i failed" >&2
    '
}
export WORK

# wait_checked TOTAL_RECEIPTS: until every submission is checked (PostgreSQL: none pending
# in the database; SQLite: the node's receipts_checked reaches the total).
wait_checked() {
    local want=$1 k
    for ((k = 0; k < 36000; k++)); do
        if [[ -n $DB_URL ]]; then
            [[ $(psql_q "$DB_URL" "SELECT count(*) FROM submissions WHERE state IN ('queued', 'checking')") == 0 ]] && return
        else
            local got
            got=$(metric_sum tenken_receipts_checked_total)
            awk -v g="$got" -v w="$want" 'BEGIN { exit !(g >= w) }' && return
        fi
        sleep 0.1
    done
    echo "checking did not finish" >&2
    exit 1
}

batch_receipts() { for ((i = 0; i < BATCH_FILES; i++)); do grep -c $'^RE,' "${BODIES[$((i % 12))]}"; done | awk '{ s += $1 } END { print s }'; }

if want check || want skew; then
    TOTAL=$(batch_receipts)
    make_batch
    echo "| checking ($BATCH_FILES files, $TOTAL receipts) | receipts/s | busy max/mean ssk | busy max/mean kokuho | PostgreSQL CPU ms / chunk | WAL KB / chunk |" >>"$SUMMARY"
    echo "|---|---|---|---|---|---|" >>"$SUMMARY"
    scenarios=()
    want check && scenarios+=("check sqlite 1" "check postgres 1" "check postgres 2" "check postgres 3")
    want skew && scenarios+=("skew postgres 3")
    for cfg in "${scenarios[@]}"; do
        read -r what kind n <<<"$cfg"
        start_nodes "$kind" "$n"
        if [[ $what == skew ]]; then targets=("${NODE_URLS[0]}"); else targets=("${NODE_URLS[@]}"); fi
        pg0=$(pg_ticks)
        [[ -n $DB_URL ]] && wal0=$(wal_lsn "$DB_URL")
        t0=$(date +%s.%N)
        submit_batch "${targets[@]}"
        t_sub=$(date +%s.%N)
        wait_checked "$TOTAL"
        t1=$(date +%s.%N)
        pg1=$(pg_ticks)
        secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')
        subsecs=$(awk -v a="$t0" -v b="$t_sub" 'BEGIN { printf "%.2f", b - a }')
        rps=$(awk -v r="$TOTAL" -v s="$secs" 'BEGIN { printf "%.0f", r / s }')
        chunks=$(metric_sum tenken_chunks_checked_total)
        sleep $((LEASE_MS / 3000 + 1))   # one heartbeat after the end: the figures are current
        view=$(curl -sf -H "Authorization: Bearer $ADMIN" "${NODE_URLS[0]}/v1/cluster")
        bal() { echo "$view" | python3 -c "import json,sys; v=json.load(sys.stdin); b=[x for x in v['balance'] if x['payer']=='$1'][0]; print('%.3f' % b['max_over_mean'] if b['max_over_mean'] else '-')"; }
        if [[ -n $DB_URL ]]; then
            wal1=$(wal_lsn "$DB_URL")
            pgcpu=$(awk -v t=$((pg1 - pg0)) -v h="$HZ" -v c="$chunks" 'BEGIN { printf "%.2f", t / h * 1000 / c }')
            walkb=$(awk -v w=$((wal1 - wal0)) -v c="$chunks" 'BEGIN { printf "%.1f", w / 1024 / c }')
        else
            pgcpu="-"
            walkb="-"
        fi
        log "$what $kind x$n: $rps receipts/s ($secs s, submitted in $subsecs s, $chunks chunks), balance ssk $(bal ssk) kokuho $(bal kokuho)"
        echo "| $what: $kind, $n node(s) | $rps (all submitted after $subsecs s) | $(bal ssk) | $(bal kokuho) | $pgcpu | $walkb |" >>"$SUMMARY"
        stop_nodes
    done
    echo >>"$SUMMARY"
fi

if want kill; then
    start_nodes postgres 3
    TOTAL=$(batch_receipts)
    make_batch
    submit_batch "${NODE_URLS[@]}"
    for ((k = 0; k < 600; k++)); do
        held=$(psql_q "$DB_URL" "SELECT count(*) FROM chunks c JOIN nodes n ON n.owner = c.node WHERE n.name = 'c'")
        ((held > 0)) && break
        sleep 0.05
    done
    kill -KILL "${NODE_PIDS[2]}"
    t0=$(date +%s.%N)
    while (($(psql_q "$DB_URL" "SELECT count(*) FROM chunks c JOIN nodes n ON n.owner = c.node WHERE n.name = 'c'") > 0)); do sleep 0.05; done
    t1=$(date +%s.%N)
    took=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')
    log "kill: node c held $held chunk(s); running elsewhere after $took s (lease $LEASE_MS ms)"
    echo "SIGKILL of node c holding $held chunk(s): its chunks running elsewhere after **$took s** (lease_ms $LEASE_MS)." >>"$SUMMARY"
    NODE_PIDS=("${NODE_PIDS[0]}" "${NODE_PIDS[1]}")
    wait_checked "$TOTAL" || true
    stop_nodes
fi

cat "$SUMMARY"
