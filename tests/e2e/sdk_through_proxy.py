"""The official Python SDK through clawproxy, configured only by environment variables.

Expects (seed contract: read_item on the demo vault, categories API_CREDENTIAL and DATABASE):
  - reading the DATABASE item by id works (the agent's OP_CONNECT_TOKEN is a placeholder, so
    this also proves the proxy injected the real token);
  - reading the LOGIN item raises the SDK's typed error (category withheld);
  - deleting an item and listing vaults raise (operation denied);
  - every answer from the proxy carries X-Clawproxy-Receipt.
Prints one line per check; exit code 0 only if all hold.
"""

import os
import sys

import httpx
from onepasswordconnectsdk.client import new_client_from_environment
from onepasswordconnectsdk.errors import (
    FailedToRetrieveItemException,
    FailedToRetrieveVaultException,
)

vault = os.environ["OP_VAULT"]
db_item = os.environ["DB_ITEM"]
login_item = os.environ["LOGIN_ITEM"]
failures = []


def check(name, condition, detail=""):
    print(f"{'ok  ' if condition else 'FAIL'} {name} {detail}", flush=True)
    if not condition:
        failures.append(name)


client = new_client_from_environment()

item = client.get_item(db_item, vault)
check("read DATABASE item", item.category == "DATABASE", item.category)
check("secret value arrived", any(f.value for f in (item.fields or [])))

try:
    client.get_item(login_item, vault)
    check("LOGIN item withheld", False, "read succeeded")
except FailedToRetrieveItemException as error:
    check("LOGIN item withheld", "allowed_categories" in str(error), str(error))

try:
    client.delete_item(db_item, vault)
    check("delete denied", False, "delete succeeded")
except Exception as error:  # the SDK raises its base exception for deletes
    check("delete denied", "403" in str(error) or "denied" in str(error), str(error))

try:
    client.get_vaults()
    check("list_vaults denied", False, "listing succeeded")
except FailedToRetrieveVaultException as error:
    check("list_vaults denied", "allowed_operations" in str(error), str(error))

# The receipt header, seen with a plain httpx client through the same proxy.
url = f"{os.environ['OP_CONNECT_HOST']}/v1/vaults/{vault}/items/{db_item}"
response = httpx.get(url, headers={"Authorization": "Bearer placeholder"}, timeout=10)
check("receipt header", bool(response.headers.get("x-clawproxy-receipt")), response.headers.get("x-clawproxy-receipt", "missing"))

sys.exit(1 if failures else 0)
