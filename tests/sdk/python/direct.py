"""The official Python SDK (onepasswordconnectsdk 2.1.1) directly against connect-sim.

Configured only by environment variables:
  OP_CONNECT_HOST, OP_CONNECT_TOKEN   the server and its full-access token
  OP_VAULT                            the demo vault's id (default vault for load_dict)
  OP_RESTRICTED_TOKEN                 a token connect-sim limits to OP_OTHER_VAULT
  OP_OTHER_VAULT                      the second demo vault's id
Prints one line per check; exit code 0 only if all hold.
"""

import asyncio
import os
import sys
import tempfile

from onepasswordconnectsdk.client import new_client, new_client_from_environment
from onepasswordconnectsdk.config import load_dict
from onepasswordconnectsdk.errors import (
    FailedToRetrieveItemException,
    FailedToRetrieveVaultException,
)
from onepasswordconnectsdk.models import Field, GeneratorRecipe, Item, ItemVault

HOST = os.environ["OP_CONNECT_HOST"]
VAULT = os.environ["OP_VAULT"]
OTHER = os.environ["OP_OTHER_VAULT"]
RESTRICTED = os.environ["OP_RESTRICTED_TOKEN"]
VAULT_NAME = "vault_agent_secrets_prod"
MISSING = "zzzzzzzzzzzzzzzzzzzzzzzzzz"
failures = []


def check(name, condition, detail=""):
    print(f"{'ok  ' if condition else 'FAIL'} {name} {detail}".rstrip(), flush=True)
    if not condition:
        failures.append(name)


def raises(name, exception, call, status, message=None):
    """`call` must raise `exception` whose text names `status` (and `message`)."""
    try:
        result = call()
    except exception as error:
        text = str(error)
        good = str(status) in text and (message is None or message in text)
        code = getattr(error, "status_code", None)
        if code is not None:
            good = good and code == status
        check(name, good, text.replace("\n", " ")[:160])
        return
    except Exception as error:  # a wrong type (e.g. JSONDecodeError) is a failure
        check(name, False, f"raised {type(error).__name__}: {error}")
        return
    check(name, False, f"returned {result!r}"[:160])


client = new_client_from_environment()

# Vaults: list, by id, by title (filter `name eq`).
vaults = client.get_vaults()
names = sorted(v.name for v in vaults)
check("get_vaults", names == [VAULT_NAME, "vault_other"], names)
vault = client.get_vault(VAULT)
check("get_vault by id", vault.name == VAULT_NAME and vault.type == "USER_CREATED", vault.name)
check("vault item count", vault.items == 4, vault.items)
by_title = client.get_vault_by_title(VAULT_NAME)
check("get_vault_by_title", by_title.id == VAULT, by_title.id)

# Items: list, filter, by id, by title, with the vault by name.
summaries = client.get_items(VAULT)
check("get_items", sorted(i.title for i in summaries) == ["admin-login", "prod-db", "runbook", "stripe-api"])
dashed = client.get_items(VAULT, 'title co "-"')
check("get_items filter co", len(dashed) == 3, [i.title for i in dashed])
db = client.get_item("prod-db", VAULT)
check("get_item by title", db.category == "DATABASE" and len(db.id) == 26, db.id)
same = client.get_item(db.id, VAULT_NAME)
check("get_item by id, vault by name", same.id == db.id and same.title == "prod-db")
password = next(f for f in same.fields if f.purpose == "PASSWORD")
check("secret value", password.value.startswith("demo-db-password"))
check("get_item_by_id", client.get_item_by_id(db.id, VAULT).version == 1)

# load_dict: title lookup + GET item per item; `.label` and `section.label` paths.
config = load_dict(client, {
    "password": {"opitem": "prod-db", "opfield": ".password"},
    "host": {"opitem": "prod-db", "opfield": "connection.host"},
    "key": {"opitem": "stripe-api", "opfield": ".credential"},
    "other": {"opitem": "billing-db", "opfield": ".password", "opvault": OTHER},
})
check("load_dict", config == {
    "password": password.value,
    "host": "db.internal.example",
    "key": "sk_demo_4eC39HqLyjWDarjtT1zdp7dc",
    "other": "demo-other-password",
}, config)

