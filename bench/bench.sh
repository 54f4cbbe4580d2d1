#!/usr/bin/env bash
# bench/bench.sh: end-to-end benchmark of Gatehouse with the stock pulumi CLI.
#
# Times `pulumi up --yes --skip-preview` (create) and `pulumi destroy --yes --skip-preview`
# of a generated Node.js program of N component resources, in two shapes:
#   sequential  each component is registered only once the previous one's URN (an output)
#               has resolved, and depends on it: the engine handles one step at a time, and
#               every step waits for its state write to be acknowledged
#   parallel    all components are registered in one synchronous loop, no dependencies
# against these backends (default: all but gatehouse-delta):
#   file               the CLI's local file backend (pulumi login file://...)
#   gatehouse          `gatehouse serve` with its default settings (--journal=auto: the
#                      protocol chosen per update from the round trip and the stack's history)
#   gatehouse-journal  `gatehouse serve --journal` (journaling forced for every update)
#   gatehouse-full     `gatehouse serve --journal=off` (full checkpoints forced, destroys too)
#   gatehouse-delta    `gatehouse serve --delta-checkpoints 1` (delta checkpoints)
#   s3                 the CLI's own S3 backend (pulumi login s3://...) on a local in-memory
#                      S3-compatible server (bench/s3server, github.com/johannesboyne/gofakes3)
# and `pulumi preview` of the same program on an empty stack (file backend) as the floor:
# the engine and the program alone, with no state to write.
#
# Latency: every server backend is reached through bench/delayproxy, a TCP relay that adds
# half of each round trip of -l to each direction (0: the relay without delay), so one
# machine measures a CLI 20, 40 or 80 ms from its server. Each (round trip, N, shape) cell
# uses a stack of its own; the file backend and the floor have no network and are run once.
# Per cell and backend it reports the requests the CLI made per resource and the bytes it
# sent (counted by the relay).
#
# It prints one table of wall-clock seconds with the ratios file/gatehouse (above 1:
# Gatehouse is faster) and gatehouse/floor, then, per command, the server side of the
# state-write requests: their number, p50/p99 latency (from the
# gatehouse_http_request_duration_seconds histogram of /metrics, interpolated within its
# buckets as Prometheus' histogram_quantile does) and the time spent in their handlers; and
# a table of the CPU time (user+sys) of the CLI's process tree and of the server per command,
# steadier than wall-clock time on a loaded machine.
#
# Needs pulumi (and pulumi-language-nodejs) and node on PATH, npm unless a node_modules
# with @pulumi/pulumi is given, Go to build gatehouse unless GATEHOUSE_BIN is given, curl.
# Every pulumi run is bounded by a timeout. Nothing outside a temporary directory is touched.
#
# Usage: bench/bench.sh [-n "200 1000"] [-s "sequential parallel"] [-b "file gatehouse ..."]
#                       [-l "0 20 40 80"] [-t SECONDS] [-r REPEAT] [-k] [-p]
#   -n  resource counts              (env BENCH_NS, default "200 1000")
#   -l  round trips to add, ms       (env BENCH_RTTS, default "0")
#   -s  shapes                       (env BENCH_SHAPES, default "sequential parallel")
#   -b  backends                     (env BENCH_BACKENDS, default "file gatehouse gatehouse-journal gatehouse-full s3";
#                                    file always runs: the floor uses it, unless BENCH_FLOOR=0)
#   -t  timeout per pulumi run, s    (env BENCH_TIMEOUT, default 1800)
#   -r  runs per cell; the fastest is reported (env BENCH_REPEAT, default 1)
#   -k  keep the work directory (logs of every run)
#   -p  profile the CLI: every timed up/destroy runs with pulumi's --profiling, and a last
#       table splits the CLI's CPU samples into where they went (needs `go tool pprof`)
#   -g  the program's language: node (default) or go (bench/goprogram, built once and run by
#       pulumi-language-go as a prebuilt binary; needs pulumi-language-go on PATH, not node)
#                                    (env BENCH_LANG)
# Other environment: BENCH_NODE_MODULES (or GATEHOUSE_E2E_NODE_MODULES) a node_modules
# directory holding @pulumi/pulumi; GATEHOUSE_BIN a prebuilt gatehouse binary;
# BENCH_JOURNALING_BATCH_PERIOD (ms) passed to the CLI as PULUMI_JOURNALING_BATCH_PERIOD (its
# journaling batch timer, 50 ms by default; a client-side setting the server cannot change).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
NS=${BENCH_NS:-"200 1000"}
SHAPES=${BENCH_SHAPES:-"sequential parallel"}
BACKENDS=${BENCH_BACKENDS:-"file gatehouse gatehouse-journal gatehouse-full s3"}
RTTS=${BENCH_RTTS:-"0"}
LANG_=${BENCH_LANG:-node}
TIMEOUT=${BENCH_TIMEOUT:-1800}
REPEAT=${BENCH_REPEAT:-1}
KEEP=${BENCH_KEEP:-}
PROFILE=${BENCH_PROFILE:-}
while getopts "n:s:b:l:g:t:r:kph" opt; do
  case $opt in
    g) LANG_=$OPTARG ;;
    n) NS=$OPTARG ;;
    l) RTTS=$OPTARG ;;
    s) SHAPES=$OPTARG ;;
    b) BACKENDS=$OPTARG ;;
    t) TIMEOUT=$OPTARG ;;
    r) REPEAT=$OPTARG ;;
    k) KEEP=1 ;;
    p) PROFILE=1 ;;
    *) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 2 ;;
  esac
