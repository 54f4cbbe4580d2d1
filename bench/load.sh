#!/usr/bin/env bash
# bench/load.sh: a bounded load test of Gatehouse on loopback, with many concurrent CI-like
# clients running full update lifecycles (bench/loadgen: create stack, create update, start,
# engine-event batches and K gzip-compressed checkpoints of an N-resource deployment,
# complete, export), round-robin over the servers.
#
# Modes (run in order, each on fresh data):
#   postgres  a throwaway PostgreSQL cluster (initdb/pg_ctl into the work directory, on a
#             loopback port; as the postgres OS user when run as root, with PostgreSQL's
#             durable defaults: fsync and synchronous_commit on), `gatehouse bootstrap`, and
#             P `gatehouse serve --database postgres://...` processes (default 2)
#   sqlite    one `gatehouse serve` process on its embedded SQLite (synchronous=NORMAL)
# It prints loadgen's table (throughput, p50/p99 latency per call kind) per mode, with the
# machine's load before and after, the CPU time and the peak resident memory (VmHWM) of the
# gatehouse processes, and removes everything it started. The memory of one large update:
#   bench/load.sh -m sqlite -c 1 -n 1 -r 10000 -k 20     (checkpoints)
#   bench/load.sh -m sqlite -c 1 -n 1 -r 10000 -j        (journal entries)
#
# Usage: bench/load.sh [-m "postgres sqlite"] [-c 16] [-n 20] [-r 200] [-k 10] [-p 2]
#                      [-t 10m] [-j] [-b] [-f] [-K]
#   -m  modes                                (env LOAD_MODES, default "postgres sqlite")
#   -c  concurrent clients                   (env LOAD_C, default 16)
#   -n  lifecycles per client                (env LOAD_N, default 20)
#   -r  resources per deployment (N)         (env LOAD_RESOURCES, default 200)
#   -k  checkpoints per update (K)           (env LOAD_CHECKPOINTS, default 10)
#   -j  the journaling protocol instead of checkpoints: servers run with --journal=on,
#       loadgen sends a begin and a success entry per resource in batches of 100
#   -p  gatehouse processes on PostgreSQL    (env LOAD_PROCS, default 2)
#   -t  hard time limit per run              (env LOAD_TIME_LIMIT, default 10m)
#   -b  checkpoints in object storage: --blob-url file://WORK/blobs (if the binary has it)
#   -f  PostgreSQL with fsync=off and synchronous_commit=off (as the tests run it)
#   -K  keep the work directory (logs)
# Other environment: GATEHOUSE_BIN a prebuilt gatehouse binary; PGTEST_BINDIR the directory
# of initdb and pg_ctl (default: on PATH, else the newest /usr/lib/postgresql/*/bin).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
MODES=${LOAD_MODES:-"postgres sqlite"}
C=${LOAD_C:-16}
N=${LOAD_N:-20}
R=${LOAD_RESOURCES:-200}
K=${LOAD_CHECKPOINTS:-10}
PROCS=${LOAD_PROCS:-2}
LIMIT=${LOAD_TIME_LIMIT:-10m}
BLOBS=""
FAST=""
KEEP=""
JOURNAL=""
while getopts "m:c:n:r:k:p:t:jbfKh" opt; do
  case $opt in
    m) MODES=$OPTARG ;;
    c) C=$OPTARG ;;
    n) N=$OPTARG ;;
    r) R=$OPTARG ;;
    k) K=$OPTARG ;;
    p) PROCS=$OPTARG ;;
    t) LIMIT=$OPTARG ;;
    j) JOURNAL=1 ;;
    b) BLOBS=1 ;;
    f) FAST=1 ;;
    K) KEEP=1 ;;
    *) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 2 ;;
  esac
done

say() { printf '%s\n' "$*" >&2; }
for m in $MODES; do
  case $m in postgres | sqlite) ;; *) say "unknown mode $m"; exit 2 ;; esac
