#!/bin/sh
# One proxy of a fleet (docker-compose profile `fleet`): its own data dir, cloned once from the
# fleet's seed (keys, trust.json, contracts, state) with an empty receipt log of its own, then
# `clawproxy run` with CLAW_STATE, the PostgreSQL every proxy of the fleet shares for
# revocations and rate-limit budgets.
#
# Environment (all required):
#   CLAW_HOME    this proxy's data dir (its own volume)
#   CLAW_SEED    the seed data dir `init.sh` made (mounted read-only)
#   CLAW_STATE   postgres://user:password@host:port/db
set -eu
: "${CLAW_HOME:?}" "${CLAW_SEED:?}" "${CLAW_STATE:?}"

if [ ! -f "$CLAW_HOME/clawproxy.toml" ]; then
  cp -a "$CLAW_SEED/." "$CLAW_HOME/"
  rm -rf "$CLAW_HOME/receipts"
  mkdir -m 0700 "$CLAW_HOME/receipts"
fi
exec clawproxy run --data-dir "$CLAW_HOME" --config /etc/clawproxy/clawproxy.toml