done

say() { printf '%s\n' "$*" >&2; }
skip() {
  say "##############################################################################"
  say "### BENCH SKIPPED: $*"
  say "##############################################################################"
  exit 2
}

command -v pulumi >/dev/null || skip "no \`pulumi\` CLI on PATH"
case $LANG_ in
  node) command -v node >/dev/null || skip "no \`node\` on PATH (the program is a Node.js project)" ;;
  go) command -v pulumi-language-go >/dev/null || skip "no \`pulumi-language-go\` on PATH (-g go)" ;;
  *) say "unknown language $LANG_ (node or go)"; exit 2 ;;
esac
command -v curl >/dev/null || skip "no \`curl\` on PATH"
for b in $BACKENDS; do
  case $b in file | gatehouse | gatehouse-journal | gatehouse-delta | gatehouse-full | s3) ;; *) say "unknown backend $b"; exit 2 ;; esac
done

# The CLI's environment: no agent markers, none of the caller's PULUMI_* settings.
unset CLAUDECODE CLAUDE_CODE AI_AGENT CLAUDE_CODE_ENTRYPOINT CURSOR_AGENT GEMINI_CLI REPL_ID
for v in $(compgen -e); do
  case $v in PULUMI_* | CODEX_*) unset "$v" ;; esac
done
export PULUMI_SKIP_UPDATE_CHECK=true PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION=true
[[ -z ${BENCH_JOURNALING_BATCH_PERIOD:-} ]] || export PULUMI_JOURNALING_BATCH_PERIOD=$BENCH_JOURNALING_BATCH_PERIOD

