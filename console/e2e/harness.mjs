// Browser-test harness: Debian's /usr/bin/chromium driven by playwright-core (never a
// downloaded browser), pages that record console errors, screenshots into the test
// output, and the fixture that e2e/tests/test_console.py wrote (what the stack holds).
import { chromium } from "playwright-core";
import { readFileSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import assert from "node:assert/strict";

/** What the stack holds: written by e2e/tests/test_console.py (VANTAGE_CONSOLE_FIXTURE). */
export const fixture = JSON.parse(
  readFileSync(process.env.VANTAGE_CONSOLE_FIXTURE ?? assert.fail("VANTAGE_CONSOLE_FIXTURE is not set: run the browser tests through e2e/tests/test_console.py"), "utf8"),
);
export const base = fixture.base;
export const shotsDir = process.env.CONSOLE_SHOTS ?? join(import.meta.dirname, "..", "test-output");
mkdirSync(shotsDir, { recursive: true });

export const CHROMIUM_FLAGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-background-networking",
  "--disable-component-update",
  "--no-first-run",
];

/** Launch headless Chromium (CHROMIUM, default /usr/bin/chromium). */
export async function openBrowser() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    args: CHROMIUM_FLAGS,
    headless: true,
  });
}

/**
 * A new page at `path` (relative to the console's base URL), recording console errors and
 * uncaught exceptions in `errors`. `allow` lists substrings of errors the test expects
 * (e.g. a 404 the page asked for on purpose).
 */
export async function openPage(browser, path, { viewport = { width: 1280, height: 900 }, allow = [] } = {}) {
  const context = await browser.newContext({ ignoreHTTPSErrors: true, viewport });
  const page = await context.newPage();
  const errors = [];
  page.on("console", (m) => {
    if (m.type() === "error" && !allow.some((a) => m.text().includes(a) || (m.location()?.url ?? "").includes(a))) errors.push(m.text());
  });
  page.on("pageerror", (e) => errors.push(`uncaught: ${e.message}`));
  if (path !== null) await page.goto(base + path);
  return { page, errors, context };
}

/** Wait until view `name` says its data has loaded. */
export async function ready(page, name, timeout = 20000) {
  await page.waitForSelector(`[data-view="${name}"][data-ready="1"]`, { timeout });
}

/** Save a full-page screenshot as <shotsDir>/<name>.png. */
export async function shot(page, name) {
  const path = join(shotsDir, `${name}.png`);
  await page.screenshot({ path, fullPage: false });
  return path;
}

/** GET an API path as JSON (the API's certificate is trusted via NODE_EXTRA_CA_CERTS). */
export async function api(path) {
  const r = await fetch(base + path, { headers: { Accept: "application/json" } });
  assert.ok(r.ok, `GET ${path}: HTTP ${r.status}`);
  return r.json();
}

/** No console error and no uncaught exception happened on the page. */
export function assertNoErrors(errors) {
  assert.deepEqual(errors, [], `console errors: ${errors.join("\n")}`);
}

/** The text of the element with data-testid `id`. */
export async function testText(page, id) {
  return (await page.locator(`[data-testid="${id}"]`).first().innerText()).trim();
}
