#!/usr/bin/env bash
# A sandboxed agent using curl. Configured only by environment variables (see README.md).
# curl honours https_proxy/HTTPS_PROXY and http_proxy (lowercase only; with job:token
# credentials) and CURL_CA_BUNDLE; -q ignores any .curlrc, and each call ends within 20 s.
set -u
status() { curl -q -s --max-time 20 -o /dev/null -w '%{http_code}' "$@"; }
ok=0
check() { # call expected actual
  if [ "$2" = "$3" ]; then echo "curl agent: ok  $1: $3"; else echo "curl agent: BAD $1: $3 (expected $2)"; ok=1; fi
}
base="$OP_CONNECT_HOST/v1/vaults/$OP_VAULT/items"
check "read item $AGENT_ALLOWED_ITEM" 200 "$(status -H "Authorization: Bearer $OP_CONNECT_TOKEN" "$base/$AGENT_ALLOWED_ITEM")"
check "read item $AGENT_DENIED_ITEM" 403 "$(status -H "Authorization: Bearer $OP_CONNECT_TOKEN" "$base/$AGENT_DENIED_ITEM")"
check "delete item $AGENT_ALLOWED_ITEM" 403 "$(status -X DELETE -H "Authorization: Bearer $OP_CONNECT_TOKEN" "$base/$AGENT_ALLOWED_ITEM")"
check "GET ${AGENT_OUTSIDE_URL:-http://example.org/}" 403 "$(status "${AGENT_OUTSIDE_URL:-http://example.org/}")"
exit $ok