WORK=$(mktemp -d "${TMPDIR:-/tmp}/gatehouse-bench.XXXXXX")
mkdir -p "$WORK/logs" "$WORK/profiles"
SERVER_PIDS=()
cleanup() {
  local pid
  for pid in ${SERVER_PIDS[@]+"${SERVER_PIDS[@]}"}; do
    kill "$pid" 2>/dev/null || true
  done
  for pid in ${SERVER_PIDS[@]+"${SERVER_PIDS[@]}"}; do
    wait "$pid" 2>/dev/null || true
  done
  if [ -n "$KEEP" ]; then say "work directory kept: $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

PULUMI_VERSION=$(pulumi version)

# --- gatehouse binary -------------------------------------------------------------------
GH=${GATEHOUSE_BIN:-}
GH_REV="prebuilt $GH"
if [ -z "$GH" ]; then
  command -v go >/dev/null || skip "no \`go\` on PATH to build gatehouse (or set GATEHOUSE_BIN)"
  say "building gatehouse..."
  (cd "$ROOT" && go build -buildvcs=false -o "$WORK/bin/gatehouse" ./cmd/gatehouse)
  GH=$WORK/bin/gatehouse
  GH_REV=$(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo "?")
fi

# --- the delay relay and the S3 server -------------------------------------------------
command -v go >/dev/null || skip "no \`go\` on PATH to build bench/delayproxy and bench/s3server"
say "building delayproxy and s3server..."
(cd "$ROOT" && go build -buildvcs=false -o "$WORK/bin/delayproxy" ./bench/delayproxy)
if [[ " $BACKENDS " == *" s3 "* ]]; then
  (cd "$ROOT/bench/s3server" && go build -buildvcs=false -o "$WORK/bin/s3server" .)
fi

# --- node_modules, shared by every project (or the Go program) ----------------------------
MODULES=${BENCH_NODE_MODULES:-${GATEHOUSE_E2E_NODE_MODULES:-}}
if [ "$LANG_" = go ]; then
  say "building bench/goprogram..."
  (cd "$ROOT/bench/goprogram" && go build -buildvcs=false -o "$WORK/bin/goprogram" .)
elif [ -z "$MODULES" ]; then
  command -v npm >/dev/null || skip "no \`npm\` on PATH (or set BENCH_NODE_MODULES to a node_modules holding @pulumi/pulumi)"
  mkdir -p "$WORK/node"
  echo '{"name":"gatehouse-bench-deps","private":true}' >"$WORK/node/package.json"
  sdk=$(printf '%s' "$PULUMI_VERSION" | sed -n 's/^v\{0,1\}\([0-9]*\.[0-9]*\.[0-9]*\).*/\1/p')
  say "npm install @pulumi/pulumi@${sdk:-^3}..."
  (cd "$WORK/node" && timeout 900 npm install --no-audit --no-fund --loglevel=error "@pulumi/pulumi@${sdk:-^3}" >"$WORK/logs/npm.log" 2>&1) ||
    (cd "$WORK/node" && timeout 900 npm install --no-audit --no-fund --loglevel=error "@pulumi/pulumi@^3" >>"$WORK/logs/npm.log" 2>&1) ||
    { cat "$WORK/logs/npm.log" >&2; exit 1; }
  MODULES=$WORK/node/node_modules
fi
[ "$LANG_" = go ] || [ -f "$MODULES/@pulumi/pulumi/package.json" ] || { say "$MODULES holds no @pulumi/pulumi"; exit 1; }

# --- the program -------------------------------------------------------------------------
make_project() { # dir
  mkdir -p "$1"
  if [ "$LANG_" = go ]; then
    printf 'name: bench\nruntime:\n  name: go\n  options:\n    binary: %s\ndescription: Gatehouse benchmark program (N component resources)\n' "$WORK/bin/goprogram" >"$1/Pulumi.yaml"
    return
  fi
  cat >"$1/Pulumi.yaml" <<'EOF'
name: bench
runtime: nodejs
description: Gatehouse benchmark program (N component resources)
EOF
  echo '{"name":"bench","main":"index.js","private":true,"dependencies":{"@pulumi/pulumi":"^3"}}' >"$1/package.json"
  cat >"$1/index.js" <<'EOF'
"use strict";
const pulumi = require("@pulumi/pulumi");

class Comp extends pulumi.ComponentResource {
    constructor(name, opts) {
        super("bench:index:Comp", name, {}, opts);
        this.registerOutputs({});
    }
}

const n = parseInt(process.env.BENCH_N || "10", 10);
const sequential = process.env.BENCH_SHAPE === "sequential";

module.exports = async () => {
    let prev;
    for (let i = 0; i < n; i++) {
        const c = new Comp(`comp-${i}`, prev ? { dependsOn: [prev] } : {});
        if (sequential) {
            // Register the next one only once this one's URN, an output, is known.
            await new Promise((resolve) => c.urn.apply(resolve));
            prev = c;
        }
    }
    return { count: n };
};
EOF
  ln -s "$MODULES" "$1/node_modules"
}

# --- timing --------------------------------------------------------------------------------
ELAPSED="" CPU=""
timed() { # log-name, command...: sets ELAPSED (seconds, or TIMEOUT / FAIL) and CPU
  local log=$WORK/logs/$1.log rc=0 t0 t1 TIMEFORMAT='%U %S'
  shift
  t0=$(date +%s.%N)
  # user+sys CPU of the whole process tree (pulumi, its language host, node)
  { time timeout --kill-after=30 "$TIMEOUT" "$@" >"$log" 2>&1; } 2>"$log.cpu" || rc=$?
  t1=$(date +%s.%N)
  CPU=$(awk '{ printf "%.1f", $1 + $2 }' "$log.cpu")
  if [ $rc -eq 0 ]; then
    ELAPSED=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')
  elif [ $rc -eq 124 ] || [ $rc -eq 137 ]; then
    ELAPSED=TIMEOUT
    say "  TIMEOUT after ${TIMEOUT}s: $* (log $log)"
  else
    ELAPSED=FAIL
    say "  FAILED ($rc): $* (log $log):"
    tail -5 "$log" >&2 || true
  fi
}

# Keys are "RTT N shape op backend" (RTT "-" for the file backend and the floor).
declare -A RES      # -> seconds
declare -A CPUS     # -> CLI CPU seconds of that run
declare -A SRVCPU   # -> server CPU seconds of that run
declare -A REQS     # -> requests the CLI made per resource in that run
declare -A SENT     # -> bytes the CLI sent in that run
declare -A CONNS    # -> TCP connections the CLI opened in that run
declare -A CHOICE   # -> the protocol gatehouse (auto) chose: protocol/reason
declare -A LATENCY  # "backend RTT N shape op" -> latency lines
best() { # key: keep ELAPSED (and CPU) if it is the fastest run so far
  local old=${RES[$1]:-}
  if [ -z "$old" ] || ! [[ $old =~ ^[0-9.]+$ ]] || { [[ $ELAPSED =~ ^[0-9.]+$ ]] && awk -v a="$ELAPSED" -v b="$old" 'BEGIN { exit !(a < b) }'; }; then
    RES[$1]=$ELAPSED
    CPUS[$1]=$CPU
  fi
}

free_port() {
  local p
  while :; do
    p=$((20000 + RANDOM % 20000))
    (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return; }
  done
}

# --- servers and their relays -------------------------------------------------------------
declare -A GH_URL GH_TOKEN GH_PID PROXY_STATS S3_ADDR
wait_file() { # file: wait until it exists
  for _ in $(seq 1 300); do [ -s "$1" ] && return 0; sleep 0.1; done
  say "$1 did not appear"; exit 1
}
start_proxy() { # backend target: a delay relay in front of the backend's server (sets PROXY_ADDR)
  local f=$WORK/proxy-$1.addr
  "$WORK/bin/delayproxy" -target "$2" -stats 127.0.0.1:0 -addr-file "$f" >"$WORK/logs/$1-proxy.log" 2>&1 &
  SERVER_PIDS+=($!)
  wait_file "$f"
  PROXY_STATS[$1]=http://$(sed -n 2p "$f")
  PROXY_ADDR=$(sed -n 1p "$f")
}
set_rtt() { curl -fs -X POST "${PROXY_STATS[$1]}/rtt?value=${2}ms" >/dev/null; }
proxy_bytes_up() { curl -fs "${PROXY_STATS[$1]}/" | awk '$1 == "bytes_up" { print $2 }'; }
proxy_conns() { curl -fs "${PROXY_STATS[$1]}/" | awk '$1 == "conns" { print $2 }'; }
start_s3() {
  local f=$WORK/s3.addr
  "$WORK/bin/s3server" -addr-file "$f" >"$WORK/logs/s3-serve.log" 2>&1 &
  SERVER_PIDS+=($!)
  GH_PID[s3]=$!
  wait_file "$f"
  S3_ADDR[s3]=$(cat "$f")
}
# requests backend: requests the backend's server has answered so far
requests() {
  if [ "$1" = s3 ]; then
    curl -fs "http://${S3_ADDR[s3]}/_bench/stats" | awk '$1 == "requests" { print $2 }'
  else
    curl -fs "${GH_URL[$1]}/metrics" | awk '/^gatehouse_http_requests_total\{/ { s += $2 } END { printf "%d\n", s }'
  fi
}
# choices backend: the protocol choices counted so far, "protocol/reason=count ..."
choices() {
  curl -fs "${GH_URL[$1]}/metrics" | awk '/^gatehouse_update_protocol_total\{/ && $2 > 0 {
    match($0, /protocol="[^"]*"/); p = substr($0, RSTART + 10, RLENGTH - 11)
    match($0, /reason="[^"]*"/); r = substr($0, RSTART + 8, RLENGTH - 9)
    printf "%s/%s=%d ", p, r, $2 }'
}
# diff_choices before after: the choices counted between two choices() readings
diff_choices() {
  awk -v a="$1" -v b="$2" 'BEGIN {
    n = split(a, x, " "); for (i = 1; i <= n; i++) { split(x[i], kv, "="); old[kv[1]] = kv[2] }
    n = split(b, y, " "); for (i = 1; i <= n; i++) { split(y[i], kv, "="); if (kv[2] - old[kv[1]] > 0) { printf "%s%s", sep, kv[1]; sep = "," } }
  }'
}
start_gatehouse() { # backend
  local b=$1 dir=$WORK/server-$1 port flags=()
  case $b in
    gatehouse-journal) flags=(--journal) ;;
    gatehouse-delta) flags=(--delta-checkpoints 1) ;;
    gatehouse-full) flags=(--journal=off) ;;
  esac
  mkdir -p "$dir"
  GH_TOKEN[$b]=$("$GH" bootstrap --data-dir "$dir/data" --org acme --admin bench)
  port=$(free_port)
  "$GH" serve --data-dir "$dir/data" --addr "127.0.0.1:$port" --log-level warn ${flags[@]+"${flags[@]}"} >"$WORK/logs/$b-serve.log" 2>&1 &
  SERVER_PIDS+=($!)
  GH_PID[$b]=$!
  GH_URL[$b]=http://127.0.0.1:$port
  for _ in $(seq 1 300); do
    curl -fs "${GH_URL[$b]}/healthz" >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  say "gatehouse ($b) did not start:"; cat "$WORK/logs/$b-serve.log" >&2; exit 1
}