# Create (generated password), update (PUT), delete.
new = client.create_item(VAULT, Item(
    vault=ItemVault(id=VAULT), title="py-scratch", category="LOGIN", tags=["sdk"],
    fields=[
        Field(purpose="USERNAME", value="py-user", label="username"),
        Field(purpose="PASSWORD", label="password", generate=True,
              recipe=GeneratorRecipe(length=24, character_sets=["LETTERS", "DIGITS"])),
    ]))
generated = next(f for f in new.fields if f.purpose == "PASSWORD").value
check("create_item", len(new.id) == 26 and new.version == 1 and new.title == "py-scratch", new.id)
check("generated password", len(generated) == 24 and generated.isalnum(), generated)
check("field ids generated", all(f.id for f in new.fields))
check("vault count after create", client.get_vault(VAULT).items == 5)
fetched = client.get_item(new.id, VAULT)
fetched.title = "py-scratch-renamed"
updated = client.update_item(new.id, VAULT, fetched)
check("update_item", updated.title == "py-scratch-renamed" and updated.version == 2, updated.version)
check("get_item by new title", client.get_item("py-scratch-renamed", VAULT).id == new.id)
client.delete_item(new.id, VAULT)
raises("deleted item is gone", FailedToRetrieveItemException,
       lambda: client.get_item_by_id(new.id, VAULT), 404, "not found")
check("vault count after delete", client.get_vault(VAULT).items == 4)

# Files: list, one, content (via content_path), download.
note = client.get_item("runbook", VAULT)
files = client.get_files(note.id, VAULT)
check("get_files", len(files) == 1 and files[0].name == "runbook.txt", [f.name for f in files])
file = client.get_file(files[0].id, note.id, VAULT)
check("get_file", file.id == files[0].id and file.size == 17 and file.content_path.startswith("/v1/"))
content = client.get_file_content(file.id, note.id, VAULT, file.content_path)
check("get_file_content", content == b"Run the runbook.\n", content)
with tempfile.TemporaryDirectory() as tmp:
    client.download_file(file.id, note.id, VAULT, tmp)
    with open(os.path.join(tmp, "runbook.txt"), "rb") as f:
        check("download_file", f.read() == b"Run the runbook.\n")

# Typed errors: 401 (bad token), 403 (restricted token), 404 (unknown ids).
bad = new_client(HOST, "not-the-token")
raises("401 get_vaults", FailedToRetrieveVaultException, bad.get_vaults, 401)
raises("401 get_item", FailedToRetrieveItemException, lambda: bad.get_item_by_id(db.id, VAULT), 401)
narrow = new_client(HOST, RESTRICTED)
check("restricted lists its vault only", [v.id for v in narrow.get_vaults()] == [OTHER])
raises("403 get_vault", FailedToRetrieveVaultException, lambda: narrow.get_vault(VAULT), 403,
       "does not have access")
raises("403 get_item", FailedToRetrieveItemException, lambda: narrow.get_item(db.id, VAULT), 403,
       "does not have access")
raises("403 delete_item", FailedToRetrieveItemException, lambda: narrow.delete_item(db.id, VAULT), 403)
check("restricted reads its own vault", narrow.get_item("billing-db", OTHER).category == "DATABASE")
raises("404 get_vault", FailedToRetrieveVaultException, lambda: client.get_vault(MISSING), 404,
       f"vault {MISSING} not found")
raises("404 get_item_by_id", FailedToRetrieveItemException,
       lambda: client.get_item_by_id(MISSING, VAULT), 404, f"item {MISSING} not found")
raises("404 get_file", FailedToRetrieveItemException,
       lambda: client.get_file(MISSING, note.id, VAULT), 404, f"file {MISSING} not found")
# get_item retries a 404 id as a title, which finds nothing.
try:
    client.get_item(MISSING, VAULT)
    check("get_item unknown id", False, "returned")
except FailedToRetrieveItemException as error:
    check("get_item unknown id", "Found 0 items" in str(error), str(error)[:120])


# The async client takes the same routes.
async def async_checks():
    aclient = new_client(HOST, os.environ["OP_CONNECT_TOKEN"], is_async=True)
    vaults = await aclient.get_vaults()
    item = await aclient.get_item("stripe-api", VAULT)
    return len(vaults), item.category


count, category = asyncio.run(async_checks())
check("async client", count == 2 and category == "API_CREDENTIAL", (count, category))

print(f"python sdk: {len(failures)} failure(s)")
sys.exit(1 if failures else 0)
