#!/usr/bin/env bash
# Memory of clawproxy with many open connections (issue 11's target: RSS < 64 MiB with 1,000
# idle connections; bounded under a slowloris load). Builds release binaries, runs connect-sim
# and one proxy on loopback, and drives bench/memory.py against it: a baseline, CONNS idle
# keep-alive connections after one read each, then CONNS slowloris heads.
#
#   bash bench/memory.sh                  # CONNS=1000 HOLD=5
#   CONNS=2000 bash bench/memory.sh
set -euo pipefail
cd "$(dirname "$0")/.."
CONNS=${CONNS:-1000} HOLD=${HOLD:-5}
ulimit -n $((CONNS * 2 + 256))

cargo build --release --locked -p claw-proxy -p claw-policy -p claw-tokens -p connect-sim
BIN=$PWD/target/release
WORK=$(mktemp -d -t clawproxy-memory-XXXXXX)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

"$BIN/connect-sim" --listen 127.0.0.1:18280 --token bench-connect-token >/dev/null 2>&1 &
PIDS+=($!)
DATA=$WORK/claw
"$BIN/clawproxy" init --data-dir "$DATA" >/dev/null
sed -i 's#^url = .*#url = "http://127.0.0.1:18280"#; s#^host = .*#host = "localhost"#' "$DATA/clawproxy.toml"
sed 's#connect.1password.com#localhost#' examples/policies/1password-readonly-agent.json >"$WORK/contract.json"
"$BIN/clawcontrols" publish "$WORK/contract.json" --data-dir "$DATA" >/dev/null
TOKEN=$("$BIN/clawscope" mint --policy 1password-readonly-agent --job memory-job --agent bench --ttl 900 --data-dir "$DATA")

OP_CONNECT_TOKEN=bench-connect-token CLAW_LOG=warn "$BIN/clawproxy" run --data-dir "$DATA" \
  --listen 127.0.0.1:18290 --admin 127.0.0.1:18291 >"$WORK/proxy.out" 2>&1 &
PROXY=$!
PIDS+=("$PROXY")
for _ in $(seq 100); do grep -q listening "$WORK/proxy.out" && break; sleep 0.1; done
grep -q listening "$WORK/proxy.out" || { cat "$WORK/proxy.out" >&2; exit 1; }

AUTH="Basic $(printf '%s' "memory-job:$TOKEN" | base64 -w0)"
URL=http://localhost/v1/vaults/ytrfte14kw1uex5txaore1emkz/items/x4tpzrqojj2ahmv3w7nb6vu2pe
echo "clawproxy $(git rev-parse --short HEAD), CONNS=$CONNS HOLD=${HOLD}s, header deadline 10 s (default)"
python3 bench/memory.py "$PROXY" 127.0.0.1:18290 "$AUTH" "$URL" "$CONNS" "$HOLD"
echo "receipts written: $(cat "$DATA"/receipts/*/seg-*.jsonl | wc -l)"