# cpu_ticks backend: user+system CPU the server process has used, in clock ticks.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/${GH_PID[$1]}/stat" 2>/dev/null || echo 0; }
CLK_TCK=$(getconf CLK_TCK 2>/dev/null || echo 100)

scrape() { # backend file: the latency histogram and sums of the state-write routes
  echo "cpu_ticks $(cpu_ticks "$1")" >"$2.cpu"
  curl -fs "${GH_URL[$1]}/metrics" | grep -E '^gatehouse_http_request_duration_seconds_(bucket|sum)\{' |
    grep -E 'route="[^"]*/(checkpoint|checkpointverbatim|checkpointdelta|journalentries)"' >"$2" || true
}

# latency before after: one line per state-write route of the requests between the scrapes:
# route requests p50-ms p99-ms seconds-in-handlers
latency() {
  awk '
    function lev(s) { return s == "+Inf" ? 1e300 : s + 0 }
    function route(s) { match(s, /route="[^"]*"/); s = substr(s, RSTART + 7, RLENGTH - 8); sub(/.*\//, "", s); return s }
    FILENAME == ARGV[1] { before[$1] = $2; next }
    {
      d = $2 - (($1 in before) ? before[$1] : 0)
      r = route($1); routes[r] = 1
      if ($1 ~ /_sum\{/) { sum[r] += d; next }
      match($1, /le="[^"]*"/); le = substr($1, RSTART + 4, RLENGTH - 5)
      n[r]++; les[r, n[r]] = le; cnt[r, le] += d
    }
    function quantile(r, q,    i, j, t, tot, rank, prevle, prevc, le, c) {
      for (i = 1; i <= n[r]; i++) for (j = i + 1; j <= n[r]; j++)
        if (lev(les[r, j]) < lev(les[r, i])) { t = les[r, i]; les[r, i] = les[r, j]; les[r, j] = t }
      tot = cnt[r, "+Inf"]; if (tot <= 0) return -1
      rank = q * tot; prevle = 0; prevc = 0
      for (i = 1; i <= n[r]; i++) {
        le = les[r, i]; c = cnt[r, le]
        if (c >= rank) {
          if (le == "+Inf") return prevle
          if (c == prevc) return lev(le)
          return prevle + (lev(le) - prevle) * (rank - prevc) / (c - prevc)
        }
        prevle = lev(le); prevc = c
      }
      return prevle
    }
    END {
      for (r in routes) {
        tot = cnt[r, "+Inf"]; if (tot <= 0) continue
        printf "%s %d %.2f %.2f %.2f\n", r, tot, quantile(r, 0.5) * 1000, quantile(r, 0.99) * 1000, sum[r]
      }
    }' "$1" "$2"
}

# --- one backend ------------------------------------------------------------------------
bench_backend() { # backend
  local b=$1 proj=$WORK/proj-$b n shape stack r op before after rtt rtts key req0 sent0 conn0 ch0 tag kb
  export PULUMI_HOME=$WORK/home-$b
  make_project "$proj"
  rtts=$RTTS
  case $b in
    file)
      rtts=-
      mkdir -p "$WORK/filestate"
      export PULUMI_CONFIG_PASSPHRASE=bench
      unset PULUMI_ACCESS_TOKEN
      (cd "$proj" && pulumi login "file://$WORK/filestate" >"$WORK/logs/login-$b.log" 2>&1)
      ;;
    s3)
      start_s3
      start_proxy "$b" "${S3_ADDR[s3]}"
      export PULUMI_CONFIG_PASSPHRASE=bench AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench AWS_REGION=us-east-1
      unset PULUMI_ACCESS_TOKEN
      (cd "$proj" && pulumi login "s3://bench?endpoint=http://$PROXY_ADDR&use_path_style=true&disable_https=true&region=us-east-1" >"$WORK/logs/login-$b.log" 2>&1)
      ;;
    *)
      start_gatehouse "$b"
      start_proxy "$b" "${GH_URL[$b]#http://}"
      unset PULUMI_CONFIG_PASSPHRASE
      export PULUMI_ACCESS_TOKEN=${GH_TOKEN[$b]}
      (cd "$proj" && pulumi login "http://$PROXY_ADDR" >"$WORK/logs/login-$b.log" 2>&1)
      ;;
  esac
  cd "$proj"
  # Warm-up (untimed): node, the SDK, the language host and the program into the page cache,
  # and a whole update and destroy through this backend (server, relay, its first stack),
  # so that the first timed run is not the slow one (the 0 ms cells showed 20-40% between
  # the first backend run and the next with a preview alone as warm-up).
  pulumi stack init warmup >/dev/null 2>&1
  BENCH_N=10 BENCH_SHAPE=parallel timeout "$TIMEOUT" pulumi preview >"$WORK/logs/$b-warmup.log" 2>&1 || true
  if [ "$b" != file ]; then
    set_rtt "$b" 0
    for _ in 1 2; do
      BENCH_N=50 BENCH_SHAPE=parallel timeout "$TIMEOUT" pulumi up --yes --skip-preview >>"$WORK/logs/$b-warmup.log" 2>&1 || true
      BENCH_N=50 BENCH_SHAPE=parallel timeout "$TIMEOUT" pulumi destroy --yes --skip-preview >>"$WORK/logs/$b-warmup.log" 2>&1 || true
    done
  fi
  for rtt in $rtts; do
    [ "$b" = file ] || set_rtt "$b" "$rtt"
    for n in $NS; do
      for shape in $SHAPES; do
        export BENCH_N=$n BENCH_SHAPE=$shape
        if [ "$b" = file ]; then # the floor: preview on an empty stack
          stack=floor-$shape-$n
          pulumi stack init "$stack" >/dev/null 2>&1
          for r in $(seq 1 "$REPEAT"); do
            timed "floor-$shape-$n-$r" pulumi preview --stack "$stack"
            best "- $n $shape create floor"
            say "  floor              N=$n $shape preview: $ELAPSED s (CLI CPU $CPU s)"
          done
        fi
        stack=bench-$shape-$n-rtt${rtt/-/x}
        pulumi stack init "$stack" >/dev/null 2>&1
        # gatehouse (auto) chooses from the stack's history: its first create and destroy
        # (a new stack's) are reported apart, as gatehouse-first.
        for r in $([ "$b" != gatehouse ] || echo first; seq 1 "$REPEAT"); do
          kb=$b
          [ "$r" != first ] || kb=$b-first
          for op in create destroy; do
            tag=$kb-rtt${rtt/-/x}-$shape-$n-$op-$r
            key="$rtt $n $shape $op $kb"
            before=$WORK/logs/$tag.before after=$WORK/logs/$tag.after
            if [ "$b" != file ]; then
              req0=$(requests "$b") sent0=$(proxy_bytes_up "$b") conn0=$(proxy_conns "$b")
              [ "$b" = s3 ] || { scrape "$b" "$before"; ch0=$(choices "$b"); }
            fi
            prof=()
            [ -z "$PROFILE" ] || prof=(--profiling "$WORK/profiles/$tag")
            if [ $op = create ]; then
              timed "$tag" pulumi up --yes --skip-preview --stack "$stack" ${prof[@]+"${prof[@]}"}
            else
              timed "$tag" pulumi destroy --yes --skip-preview --stack "$stack" ${prof[@]+"${prof[@]}"}
            fi
            best "$key"
            if [ "$b" != file ] && [ "${RES[$key]}" = "$ELAPSED" ]; then # the run reported
              REQS[$key]=$(awk -v a="$req0" -v b="$(requests "$b")" -v n="$n" 'BEGIN { printf "%.2f", (b - a) / n }')
              SENT[$key]=$(($(proxy_bytes_up "$b") - sent0))
              CONNS[$key]=$(($(proxy_conns "$b") - conn0))
              if [ "$b" != s3 ]; then
                scrape "$b" "$after"
                LATENCY["$kb $rtt $n $shape $op"]=$(latency "$before" "$after")
                SRVCPU[$key]=$(awk -v tck="$CLK_TCK" 'FILENAME == ARGV[1] { a = $2; next } { printf "%.1f", ($2 - a) / tck }' "$before.cpu" "$after.cpu")
                CHOICE[$key]=$(diff_choices "$ch0" "$(choices "$b")")
              fi
            fi
            say "  $(printf '%-18s' "$kb") rtt=${rtt}ms N=$n $shape $op: $ELAPSED s (CLI CPU $CPU s, requests/resource ${REQS[$key]:--}, sent ${SENT[$key]:--} B${CHOICE[$key]:+, chose ${CHOICE[$key]}})"
            if [[ $ELAPSED == TIMEOUT || $ELAPSED == FAIL ]] && [ "$b" != file ]; then
              pulumi cancel --yes --stack "$stack" >/dev/null 2>&1 || true
            fi
          done
        done
      done
    done
  done
  cd "$WORK"
}

