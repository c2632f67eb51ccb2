#!/usr/bin/env bash
# Fleet mode's cost, in one run: a job whose contract has a read budget, read through
#   1. one proxy with local state (budgets in memory, revocations in the data dir),
#   2. one proxy with --state (budgets taken in PostgreSQL on every request, revocations polled),
#   3. two proxies with --state, the load split between them.
# Every receipt is signed and fsync'd, as in production. Loopback only; bounded by DUR.
#
#   bash bench/fleet.sh               # DUR=10s CONNS=32
#
# Needs PostgreSQL's initdb/pg_ctl (Debian's postgresql) and oha. On this 2-core machine the
# proxies, PostgreSQL, connect-sim and the load generator share both cores: row 3 shows what
# a second proxy costs here, not how a fleet scales across machines.
set -euo pipefail
cd "$(dirname "$0")/.."
DUR=${DUR:-10s}
CONNS=${CONNS:-32}
PG_BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)

cargo build --release --locked -p claw-proxy -p claw-policy -p claw-tokens -p connect-sim
BIN=$PWD/target/release
WORK=$(mktemp -d -t clawproxy-fleet-bench-XXXXXX)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  as_pg "$PG_BIN/pg_ctl" -D "$WORK/pg" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

# PostgreSQL (durability off: it holds budgets and revocations for this run only).
[ "$(id -u)" = 0 ] && chown postgres "$WORK"
as_pg "$PG_BIN/initdb" -D "$WORK/pg" -U claw --auth=trust --no-sync >/dev/null
as_pg "$PG_BIN/pg_ctl" -D "$WORK/pg" -l "$WORK/pg.log" -w -o \
  "-c listen_addresses=127.0.0.1 -p 18432 -c unix_socket_directories=$WORK -c fsync=off" start >/dev/null
STATE=postgres://claw@127.0.0.1:18432/postgres

"$BIN/connect-sim" --listen 127.0.0.1:18180 --token bench-connect-token >/dev/null 2>&1 &
PIDS+=($!)

# One data dir, cloned for the second proxy (same keys and contracts, its own log).
A=$WORK/a B=$WORK/b
"$BIN/clawproxy" init --data-dir "$A" >/dev/null
sed -i 's#^url = .*#url = "http://127.0.0.1:18180"#; s#^host = .*#host = "localhost"#' "$A/clawproxy.toml"
sed 's#connect.1password.com#localhost#; s#"name": "1password-readonly-agent"#"name": "fleet-bench"#; s#"sandbox"#"rate_limits": {"reads": {"per_second": 100000, "burst": 100000}}, "sandbox"#' \
  examples/policies/1password-readonly-agent.json >"$WORK/contract.json"
"$BIN/clawcontrols" publish "$WORK/contract.json" --data-dir "$A" >/dev/null
TOKEN=$("$BIN/clawscope" mint --policy fleet-bench --job bench-job --agent bench --ttl 900 --data-dir "$A")
# The same contract without the budget: what sharing revocations alone costs.
sed 's#connect.1password.com#localhost#' examples/policies/1password-readonly-agent.json >"$WORK/unbudgeted.json"
"$BIN/clawcontrols" publish "$WORK/unbudgeted.json" --data-dir "$A" >/dev/null
UNBUDGETED=$("$BIN/clawscope" mint --policy 1password-readonly-agent --job bench-job-2 --agent bench --ttl 900 --data-dir "$A")
cp -a "$A" "$B"
basic() { echo "Proxy-Authorization: Basic $(printf '%s' "$1:$2" | base64 -w0)"; }
AUTH=$(basic bench-job "$TOKEN")
URL=http://localhost/v1/vaults/ytrfte14kw1uex5txaore1emkz/items/x4tpzrqojj2ahmv3w7nb6vu2pe

# start_proxy DIR PORT [--state URL --instance NAME]: runs it in the background, waits for its line.
start_proxy() {
  local dir=$1 port=$2; shift 2
  OP_CONNECT_TOKEN=bench-connect-token CLAW_LOG=warn "$BIN/clawproxy" run --data-dir "$dir" \
    --listen 127.0.0.1:"$port" --admin 127.0.0.1:$((port + 1)) "$@" >"$WORK/out.$port" 2>&1 &
  PIDS+=($!)
  for _ in $(seq 100); do grep -q "listening" "$WORK/out.$port" && return; sleep 0.1; done
  echo "proxy on $port did not start:" >&2; cat "$WORK/out.$port" >&2; exit 1
}
stop_proxies() { for pid in "${PIDS[@]:1}"; do kill "$pid"; wait "$pid" 2>/dev/null || true; done; PIDS=("${PIDS[0]}"); }
# load PORT CONNS: req/s, p50 ms and the share of 200s, as "rps p50 ok".
load() {
  oha -z "$DUR" -c "$2" --no-tui --output-format json -x "http://127.0.0.1:$1" \
    --proxy-header "$AUTH" "$URL" |
    python3 -c 'import json,sys; s=json.load(sys.stdin); d=s["statusCodeDistribution"]; n=sum(d.values()) or 1
print("%.0f %.3f %.3f" % (s["summary"]["requestsPerSec"], s["latencyPercentiles"]["p50"]*1000, d.get("200",0)/n))'
}

echo "| setup | req/s | vs local | p50 ms | 200s |"
echo "|---|---:|---:|---:|---:|"
start_proxy "$A" 18190
read -r local_rps p50 ok < <(load 18190 "$CONNS")
echo "| one proxy, local state | $local_rps | 1.00x | $p50 | $ok |"
stop_proxies

start_proxy "$A" 18190 --state "$STATE" --instance a
read -r rps p50 ok < <(load 18190 "$CONNS")
echo "| one proxy, --state postgres (budget in PostgreSQL) | $rps | $(python3 -c "print('%.2fx' % ($rps/$local_rps))") | $p50 | $ok |"
stop_proxies

start_proxy "$A" 18190 --state "$STATE" --instance a
read -r rps p50 ok < <(AUTH=$(basic bench-job-2 "$UNBUDGETED") load 18190 "$CONNS")
echo "| one proxy, --state postgres, contract without a budget | $rps | $(python3 -c "print('%.2fx' % ($rps/$local_rps))") | $p50 | $ok |"
stop_proxies

start_proxy "$A" 18190 --state "$STATE" --instance a
start_proxy "$B" 18290 --state "$STATE" --instance b
load 18190 $((CONNS / 2)) >"$WORK/load.a" &
load 18290 $((CONNS / 2)) >"$WORK/load.b"
wait %% 2>/dev/null || true
read -r rps_a p50_a ok_a <"$WORK/load.a"
read -r rps_b p50_b ok_b <"$WORK/load.b"
rps=$((rps_a + rps_b))
echo "| two proxies, --state postgres, load split | $rps ($rps_a + $rps_b) | $(python3 -c "print('%.2fx' % ($rps/$local_rps))") | $p50_a / $p50_b | $ok_a / $ok_b |"
stop_proxies