done
command -v curl >/dev/null || { say "load.sh needs curl"; exit 2; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/gatehouse-load.XXXXXX")
chmod 711 "$WORK" # the postgres OS user must reach its cluster directory inside
PIDS=()
PG_DATA=""
PG_BIN=""
RUN_AS=()

# as_pg runs a PostgreSQL tool, as the postgres OS user when running as root (the server
# refuses to run as root).
as_pg() {
  if [ ${#RUN_AS[@]} -gt 0 ]; then "${RUN_AS[@]}" "$@"; else "$@"; fi
}

stop_servers() {
  local pid
  for pid in ${PIDS[@]+"${PIDS[@]}"}; do kill "$pid" 2>/dev/null || true; done
  for pid in ${PIDS[@]+"${PIDS[@]}"}; do wait "$pid" 2>/dev/null || true; done
  PIDS=()
  if [ -n "$PG_DATA" ] && [ -f "$PG_DATA/postmaster.pid" ]; then
    as_pg "$PG_BIN/pg_ctl" stop -D "$PG_DATA" -m fast -w -t 60 -s >/dev/null 2>&1 || true
  fi
  PG_DATA=""
}

cleanup() {
  stop_servers
  if [ -n "$KEEP" ]; then
    say "work directory kept: $WORK"
  else
    rm -rf "$WORK"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

machine() {
  printf 'machine: %s CPUs, load average %s (%s)\n' "$(nproc)" \
    "$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || uptime)" "$(date -u +%FT%TZ)"
}

free_port() {
  local p
  while :; do
    p=$((20000 + RANDOM % 40000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
      echo "$p"
      return
    fi
  done
}

wait_healthy() { # URL LOG
  local i
  for i in $(seq 1 300); do
    if curl -fsS -o /dev/null "$1/healthz" 2>/dev/null; then return 0; fi
    sleep 0.2
  done
  say "server $1 did not become healthy:"; tail -20 "$2" >&2
  return 1
}

# Build.
mkdir -p "$WORK/bin"
if [ -n "${GATEHOUSE_BIN:-}" ]; then
  GH=$GATEHOUSE_BIN
else
  GH=$WORK/bin/gatehouse
  (cd "$ROOT" && GOFLAGS=${GOFLAGS:--buildvcs=false} go build -o "$GH" ./cmd/gatehouse)
fi
LOADGEN=$WORK/bin/loadgen
(cd "$ROOT" && GOFLAGS=${GOFLAGS:--buildvcs=false} go build -o "$LOADGEN" ./bench/loadgen)

SERVE_EXTRA=()
LOADGEN_EXTRA=()
BLOB_LABEL=""
if [ -n "$JOURNAL" ]; then
  SERVE_EXTRA+=(--journal=on)
  LOADGEN_EXTRA+=(-journal)
fi
if [ -n "$BLOBS" ]; then
  if "$GH" serve --help 2>&1 | grep -q -- --blob-url; then
    SERVE_EXTRA+=(--blob-url "file://$WORK/blobs")
    BLOB_LABEL=", checkpoints in file:// blobs"
  else
    say "this gatehouse has no serve --blob-url: checkpoints stay in the database"
  fi
fi

# serve DATADIR NAME [ARGS...]: starts one gatehouse serve, sets URL.
serve() {
  local dir=$1 name=$2 port
  shift 2
  port=$(free_port)
  URL="http://127.0.0.1:$port"
  "$GH" serve --data-dir "$dir" --addr "127.0.0.1:$port" --log-level warn "$@" ${SERVE_EXTRA[@]+"${SERVE_EXTRA[@]}"} >"$WORK/$name.log" 2>&1 &
  PIDS+=($!)
  wait_healthy "$URL" "$WORK/$name.log"
}

# cpu_seconds PID...: the CPU time (user + system) the processes have used so far.
cpu_seconds() {
  local pid sum=0 t
  for pid in "$@"; do
    t=$(awk '{print $14 + $15}' "/proc/$pid/stat" 2>/dev/null || echo 0)
    sum=$((sum + t))
  done
  awk -v t="$sum" -v hz="$(getconf CLK_TCK)" 'BEGIN {printf "%.1f", t / hz}'
}

# peak_rss PID...: the peak resident memory (VmHWM) of each gatehouse process, in MiB.
peak_rss() {
  local pid out=""
  for pid in "$@"; do
    out="$out $(awk '/^VmHWM:/ {printf "%.0f", $2 / 1024}' "/proc/$pid/status" 2>/dev/null || echo "?")"
  done
  echo "${out# }"
}

# pg_pids: the PostgreSQL server's processes (the postmaster and its children).
pg_pids() {
  [ -n "$PG_DATA" ] && [ -f "$PG_DATA/postmaster.pid" ] || return 0
  local pm
  pm=$(head -1 "$PG_DATA/postmaster.pid")
  echo "$pm"
  ps -o pid= --ppid "$pm" 2>/dev/null || true
}

# children_cpu: the CPU seconds of this shell's finished children so far (bash's times, run
# in this shell: a command substitution would report its own subshell's).
children_cpu() {
  times >"$WORK/times"
  tail -1 "$WORK/times" | awk '{
    s = 0
    for (i = 1; i <= 2; i++) { split($i, p, "m"); sub("s", "", p[2]); s += p[1] * 60 + p[2] }
    printf "%.1f", s }'
}

run_loadgen() { # LABEL TOKEN URLS
  local lg gh0 gh1 pg0 pg1 lc0 lc1
  machine
  children_cpu >"$WORK/cpu0"
  lc0=$(cat "$WORK/cpu0")
  gh0=$(cpu_seconds ${PIDS[@]+"${PIDS[@]}"})
  # shellcheck disable=SC2046
  pg0=$(cpu_seconds $(pg_pids))
  "$LOADGEN" -label "$1" -token "$2" -urls "$3" -c "$C" -n "$N" -resources "$R" -checkpoints "$K" -time-limit "$LIMIT" ${LOADGEN_EXTRA[@]+"${LOADGEN_EXTRA[@]}"} &
  lg=$!
  wait "$lg" || true
  children_cpu >"$WORK/cpu1"
  lc1=$(cat "$WORK/cpu1")
  gh1=$(cpu_seconds ${PIDS[@]+"${PIDS[@]}"})
  # shellcheck disable=SC2046
  pg1=$(cpu_seconds $(pg_pids))
  awk -v a="$gh0" -v b="$gh1" -v c="$pg0" -v d="$pg1" -v e="$lc0" -v f="$lc1" \
    'BEGIN {printf "CPU seconds used during the run: gatehouse %.1f, postgres %.1f (its live processes), loadgen %.1f\n", b - a, d - c, f - e}'
  echo "peak resident memory (VmHWM) of each gatehouse process since it started, MiB: $(peak_rss ${PIDS[@]+"${PIDS[@]}"})"
  machine
  echo
}

start_postgres() {
  if [ -n "${PGTEST_BINDIR:-}" ]; then
    PG_BIN=$PGTEST_BINDIR
  elif command -v initdb >/dev/null && [ -x "$(dirname "$(readlink -f "$(command -v initdb)")")/pg_ctl" ]; then
    PG_BIN=$(dirname "$(readlink -f "$(command -v initdb)")")
  else
    PG_BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k4 -V | tail -1)
  fi
  if [ -z "$PG_BIN" ] || [ ! -x "$PG_BIN/initdb" ] || [ ! -x "$PG_BIN/pg_ctl" ]; then
    say "PostgreSQL server binaries not found (scripts/install-postgres.sh installs them; or set PGTEST_BINDIR)"
    exit 2
  fi
  local dir=$WORK/pg
  mkdir -p "$dir/sock"
  if [ "$(id -u)" = 0 ]; then
    chown -R postgres: "$dir"
    RUN_AS=(runuser -u postgres --)
  fi
  as_pg "$PG_BIN/initdb" -D "$dir/data" -U postgres -A trust -E UTF8 --no-locale >"$WORK/initdb.log" 2>&1 ||
    { cat "$WORK/initdb.log" >&2; exit 1; }
  PG_DATA=$dir/data
  PG_PORT=$(free_port)
  local opts="-p $PG_PORT -c listen_addresses=127.0.0.1 -k $dir/sock -c max_connections=200 -c shared_buffers=128MB"
  if [ -n "$FAST" ]; then
    opts="$opts -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
  fi
  as_pg "$PG_BIN/pg_ctl" start -D "$PG_DATA" -l "$dir/postgres.log" -w -t 60 -s -o "$opts" ||
    { cat "$dir/postgres.log" >&2; exit 1; }
  as_pg "$PG_BIN/createdb" -h 127.0.0.1 -p "$PG_PORT" -U postgres gatehouse
  DB_URL="postgres://postgres@127.0.0.1:$PG_PORT/gatehouse?sslmode=disable"
}

for mode in $MODES; do
  case $mode in
    postgres)
      start_postgres
      data=$WORK/data-pg
      token=$("$GH" bootstrap --data-dir "$data" --database "$DB_URL" --org acme --admin alice)
      urls=""
      for i in $(seq 1 "$PROCS"); do
        serve "$data" "serve-pg-$i" --database "$DB_URL"
        urls="$urls${urls:+,}$URL"
      done
      fs="durable: fsync on"
      [ -n "$FAST" ] && fs="fsync off"
      run_loadgen "PostgreSQL $(as_pg "$PG_BIN/postgres" --version | sed -E 's/.*\(PostgreSQL\) ([0-9.]+).*/\1/') ($fs), $PROCS gatehouse processes$BLOB_LABEL${JOURNAL:+, journaling}" "$token" "$urls"
      ;;
    sqlite)
      data=$WORK/data-sqlite
      token=$("$GH" bootstrap --data-dir "$data" --org acme --admin alice)
      serve "$data" serve-sqlite
      run_loadgen "SQLite (synchronous=NORMAL), 1 gatehouse process$BLOB_LABEL${JOURNAL:+, journaling}" "$token" "$URL"
      ;;
  esac
  stop_servers # this mode's servers (and cluster), before the next mode
done