# --- run ------------------------------------------------------------------------------------
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo "?")
say "gatehouse bench: N=[$NS] shapes=[$SHAPES] rtt=[$RTTS] ms backends=[$BACKENDS] timeout=${TIMEOUT}s repeat=$REPEAT"
say "work directory: $WORK"
# the floor runs on the file backend (BENCH_FLOOR=0: neither, unless file is listed)
[[ " $BACKENDS " == *" file "* || ${BENCH_FLOOR:-1} == 0 ]] || BACKENDS="file $BACKENDS"
for b in $BACKENDS; do
  say "== $b"
  bench_backend "$b"
done
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo "?")

# --- report ---------------------------------------------------------------------------------
ratio() { # a b -> a/b
  if [[ $1 =~ ^[0-9.]+$ && $2 =~ ^[0-9.]+$ ]] && awk -v b="$2" 'BEGIN { exit !(b > 0) }'; then
    awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'
  else
    echo "-"
  fi
}
GHS=()
for b in $BACKENDS; do
  [ "$b" = file ] || GHS+=("$b")
  [ "$b" != gatehouse ] || GHS+=(gatehouse-first)
done
short() { case $1 in gatehouse) echo gh ;; gatehouse-first) echo gh-first ;; gatehouse-journal) echo gh-journal ;; gatehouse-delta) echo gh-delta ;; gatehouse-full) echo gh-full ;; *) echo "$1" ;; esac; }
has() { [[ " ${GHS[*]} " == *" $1 "* ]]; }
# fastest a b: the smaller of two figures ("-" when neither is a number)
fastest() {
  if [[ $1 =~ ^[0-9.]+$ && $2 =~ ^[0-9.]+$ ]]; then awk -v a="$1" -v b="$2" 'BEGIN { print (a < b) ? a : b }'
  elif [[ $1 =~ ^[0-9.]+$ ]]; then echo "$1"
  elif [[ $2 =~ ^[0-9.]+$ ]]; then echo "$2"
  else echo -; fi
}
# cells: every (RTT N shape op) in order
cells() {
  local rtt n shape op
  for rtt in $RTTS; do for n in $NS; do for shape in $SHAPES; do for op in create destroy; do
    echo "$rtt $n $shape $op"
  done; done; done; done
}

