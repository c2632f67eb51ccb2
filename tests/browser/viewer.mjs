// Drives the reviewer's page (verifier/src/view/page.html, rendered by clawverify) in Debian's
// headless chromium through playwright-core (no bundled browser is ever downloaded).
//
//   node viewer.mjs PAGE.html EXPECT(pass|fail) SCREENSHOT.png
//
// Asserts: the page makes no request other than loading itself; #verdict reads PASS or FAIL;
// for a passing bundle, choosing an operation in #f-op narrows #calls to exactly the calls of
// that operation; for a failing bundle, every failing check is named above the checks table
// and every call with failed_checks is marked; for an audit-only contract, the red banner shows
// and exactly the "would deny" calls are marked (and filterable); a contract's host_rules are
// listed per host. Saves a full-page screenshot. Exits non-zero with
// a message on the first failure.
import { chromium } from "playwright-core";
import { existsSync } from "node:fs";
import { resolve } from "node:path";
import { pathToFileURL } from "node:url";

const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const ARGS = [
  "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync",
];

const [pagePath, expect, shot] = process.argv.slice(2);
if (!pagePath || !["pass", "fail"].includes(expect) || !shot) {
  console.error("usage: node viewer.mjs PAGE.html EXPECT(pass|fail) SCREENSHOT.png");
  process.exit(2);
}
if (!existsSync(CHROMIUM)) {
  console.error(`viewer: ${CHROMIUM} not found (apt-get install chromium)`);
  process.exit(2);
}

class Failure extends Error {}
function check(cond, message) {
  if (!cond) throw new Failure(message);
}

