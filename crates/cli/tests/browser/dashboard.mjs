// Drives the dashboard of a running hub in headless Chromium, as an operator would: signs in,
// watches a live number move without a reload, retries a parked message, reads the audit log,
// resolves an exception, explores an item now and at a past time, follows one of its events'
// trace, and opens a reconciliation.
// A screenshot of every page goes to $ARTIFACTS. Exits 1 at the first thing that is not as it
// should be (with a screenshot named failure.png), 0 when everything was.
//
// Started by crates/cli/tests/dashboard.rs, which sets up the hub and passes, in the environment:
// CROSSDOCK_URL, CROSSDOCK_TOKEN (admin), DEAD_LETTER_ID, EXCEPTION_ID, ITEM, HISTORY_AT,
// HISTORY_ON_HAND (the item's on-hand at DC-EAST at HISTORY_AT), ARTIFACTS.

import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { chromium } from "playwright-core";

function need(name) {
  const v = process.env[name];
  if (!v) {
    console.error(`dashboard.mjs: ${name} is not set`);
    process.exit(2);
  }
  return v;
}

const base = need("CROSSDOCK_URL");
const token = need("CROSSDOCK_TOKEN");
const deadLetter = need("DEAD_LETTER_ID");
const exception = need("EXCEPTION_ID");
const item = need("ITEM");
const historyAt = need("HISTORY_AT");
const historyOnHand = need("HISTORY_ON_HAND");
const artifacts = need("ARTIFACTS");
mkdirSync(artifacts, { recursive: true });

function check(ok, what) {
  if (!ok) throw new Error(`not as expected: ${what}`);
  console.log(`ok: ${what}`);
}

const browser = await chromium.launch({
  executablePath: "/usr/bin/chromium",
  args: ["--no-sandbox"],
  headless: true,
});
const context = await browser.newContext({ viewport: { width: 1440, height: 1000 } });
const page = await context.newPage();
page.setDefaultTimeout(15_000);
const shot = (name) => page.screenshot({ path: join(artifacts, `${name}.png`), fullPage: true });
// Clicks a link or a form's button and waits for the page it leads to.
async function submit(button) {
  await Promise.all([page.waitForEvent("load"), button.click()]);
}

try {
  // Sign in.
  await page.goto(`${base}/ui`);
  check(page.url().startsWith(`${base}/ui/login`), "a page without a session leads to sign-in");
  await shot("01-sign-in");
  await page.fill("#token", token);
  await submit(page.locator("section.login button[type=submit]"));
  check(new URL(page.url()).pathname === "/ui", "signing in leads back to the overview");
  check((await page.textContent("#signed-in-as")).includes("admin"), "the page says who is signed in");

  // A live number moves while traffic flows, and the page was not reloaded for it.
  await page.evaluate(() => {
    window.notReloaded = true;
  });
  const before = (await page.textContent("#events-total")).trim();
  await page.waitForFunction(
    (before) => document.querySelector("#events-total").textContent.trim() !== before,
    before,
    { timeout: 30_000 },
  );
  const after = (await page.textContent("#events-total")).trim();
  check(Number(after) > Number(before), `events committed went from ${before} to ${after} on screen`);
  check(await page.evaluate(() => window.notReloaded === true), "without a reload");
  check((await page.locator("#chart-throughput polyline").count()) > 0, "the throughput plot has lines");
  await shot("02-overview");

  // Retry the parked message.
  await submit(page.locator("header nav a", { hasText: "Endpoints" }));
  check((await page.locator("#endpoints tr[data-endpoint]").count()) > 0, "the endpoints table lists the lanes");
  const letter = page.locator(`tr[data-dead-letter="${deadLetter}"]`);
  check((await letter.count()) === 1, `dead letter #${deadLetter} is listed`);
  await shot("03-endpoints-with-parked-message");
  await letter.locator("input[name=note]").fill("listing checked, sending again");
  await submit(letter.locator("button", { hasText: "Retry" }));
  const flash = await page.textContent("#flash");
  check(flash.includes(`Retried 1 parked message (#${deadLetter}`), `the page says what was retried: ${flash}`);
  check((await page.locator(`tr[data-dead-letter="${deadLetter}"]`).count()) === 0, `#${deadLetter} left the parked list`);
  await shot("04-endpoints-after-retry");

  // The audit log has it, with the signed-in token as the actor.
  await submit(page.locator("header nav a", { hasText: "Audit" }));
  const newest = page.locator("#audit tr[data-action]").first();
  check((await newest.getAttribute("data-action")) === "dlq.retry", "the newest audit row is the retry");
  check((await newest.locator("td.actor").textContent()) === "admin", "done by admin");
  await shot("05-audit");

  // Resolve the exception.
  await submit(page.locator("header nav a", { hasText: "Exceptions" }));
  const record = page.locator(`tr[data-exception="${exception}"]`);
  check((await record.count()) === 1, `exception ${exception} is in the work queue`);
  await shot("06-exceptions");
  await record.locator("input[name=note]").fill("a test client's bad JSON; nothing to replay");
  await submit(record.locator("button", { hasText: "Resolve" }));
  check(
    (await page.textContent("#flash")).includes(`Exception ${exception} is resolved now.`),
    "the page says the exception is resolved",
  );
  check((await page.locator(`tr[data-exception="${exception}"]`).count()) === 0, "it left the active queue");
  await page.goto(`${base}/ui/exceptions/${exception}`);
  check((await page.textContent("#status")).trim() === "resolved", "its page shows it resolved");
  await shot("07-exception-resolved");

  // The item explorer: now, then at a past time.
  await submit(page.locator("header nav a", { hasText: "Items" }));
  await page.fill("#item-form input[name=item]", item);
  await submit(page.locator("#item-form button"));
  check((await page.locator("#positions tr[data-location]").count()) > 0, `${item}'s positions are shown`);
  check((await page.locator("#channels tr[data-channel]").count()) > 0, "and its channel ATS");
  check((await page.locator("#timeline tr[data-seq]").count()) >= 2, "and the events naming it");
  await page.fill("#item-form input[name=at]", historyAt);
  await submit(page.locator("#item-form button"));
  const onHand = (
    await page.textContent('#history-positions tr[data-location="DC-EAST"] td[data-bucket="on_hand"]')
  ).trim();
  check(onHand === historyOnHand, `on hand at DC-EAST as of ${historyAt} is ${onHand}`);
  await shot("08-item-history");

  // An event of the item's timeline, followed through the hub: its trace.
  await submit(page.locator("#timeline tr[data-seq] a").first());
  check((await page.locator('#trace tr[data-stage="event"]').count()) >= 1, "the trace shows the event");
  check((await page.locator('#trace tr[data-stage="ledger"]').count()) >= 1, "and what it changed in the ledger");
  await shot("08b-trace");

  // A reconciliation run, its variances by location and class.
  await submit(page.locator("header nav a", { hasText: "Reconciliations" }));
  await shot("09-reconciliations");
  await submit(page.locator("#runs tr[data-run] a").first());
  check((await page.locator("#variances-by-location tr[data-location]").count()) > 0, "variances by location");
  await shot("10-reconciliation");

  console.log("dashboard.mjs: every check passed");
} catch (e) {
  console.error(`dashboard.mjs: ${e.stack || e}`);
  await shot("failure").catch(() => {});
  process.exitCode = 1;
} finally {
  await browser.close();
}