echo
echo "Gatehouse end-to-end benchmark: wall-clock seconds per pulumi command (fastest of $REPEAT)"
echo "machine: $(nproc) CPU, $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo 2>/dev/null | head -1), $(uname -sr)"
echo "load average (1/5/15 min): start $LOAD_START, end $LOAD_END"
if [ "$LANG_" = go ]; then
  echo "pulumi $PULUMI_VERSION, Go program (bench/goprogram, $(cd "$ROOT/bench/goprogram" && go list -m -f '{{.Path}} {{.Version}}' github.com/pulumi/pulumi/sdk/v3)), gatehouse $GH_REV"
else
  echo "pulumi $PULUMI_VERSION, node $(node --version), @pulumi/pulumi $(node -p "require(process.argv[1]).version" "$MODULES/@pulumi/pulumi/package.json"), gatehouse $GH_REV"
fi
[[ -z ${PULUMI_JOURNALING_BATCH_PERIOD:-} ]] || echo "the CLI's journaling batch period: ${PULUMI_JOURNALING_BATCH_PERIOD} ms (BENCH_JOURNALING_BATCH_PERIOD; default 50)"
echo "create = up --yes --skip-preview, destroy = destroy --yes --skip-preview, floor = preview on an empty stack"
echo "rtt = round trip added by the delay relay in front of every server backend (ms); file and floor have no network"
echo "gh = gatehouse (auto) on a stack with history (its earlier create and destroy: gh-first, a new stack's)"
echo "forced = the faster of gh-journal and gh-full; forced/gh above 0.9 meets the target, s3/gh above 2 too"
echo
{
  hdr="rtt N shape op floor file"
  for g in "${GHS[@]}"; do hdr+=" $(short "$g")"; done
  has gatehouse && hdr+=" gh-chose gh-first-chose"
  has gatehouse && { has gatehouse-journal || has gatehouse-full; } && hdr+=" forced/gh"
  has gatehouse && has s3 && hdr+=" s3/gh"
  has gatehouse && hdr+=" file/gh gh/floor"
  echo "$hdr"
  cells | while read -r rtt n shape op; do
    floor=${RES["- $n $shape create floor"]:--}
    [ $op = create ] || floor=-
    file=${RES["- $n $shape $op file"]:--}
    line="$rtt $n $shape $op $floor $file"
    for g in "${GHS[@]}"; do line+=" ${RES["$rtt $n $shape $op $g"]:--}"; done
    gh=${RES["$rtt $n $shape $op gatehouse"]:--}
    if has gatehouse; then c=${CHOICE["$rtt $n $shape $op gatehouse"]:-}; line+=" ${c:--}"; fi
    if has gatehouse; then c=${CHOICE["$rtt $n $shape $op gatehouse-first"]:-}; line+=" ${c:--}"; fi
    has gatehouse && { has gatehouse-journal || has gatehouse-full; } &&
      line+=" $(ratio "$(fastest "${RES["$rtt $n $shape $op gatehouse-journal"]:--}" "${RES["$rtt $n $shape $op gatehouse-full"]:--}")" "$gh")"
    has gatehouse && has s3 && line+=" $(ratio "${RES["$rtt $n $shape $op s3"]:--}" "$gh")"
    has gatehouse && line+=" $(ratio "$file" "$gh") $(ratio "$gh" "$floor")"
    echo "$line"
  done
} | column -t

