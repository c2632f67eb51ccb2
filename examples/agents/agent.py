"""A sandboxed agent using the official 1Password Connect Python SDK, unchanged.

Configured only by environment variables (see README.md): it never holds the real Connect
token, only its job token inside HTTP_PROXY/HTTPS_PROXY.

It makes the calls of the quickstart story and prints one line per call:
  read a DATABASE item (allowed), read a LOGIN item (withheld: category), delete an item
  (denied: operation), reach a host outside the contract (denied: egress).
Exit code 0 when every outcome matched the expectation, 1 otherwise.
"""

import os
import sys

import httpx
from onepasswordconnectsdk.client import new_client_from_environment
from onepasswordconnectsdk.errors import FailedToRetrieveItemException

vault = os.environ["OP_VAULT"]
allowed_item = os.environ["AGENT_ALLOWED_ITEM"]
denied_item = os.environ["AGENT_DENIED_ITEM"]
outside = os.environ.get("AGENT_OUTSIDE_URL", "http://example.org/")

client = new_client_from_environment()
ok = True


def report(call, outcome, expected):
    global ok
    mark = "ok " if outcome == expected else "BAD"
    ok = ok and outcome == expected
    print(f"python agent: {mark} {call}: {outcome}", flush=True)


item = client.get_item(allowed_item, vault)
report(f"read item {allowed_item} ({item.category})", "allowed", "allowed")

try:
    client.get_item(denied_item, vault)
    report(f"read item {denied_item}", "allowed", "denied")
except FailedToRetrieveItemException as error:
    report(f"read item {denied_item}", "denied", "denied")
    print(f"             {error}", flush=True)

try:
    client.delete_item(allowed_item, vault)
    report(f"delete item {allowed_item}", "allowed", "denied")
except Exception as error:  # the SDK raises a plain exception for delete
    report(f"delete item {allowed_item}", "denied", "denied")
    print(f"             {error}", flush=True)

response = httpx.get(outside, timeout=10)
outcome = "denied" if response.status_code == 403 else f"status {response.status_code}"
report(f"GET {outside}", outcome, "denied")

sys.exit(0 if ok else 1)
