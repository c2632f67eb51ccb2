// The official JS SDK through clawproxy, configured only by environment variables.
// Same expectations as sdk_through_proxy.py. Exit 0 only if all hold.
const path = require("path");
const { OnePasswordConnect } = require(path.join(process.env.SDK_NODE_MODULES, "@1password", "connect"));

const op = OnePasswordConnect({ serverURL: process.env.OP_CONNECT_HOST, token: process.env.OP_CONNECT_TOKEN });
const vault = process.env.OP_VAULT;
const failures = [];
function check(name, condition, detail = "") {
  console.log(`${condition ? "ok  " : "FAIL"} ${name} ${detail}`);
  if (!condition) failures.push(name);
}
async function denied(name, promise, rule) {
  try {
    await promise;
    check(name, false, "succeeded");
  } catch (error) {
    const text = JSON.stringify(error);
    check(name, (error.status === 403 || text.includes("403")) && text.includes(rule), text);
  }
}

(async () => {
  const item = await op.getItem(vault, process.env.DB_ITEM);
  check("read DATABASE item", item.category === "DATABASE", item.category);
  await denied("LOGIN item withheld", op.getItem(vault, process.env.LOGIN_ITEM), "allowed_categories");
  await denied("delete denied", op.deleteItem(vault, process.env.DB_ITEM), "deny_operations");
  await denied("list_vaults denied", op.listVaults(), "allowed_operations");
  process.exit(failures.length ? 1 : 0);
})().catch((error) => {
  console.error("FAIL unexpected error", error);
  process.exit(1);
});