echo
echo "Requests the CLI made per resource / kilobytes it sent / TCP connections it opened (through the relay), per command"
{
  hdr="rtt N shape op"
  for g in "${GHS[@]}"; do hdr+=" $(short "$g")-req/res $(short "$g")-KB $(short "$g")-conns"; done
  echo "$hdr"
  cells | while read -r rtt n shape op; do
    line="$rtt $n $shape $op"
    for g in "${GHS[@]}"; do
      sent=${SENT["$rtt $n $shape $op $g"]:-}
      [ -n "$sent" ] && sent=$(awk -v b="$sent" 'BEGIN { printf "%.1f", b / 1024 }')
      line+=" ${REQS["$rtt $n $shape $op $g"]:--} ${sent:--} ${CONNS["$rtt $n $shape $op $g"]:--}"
    done
    echo "$line"
  done
} | column -t

echo
echo "CPU seconds (user+sys) of the same runs: the CLI's process tree (pulumi, language host, node); srv = the gatehouse process"
{
  hdr="rtt N shape op floor file"
  for g in "${GHS[@]}"; do hdr+=" $(short "$g")"; [ "$g" = s3 ] || hdr+=" $(short "$g")-srv"; done
  echo "$hdr"
  cells | while read -r rtt n shape op; do
    floor=${CPUS["- $n $shape create floor"]:--}
    [ $op = create ] || floor=-
    line="$rtt $n $shape $op $floor ${CPUS["- $n $shape $op file"]:--}"
    for g in "${GHS[@]}"; do
      line+=" ${CPUS["$rtt $n $shape $op $g"]:--}"
      [ "$g" = s3 ] || line+=" ${SRVCPU["$rtt $n $shape $op $g"]:--}"
    done
    echo "$line"
  done
} | column -t

