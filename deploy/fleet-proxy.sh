#!/bin/sh
# One proxy of a fleet (docker-compose profile `fleet`): its own data dir, cloned once from the
# fleet's seed (keys, trust.json, contracts, state), then `clawproxy run` with CLAW_STATE, the
# PostgreSQL every proxy of the fleet shares for revocations, rate-limit budgets and the list of
# logs serving each job, and CLAW_INSTANCE, which names its own log
# (receipts/<proxy id>/<instance>; `receipts` may be storage the fleet's proxies share).
#
# Environment (all required):
#   CLAW_HOME      this proxy's data dir (its own volume)
#   CLAW_SEED      the seed data dir `init.sh` made (mounted read-only)
#   CLAW_STATE     postgres://user:password@host:port/db
#   CLAW_INSTANCE  this proxy's name in the fleet (a-z 0-9 -)
set -eu
: "${CLAW_HOME:?}" "${CLAW_SEED:?}" "${CLAW_STATE:?}" "${CLAW_INSTANCE:?}"

if [ ! -f "$CLAW_HOME/clawproxy.toml" ]; then
  # Everything but the seed's receipts: the logs are the proxies' own.
  for entry in "$CLAW_SEED"/* "$CLAW_SEED"/.[!.]*; do
    [ -e "$entry" ] || continue
    [ "$(basename "$entry")" = receipts ] && continue
    cp -a "$entry" "$CLAW_HOME/"
  done
  mkdir -p -m 0700 "$CLAW_HOME/receipts"
fi
exec clawproxy run --data-dir "$CLAW_HOME" --config /etc/clawproxy/clawproxy.toml
