// A sandboxed agent using the official 1Password Connect JS SDK, unchanged.
// Configured only by environment variables (see README.md). Exit 0 when every outcome matched.
const { OnePasswordConnect } = require("@1password/connect");

const op = OnePasswordConnect({
  serverURL: process.env.OP_CONNECT_HOST,
  token: process.env.OP_CONNECT_TOKEN,
});
const vault = process.env.OP_VAULT;
const allowedItem = process.env.AGENT_ALLOWED_ITEM;
const deniedItem = process.env.AGENT_DENIED_ITEM;
let ok = true;

function report(call, outcome, expected) {
  ok = ok && outcome === expected;
  console.log(`node agent: ${outcome === expected ? "ok " : "BAD"} ${call}: ${outcome}`);
}

async function expectDenied(call, promise) {
  try {
    await promise;
    report(call, "allowed", "denied");
  } catch (error) {
    const status = error && (error.status || (error.response && error.response.status));
    report(call, status === 403 ? "denied" : `error ${status}`, "denied");
  }
}

(async () => {
  const item = await op.getItem(vault, allowedItem);
  report(`read item ${allowedItem} (${item.category})`, "allowed", "allowed");
  await expectDenied(`read item ${deniedItem}`, op.getItem(vault, deniedItem));
  await expectDenied(`delete item ${allowedItem}`, op.deleteItem(vault, allowedItem));
  process.exit(ok ? 0 : 1);
})().catch((error) => {
  console.error("node agent failed:", error);
  process.exit(1);
});