if [ ${#GHS[@]} -gt 0 ]; then
  echo
  echo "Gatehouse server-side latency of the state-write requests (from /metrics, per command)"
  {
    echo "backend rtt N shape op route requests p50-ms p99-ms in-handler-s"
    for g in "${GHS[@]}"; do
      [ "$g" = s3 ] && continue
      cells | while read -r rtt n shape op; do
        while read -r line; do
          [ -n "$line" ] && echo "$(short "$g") $rtt $n $shape $op $line"
        done <<<"${LATENCY["$g $rtt $n $shape $op"]:-}"
      done
    done
  } | column -t
fi

# cli_breakdown PROFILE: the CLI's CPU samples (seconds) split into where they went, from
# `go tool pprof -top -cum` (cumulative time of the named functions; the parts overlap with
# their parents, not with each other).
cli_breakdown() {
  go tool pprof -top -cum -nodecount=100000 "$1" 2>/dev/null | awk '
    function sec(s) { if (s ~ /ms$/) { sub(/ms$/, "", s); return s / 1000 } if (s ~ /us$|µs$/) { sub(/(us|µs)$/, "", s); return s / 1e6 } sub(/s$/, "", s); return s + 0 }
    /^Duration:/ { for (i = 1; i <= NF; i++) if ($i == "samples") { t = $(i + 2); sub(/\(.*/, "", t); total = sec(t) } }
    NF >= 6 && $4 ~ /[0-9](ms|s|us|µs)$/ {
      name = $6; c = sec($4)
      if (name ~ /backend\.\(\*SnapshotManager\)\.saveSnapshot$/) persist += c
      else if (name ~ /snapshot\.VerifyIntegrity$/) integrity += c
      else if (name ~ /client\.\(\*Client\)\.PatchUpdateCheckpoint(Verbatim|Delta)?$/) send += c
      else if (name ~ /\(\*localSnapshotPersister\)\.Save$/) send += c
      else if (name ~ /backend\.\(\*SnapshotJournaler\)\.saveSnapshot$/) shadow += c
      else if (name ~ /journal\.\(\*cloudJournaler\)\.AddJournalEntry$/) journal += c
      else if (name ~ /^runtime\.gcBgMarkWorker$/) gc += c
    }
    END { printf "%.1f %.1f %.1f %.1f %.1f %.1f %.1f\n", total, persist, integrity, send, shadow, journal, gc }'
}

if [ -n "$PROFILE" ]; then
  echo
  echo "Where the CLI's CPU went (seconds of profile samples of the pulumi process, from --profiling):"
  echo "persist = SnapshotManager.saveSnapshot (a checkpoint per step), of which integrity = its"
  echo "VerifyIntegrity and send = the checkpoint request (serialize, gzip, HTTP) or the file write;"
  echo "shadow = SnapshotJournaler.saveSnapshot (the CLI's own journal check beside checkpoints);"
  echo "journal = cloudJournaler.AddJournalEntry; gc = the garbage collector's background marking"
  {
    echo "run total persist integrity send shadow journal gc"
    for f in "$WORK"/profiles/*.cpu; do
      [ -e "$f" ] || continue
      r=$(basename "$f"); r=${r%.*.cpu}
      echo "$r $(cli_breakdown "$f")"
    done
  } | column -t
fi
