// The official JS SDK (@1password/connect 1.4.2) directly against connect-sim.
//
// Configured only by environment variables:
//   OP_CONNECT_HOST, OP_CONNECT_TOKEN   the server and its full-access token
//   OP_VAULT                            the demo vault's id
//   OP_RESTRICTED_TOKEN                 a token connect-sim limits to OP_OTHER_VAULT
//   OP_OTHER_VAULT                      the second demo vault's id
// Prints one line per check; exit code 0 only if all hold.
"use strict";

const { OnePasswordConnect, ItemBuilder } = require("@1password/connect");

const HOST = process.env.OP_CONNECT_HOST;
const VAULT = process.env.OP_VAULT;
const OTHER = process.env.OP_OTHER_VAULT;
const VAULT_NAME = "vault_agent_secrets_prod";
const MISSING = "zzzzzzzzzzzzzzzzzzzzzzzzzz";
const failures = [];

function check(name, condition, detail = "") {
  console.log(`${condition ? "ok  " : "FAIL"} ${name} ${typeof detail === "string" ? detail : JSON.stringify(detail)}`.trimEnd());
  if (!condition) failures.push(name);
}

// The SDK rejects with the parsed Connect error body: {status, message}.
async function rejects(name, promise, status, message) {
  try {
    const result = await promise;
    check(name, false, `resolved ${JSON.stringify(result)}`.slice(0, 160));
  } catch (error) {
    const good = error && error.status === status && (!message || String(error.message).includes(message));
    check(name, good, JSON.stringify(error).slice(0, 160));
  }
}

const op = OnePasswordConnect({ serverURL: HOST, token: process.env.OP_CONNECT_TOKEN });

(async () => {
  // Vaults: list (GET /v1/vaults/), by id, by title (filter `title eq`).
  const vaults = await op.listVaults();
  check("listVaults", vaults.map((v) => v.name).sort().join() === `${VAULT_NAME},vault_other`);
  const vault = await op.getVault(VAULT);
  check("getVault by id", vault.name === VAULT_NAME && vault.items === 4, vault.name);
  const byTitle = await op.getVault(VAULT_NAME);
  check("getVault by title", byTitle.id === VAULT, byTitle.id);
  check("getVaultByTitle", (await op.getVaultByTitle("vault_other")).id === OTHER);
  check("listVaultsByTitle", (await op.listVaultsByTitle("nope")).length === 0);

  // Items: list, title contains, by id, by title.
  const items = await op.listItems(VAULT);
  check("listItems", items.length === 4, items.map((i) => i.title));
  const dashed = await op.listItemsByTitleContains(VAULT, "-");
  check("listItemsByTitleContains", dashed.length === 3 && dashed.every((i) => i.fields), dashed.map((i) => i.title));
  const db = await op.getItem(VAULT, "prod-db");
  check("getItem by title", db.category === "DATABASE" && db.id.length === 26, db.id);
  const byId = await op.getItemById(VAULT, db.id);
  check("getItemById", byId.title === "prod-db" && byId.version === 1);
  const password = byId.fields.find((f) => f.purpose === "PASSWORD");
  check("secret value", password.value.startsWith("demo-db-password"));
  check("getItemByTitle", (await op.getItemByTitle(VAULT, "stripe-api")).category === "API_CREDENTIAL");
  check("listItemsByTitle", (await op.listItemsByTitle(VAULT, "runbook")).length === 1);

  // Create (ItemBuilder: sections, generated password), update (PUT), delete by title.
  const built = new ItemBuilder()
    .setCategory("LOGIN")
    .setTitle("js-scratch")
    .addTag("sdk")
    .addUrl({ href: "https://example.test", primary: true })
    .addField({ label: "username", value: "js-user", purpose: "USERNAME" })
    .addField({ label: "password", purpose: "PASSWORD", generate: true, recipe: { length: 30, characterSets: ["LETTERS", "DIGITS"] } })
    .addField({ label: "region", value: "eu", sectionName: "Extra details" })
    .build();
  const created = await op.createItem(VAULT, built);
  const generated = created.fields.find((f) => f.purpose === "PASSWORD").value;
  check("createItem", created.id.length === 26 && created.version === 1 && created.title === "js-scratch", created.id);
  check("generated password", /^[A-Za-z0-9]{30}$/.test(generated), generated);
  check("sections kept", created.sections.some((s) => s.label === "Extra details"));
  check("urls kept", created.urls.length === 1 && created.urls[0].href === "https://example.test");
  check("vault count after create", (await op.getVault(VAULT)).items === 5);
  created.title = "js-scratch-renamed";
  const updated = await op.updateItem(VAULT, created);
  check("updateItem", updated.title === "js-scratch-renamed" && updated.version === 2, updated.version);
  await op.deleteItem(VAULT, "js-scratch-renamed");
  await rejects("deleted item is gone", op.getItemById(VAULT, created.id), 404, "not found");
  check("vault count after delete", (await op.getVault(VAULT)).items === 4);

  // Files: list, one, content.
  const files = await op.listFiles(VAULT, "runbook");
  check("listFiles", files.length === 1 && files[0].name === "runbook.txt", files.map((f) => f.name));
  const file = await op.getFileById(VAULT, "runbook", files[0].id);
  check("getFileById", file.id === files[0].id && file.size === 17);
  const content = await op.getFileContent(VAULT, "runbook", files[0].id);
  check("getFileContent", content === "Run the runbook.\n", content);

  // Errors: 401 (bad token), 403 (restricted token), 404 (unknown ids).
  const bad = OnePasswordConnect({ serverURL: HOST, token: "not-the-token" });
  await rejects("401 listVaults", bad.listVaults(), 401);
  await rejects("401 getItem", bad.getItemById(VAULT, db.id), 401);
  const narrow = OnePasswordConnect({ serverURL: HOST, token: process.env.OP_RESTRICTED_TOKEN });
  const narrowVaults = await narrow.listVaults();
  check("restricted lists its vault only", narrowVaults.length === 1 && narrowVaults[0].id === OTHER);
  await rejects("403 getVault", narrow.getVault(VAULT), 403, "does not have access");
  await rejects("403 getItem", narrow.getItemById(VAULT, db.id), 403, "does not have access");
  await rejects("403 deleteItem", narrow.deleteItem(VAULT, db.id), 403);
  check("restricted reads its own vault", (await narrow.getItem(OTHER, "billing-db")).category === "DATABASE");
  await rejects("404 getVault", op.getVault(MISSING), 404, `vault ${MISSING} not found`);
  await rejects("404 getItem", op.getItem(VAULT, MISSING), 404, `item ${MISSING} not found`);
  await rejects("404 getFileById", op.getFileById(VAULT, db.id, MISSING), 404, `file ${MISSING} not found`);

  console.log(`node sdk: ${failures.length} failure(s)`);
  process.exit(failures.length ? 1 : 0);
})().catch((error) => {
  console.error("FAIL unexpected error:", error);
  process.exit(1);
});
