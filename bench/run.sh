#!/usr/bin/env bash
# Peer benchmark with clawproxy plugged in: builds release binaries, prepares a data dir whose
# contract allows read_item on the bench vault, mints a job token, and runs the shared harness
# (../shared/bench/peers.sh) with clawproxy as an extra row for HTTP and HTTPS (interception).
# Every receipt is signed and fsync'd before release, as in production.
#
#   bash bench/run.sh                 # full run (~8 minutes)
#   DUR=5s REPS=1 bash bench/run.sh   # shorter
#
# The shared upstream serves the item on 127.0.0.1:18080; clawproxy maps the Connect name there
# for both suites, so the HTTPS row measures interception (agent-side TLS) plus the proxy. oha
# resolves the target name itself even through a proxy, so when connect.1password.com does not
# resolve here (no DNS in a sandbox) the Connect name is `localhost` (BENCH_HOST= overrides).
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED=${SHARED:-$(cd .. && pwd)/shared}
[ -f "$SHARED/bench/peers.sh" ] || { echo "bench: $SHARED/bench/peers.sh not found (set SHARED=)" >&2; exit 2; }

cargo build --release --locked -p claw-proxy -p claw-policy -p claw-tokens
BIN=$PWD/target/release
WORK=$(mktemp -d -t clawproxy-bench-XXXXXX)
DATA=$WORK/claw
trap 'rm -rf "$WORK"' EXIT

"$BIN/clawproxy" init --data-dir "$DATA" >/dev/null
sed -i 's#^url = .*#url = "http://127.0.0.1:18080"#; s#^listen = .*#listen = "127.0.0.1:18090"#; s#^admin = .*#admin = "127.0.0.1:18091"#' "$DATA/clawproxy.toml"
if [ -z "${BENCH_HOST:-}" ]; then
  BENCH_HOST=connect.1password.com
  getent hosts "$BENCH_HOST" >/dev/null || BENCH_HOST=localhost
fi
sed -i "s#^host = .*#host = \"$BENCH_HOST\"#" "$DATA/clawproxy.toml"
"$BIN/clawproxy" check-config --data-dir "$DATA"
sed "s#connect.1password.com#$BENCH_HOST#" bench/contract.json >"$WORK/contract.json"
"$BIN/clawcontrols" publish "$WORK/contract.json" --data-dir "$DATA" >/dev/null
TOKEN=$("$BIN/clawscope" mint --policy clawproxy-bench --job bench-job --agent bench --ttl 3600 --data-dir "$DATA")
ITEM_PATH=/v1/vaults/ffe2ubzkgvaxdhjqm4dvpqkhxe/items/3nk7rdgu5ybvztbakmcwqrsz4m

export PUT_NAME=clawproxy PUT_ADDR=127.0.0.1:18090 PUT_HTTPS=${PUT_HTTPS:-1}
export PUT_CMD="exec env OP_CONNECT_TOKEN=bench-connect-token CLAW_LOG=warn $BIN/clawproxy run --data-dir $DATA"
export PUT_PROXY_AUTH="Basic $(printf '%s' "bench-job:$TOKEN" | base64 -w0)"
export PUT_HTTP_URL=http://$BENCH_HOST$ITEM_PATH
export PUT_HTTPS_URL=https://$BENCH_HOST$ITEM_PATH
export OUT=${OUT:-$PWD/target/peers-bench/$(date -u +%Y%m%dT%H%M%SZ)}
bash "$SHARED/bench/peers.sh"
echo "results: $OUT/results.md"
echo "receipts written: $(cat "$DATA"/receipts/*/seg-*.jsonl 2>/dev/null | wc -l)"
