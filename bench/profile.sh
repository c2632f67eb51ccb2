#!/usr/bin/env bash
# Profile clawproxy under load: nginx serves a Connect-shaped item on 127.0.0.1:18080, clawproxy
# (release build, receipts signed and fdatasync'd) runs on CPU 1 under `perf record -g`, and wrk
# drives allowed read_item calls from CPU 0. Prints the hottest symbols; the full profile stays in
# $OUT/perf.data (`perf report -i $OUT/perf.data`).
#
#   bash bench/profile.sh                  # 32 connections, 10 s
#   CONNS=1 DUR=10s bash bench/profile.sh
set -euo pipefail
cd "$(dirname "$0")/.."
CONNS=${CONNS:-32}
DUR=${DUR:-10s}
OUT=${OUT:-$PWD/target/profile/$(date -u +%Y%m%dT%H%M%SZ)}
for tool in nginx wrk perf taskset; do
  command -v "$tool" >/dev/null || { echo "profile: $tool not found" >&2; exit 2; }
done

cargo build --release --locked -p claw-proxy -p claw-policy -p claw-tokens
BIN=$PWD/target/release
mkdir -p "$OUT/www" "$OUT/nginx-tmp"
DATA=$OUT/claw
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

ITEM_PATH=/v1/vaults/ffe2ubzkgvaxdhjqm4dvpqkhxe/items/3nk7rdgu5ybvztbakmcwqrsz4m
cat >"$OUT/www/item.json" <<'JSON'
{"id":"3nk7rdgu5ybvztbakmcwqrsz4m","title":"prod-db","version":7,"vault":{"id":"ffe2ubzkgvaxdhjqm4dvpqkhxe"},"category":"DATABASE","tags":["prod"],"fields":[{"id":"username","type":"STRING","label":"username","value":"svc_orders"},{"id":"password","type":"CONCEALED","purpose":"PASSWORD","label":"password","value":"not-a-real-secret"}]}
JSON
cat >"$OUT/nginx.conf" <<NGINX
worker_processes 1;
daemon off;
pid $OUT/nginx.pid;
error_log $OUT/nginx-error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  default_type application/json;
  keepalive_requests 10000000;
  client_body_temp_path $OUT/nginx-tmp/body;
  proxy_temp_path $OUT/nginx-tmp/proxy;
  fastcgi_temp_path $OUT/nginx-tmp/fastcgi;
  uwsgi_temp_path $OUT/nginx-tmp/uwsgi;
  scgi_temp_path $OUT/nginx-tmp/scgi;
  server {
    listen 127.0.0.1:18080;
    root $OUT/www;
    location ~ ^/v1/vaults/[^/]+/items/[^/]+\$ { try_files /item.json =404; }
  }
}
NGINX
taskset -c 1 nginx -c "$OUT/nginx.conf" -e "$OUT/nginx-error.log" & PIDS+=($!)

"$BIN/clawproxy" init --data-dir "$DATA" >/dev/null
sed -i 's#^url = .*#url = "http://127.0.0.1:18080"#; s#^listen = .*#listen = "127.0.0.1:18090"#; s#^admin = .*#admin = "127.0.0.1:18091"#' "$DATA/clawproxy.toml"
"$BIN/clawcontrols" publish bench/contract.json --data-dir "$DATA" >/dev/null
TOKEN=$("$BIN/clawscope" mint --policy clawproxy-bench --job bench-job --agent bench --ttl 3600 --data-dir "$DATA")
OP_CONNECT_TOKEN=bench-connect-token CLAW_LOG=warn taskset -c 1 \
  perf record -F ${FREQ:-499} --call-graph ${CALLGRAPH:-dwarf,16384} -o "$OUT/perf.data" -- "$BIN/clawproxy" run --data-dir "$DATA" \
  >"$OUT/proxy.out" 2>&1 & PIDS+=($!)
for _ in $(seq 100); do curl -fsS -o /dev/null http://127.0.0.1:18091/readyz 2>/dev/null && break; sleep 0.1; done

cat >"$OUT/req.lua" <<LUA
wrk.path = "http://connect.1password.com$ITEM_PATH"
wrk.headers["Host"] = "connect.1password.com"
wrk.headers["Proxy-Authorization"] = "Basic $(printf '%s' "bench-job:$TOKEN" | base64 -w0)"
LUA
taskset -c 0 wrk -t2 -c"$CONNS" -d"$DUR" --latency -s "$OUT/req.lua" http://127.0.0.1:18090 | tee "$OUT/wrk.txt"
curl -fsS http://127.0.0.1:18091/metrics >"$OUT/metrics.txt" || true
kill -INT "${PIDS[1]}"; sleep 2
perf report -i "$OUT/perf.data" --no-children --sort symbol --stdio 2>/dev/null | grep -E '^ +[0-9]' | head -40
echo "profile: $OUT/perf.data"
