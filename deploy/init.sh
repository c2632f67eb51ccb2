#!/bin/sh
# One-shot set-up of a proxy's data dir and one agent's credentials, with the command lines of
# the README and the tests: `clawproxy init` (once: an initialised data dir keeps its keys),
# `clawcontrols publish` (a no-op when the contract is already active), `clawscope mint`.
# docker-compose.yml runs it as the `init` service; tests/tests/deploy runs this same file.
#
# Environment (all required):
#   CLAW_HOME        the proxy's data dir
#   CLAW_POLICY      the contract file to publish
#   CLAW_JOB         the job id: the agent's proxy user name
#   CLAW_AGENT       the agent's name (the token's subject)
#   CLAW_PROXY_ADDR  host:port where agents reach the proxy
#   AGENT_DIR        where the agent's files go:
#                      agent.env  HTTP(S)_PROXY / http(s)_proxy = http://<job>:<token>@<proxy>,
#                                 for `set -a; . agent.env`; the token lives as long as the
#                                 contract's max_ttl_seconds
#                      ca.pem     the interception CA, for https:// Connect URLs
set -eu
: "${CLAW_HOME:?}" "${CLAW_POLICY:?}" "${CLAW_JOB:?}" "${CLAW_AGENT:?}"
: "${CLAW_PROXY_ADDR:?}" "${AGENT_DIR:?}"

if [ ! -f "$CLAW_HOME/clawproxy.toml" ]; then
  clawproxy init --data-dir "$CLAW_HOME"
fi
# Prints the contract's hash; the token is pinned to exactly that version.
hash=$(clawcontrols publish "$CLAW_POLICY" --data-dir "$CLAW_HOME")
token=$(clawscope mint --policy "$hash" --job "$CLAW_JOB" --agent "$CLAW_AGENT" --data-dir "$CLAW_HOME")

# The agent runs as another user and mounts this directory read-only; nothing else mounts it.
mkdir -p "$AGENT_DIR"
proxy="http://$CLAW_JOB:$token@$CLAW_PROXY_ADDR"
{
  echo "HTTP_PROXY=$proxy"
  echo "HTTPS_PROXY=$proxy"
  echo "http_proxy=$proxy"
  echo "https_proxy=$proxy"
} > "$AGENT_DIR/agent.env.tmp"
chmod 0644 "$AGENT_DIR/agent.env.tmp"
mv "$AGENT_DIR/agent.env.tmp" "$AGENT_DIR/agent.env"
cp "$CLAW_HOME/keys/ca.pem" "$AGENT_DIR/ca.pem.tmp"
chmod 0644 "$AGENT_DIR/ca.pem.tmp"
mv "$AGENT_DIR/ca.pem.tmp" "$AGENT_DIR/ca.pem"
echo "init: contract $hash; job $CLAW_JOB's proxy settings in $AGENT_DIR/agent.env"