const url = pathToFileURL(resolve(pagePath)).href;
const requests = [];
const problems = [];
const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ARGS });
let code = 0;
try {
  const context = await browser.newContext({ viewport: { width: 1366, height: 900 }, deviceScaleFactor: 1 });
  const page = await context.newPage();
  page.on("request", (r) => requests.push(r.url()));
  page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
  page.on("console", (m) => { if (m.type() === "error") problems.push(`console error: ${m.text()}`); });

  await page.goto(url, { waitUntil: "load" });
  await page.waitForSelector("body[data-ready='1']", { timeout: 10_000 })
    .catch(() => { throw new Failure(`the page's script did not finish: ${problems.join("; ") || "no error reported"}`); });
  const report = await page.evaluate(() => JSON.parse(document.getElementById("report").textContent));

  // Verdict and tier at the top.
  const verdict = (await page.locator("#verdict").innerText()).trim();
  check(verdict === expect.toUpperCase(), `#verdict reads ${JSON.stringify(verdict)}, expected ${expect.toUpperCase()}`);
  check(await page.locator("#verdict").isVisible(), "#verdict is not visible");
  const tier = (await page.locator("#tier").innerText()).trim();
  check(tier === report.tier, `#tier reads ${JSON.stringify(tier)}, expected ${report.tier}`);
  const checkRows = await page.locator("#checks tbody tr").count();
  check(checkRows === report.checks.length, `${checkRows} rows in #checks, the report has ${report.checks.length} checks`);

  // A call a contract approvals rule held says who decided, and how.
  for (const c of report.calls.filter((c) => c.approval)) {
    const row = await page.locator(`#calls tbody tr[data-seq="${c.seq}"]`).innerText();
    const who = c.approval.outcome === "timeout" ? "approval timed out" : `${c.approval.outcome} by ${c.approval.by}`;
    check(row.includes(who), `call #${c.seq} does not say "${who}": ${row}`);
  }

  // A contract's host rules are listed, one line per host, every method and pattern shown.
  for (const [host, rules] of Object.entries(((report.contract || {}).document || {}).host_rules || {})) {
    const line = await page.locator(`#host-rules dd[data-host="${host}"]`).innerText();
    for (const r of rules) {
      for (const part of [...r.methods, ...r.paths]) check(line.includes(part), `#host-rules for ${host} does not show ${part}: ${line}`);
    }
  }

  // An audit-only contract is announced in red above everything, and its passes are marked.
  const audit = (report.contract || {}).enforcement === "audit";
  const banner = page.locator("#audit-only");
  check(await banner.isVisible() === audit, `#audit-only is ${audit ? "hidden" : "shown"} for a contract that ${audit ? "is" : "is not"} audit-only`);
  if (audit) {
    const bg = await banner.evaluate((e) => getComputedStyle(e).backgroundColor);
    check(bg === "rgb(179, 38, 30)", `#audit-only is not red: ${bg}`);
    const passes = report.calls.filter((c) => c.would_deny).map((c) => String(c.seq));
    check(passes.length > 0, "the audit page has no would-deny call");
    const marked = await page.locator("#calls tbody tr.would-deny").evaluateAll((trs) => trs.map((tr) => tr.dataset.seq));
    check(JSON.stringify(marked) === JSON.stringify(passes), `would-deny rows ${marked}, expected ${passes}`);
    await page.selectOption("#f-decision", "would_deny");
    check(await page.locator("#calls tbody tr").count() === passes.length, "the would-deny filter does not show exactly the would-deny calls");
    await page.selectOption("#f-decision", "");
  }

  const rows = page.locator("#calls tbody tr");
  const total = await rows.count();
  check(total === report.calls.length, `${total} rows in #calls, the report has ${report.calls.length} calls`);
  const shown = async () => (await page.locator("#shown").innerText()).trim();

  if (expect === "pass") {
    // Filtering by operation narrows the table to exactly that operation's calls.
    const tally = {};
    for (const c of report.calls) tally[c.op] = (tally[c.op] || 0) + 1;
    const [op, want] = Object.entries(tally).filter(([, n]) => n < total).sort((a, b) => b[1] - a[1])[0] || [];
    check(op, "every call has the same operation: nothing to filter");
    await page.selectOption("#f-op", op);
    const got = await rows.count();
    check(got < total, `choosing operation ${op} left ${got} of ${total} rows`);
    check(got === want, `choosing operation ${op} shows ${got} rows, the report has ${want} ${op} calls`);
    const ops = await rows.evaluateAll((trs) => trs.map((tr) => tr.cells[2].textContent));
    check(ops.every((o) => o === op), `rows other than ${op} remain: ${ops.join(", ")}`);
    check((await shown()).startsWith(`${want} of ${total}`), `#shown reads ${JSON.stringify(await shown())}`);
    // Decision filter on top: the denials of that operation.
    await page.selectOption("#f-decision", "deny");
    const denied = report.calls.filter((c) => c.op === op && c.decision === "deny").length;
    check(await rows.count() === denied, `${op} + deny shows ${await rows.count()} rows, expected ${denied}`);
    await page.click("#f-reset");
    check(await rows.count() === total, "clearing the filters does not bring every row back");
    // Sorting by bytes, descending on the second click.
    await page.click('#calls th[data-key="bytes"]');
    await page.click('#calls th[data-key="bytes"]');
    const bytes = await rows.evaluateAll((trs) => trs.map((tr) => tr.cells[9].textContent).filter(Boolean).map(Number));
    check(bytes.every((b, i) => i === 0 || bytes[i - 1] >= b), `bytes not sorted descending: ${bytes.join(", ")}`);
    await page.click('#calls th[data-key="seq"]');
    // Denials and withheld answers stand out.
    const marked = await page.locator("#calls tbody tr.deny, #calls tbody tr.withheld").count();
    const expected = report.calls.filter((c) => c.decision === "deny" || c.released === false || c.withheld > 0).length;
    check(marked === expected, `${marked} rows marked deny/withheld, expected ${expected}`);
  } else {
    // What failed is named above the checks table.
    const failing = report.checks.filter((c) => c.status === "fail").map((c) => c.name);
    check(failing.length > 0, "the fail fixture has no failing check");
    const box = page.locator("#failed-checks");
    check(await box.isVisible(), "#failed-checks is not visible");
    const boxBottom = (await box.boundingBox()).y + (await box.boundingBox()).height;
    const tableTop = (await page.locator("#checks").boundingBox()).y;
    check(boxBottom <= tableTop, `#failed-checks (bottom ${boxBottom}) is not above #checks (top ${tableTop})`);
    const text = await box.innerText();
    for (const name of failing) check(text.includes(name), `failing check ${name} is not named in #failed-checks`);
    const headText = await page.locator("#head").innerText();
    for (const name of failing.filter((n) => n !== "report.verdict")) check(headText.includes(name), `the header does not name ${name}`);
    // The failing checks sort first in the table.
    const statuses = await page.locator("#checks tbody tr").evaluateAll((trs) => trs.map((tr) => tr.dataset.status));
    check(statuses.slice(0, failing.length).every((s) => s === "fail"), `failures are not first in #checks: ${statuses.join(" ")}`);
    // Calls that failed a check are marked.
    for (const c of report.calls.filter((c) => (c.failed_checks || []).length)) {
      const row = page.locator(`#calls tbody tr[data-seq="${c.seq}"]`);
      check(await row.count() === 1, `no row for receipt ${c.seq}`);
      const cls = (await row.getAttribute("class")) || "";
      check(cls.split(/\s+/).includes("flagged"), `row of receipt ${c.seq} (failed ${c.failed_checks}) is not marked; class ${JSON.stringify(cls)}`);
      const rowText = await row.innerText();
      for (const name of c.failed_checks) check(rowText.includes(name), `row of receipt ${c.seq} does not name ${name}`);
    }
    const flagged = await page.locator("#calls tbody tr.flagged").count();
    const want = report.calls.filter((c) => (c.failed_checks || []).length).length;
    check(flagged === want, `${flagged} rows marked as failing, expected ${want}`);
    check(want > 0, "the fail fixture marks no call with failed_checks");
  }

  await page.evaluate(() => window.scrollTo(0, 0));
  await page.screenshot({ path: shot, fullPage: true });
  const foreign = requests.filter((r) => r !== url);
  check(foreign.length === 0, `the page made requests besides itself: ${foreign.join(", ")}`);
  check(requests.length === 1, `expected exactly one request (the page), saw ${requests.length}`);
  check(problems.length === 0, problems.join("; "));
  console.log(`viewer ok: ${expect} page ${pagePath}, ${total} calls, 1 request, screenshot ${shot}`);
} catch (e) {
  console.error(`viewer FAILED (${expect} page ${pagePath}): ${e instanceof Failure ? e.message : e.stack || e}`);
  code = 1;
} finally {
  await browser.close();
}
process.exit(code);
