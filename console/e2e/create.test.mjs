// Browser tests of the create form against the local stack: labels on every control, a
// refused API key, an invalid field shown beside itself, and the key path: a ping made
// through the form whose first result appears live on its page.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { fixture, openBrowser, openPage, ready, shot, api, assertNoErrors, testText } from "./harness.mjs";

let browser;
before(async () => {
  browser = await openBrowser();
});
after(async () => {
  await browser?.close();
});

const probes = () => (fixture.probes?.length ? fixture.probes : assert.fail("the fixture has no connected probes"));

/** Fill the form for a one-off ping of 127.0.0.1 from the fixture's probes. */
async function fillPing(page, { key = fixture.api_key, packets } = {}) {
  await page.selectOption("#def-type", "ping");
  await page.fill("#def-target", "127.0.0.1");
  await page.fill("#def-description", "console e2e ping");
  if (packets !== undefined) await page.fill("#def-packets", String(packets));
  await page.check("#oneoff-yes");
  await page.selectOption("#src-0-type", "probes");
  await page.fill("#src-0-value", probes().join(","));
  await page.fill("#src-0-requested", String(probes().length));
  await page.fill("#apikey", key);
}

test("the form has RIPE Atlas's defaults and a label on every control", async () => {
  const { page, errors, context } = await openPage(browser, "/measurements/new");
  await ready(page, "create");
  assert.equal(await page.inputValue("#def-packets"), "3");
  assert.equal(await page.inputValue("#def-size"), "48");
  for (const [type, field, value] of [
    ["traceroute", "#def-protocol", "ICMP"],
    ["traceroute", "#def-paris", "16"],
    ["traceroute", "#def-max_hops", "32"],
    ["mtr", "#def-max_hops", "30"],
    ["dns", "#def-query_type", "A"],
    ["dns", "#def-query_class", "IN"],
    ["http", "#def-method", "GET"],
    ["http", "#def-path", "/"],
    ["http", "#def-version", "1.1"],
    ["sslcert", "#def-port", "443"],
    ["ntp", "#def-packets", "3"],
  ]) {
    await page.selectOption("#def-type", type);
    assert.equal(await page.inputValue(field), value, `${type} ${field}`);
    // Every input and select of this type's form is labelled.
    const unlabelled = await page.evaluate(() =>
      [...document.querySelectorAll('[data-view="create"] input, [data-view="create"] select')]
        .filter((el) => !(el.labels?.length || el.getAttribute("aria-label")))
        .map((el) => el.id || el.outerHTML),
    );
    assert.deepEqual(unlabelled, [], `unlabelled controls for ${type}`);
  }
  await page.selectOption("#def-type", "dns");
  assert.ok(await page.isChecked("#def-use_probe_resolver"), "dns uses the probe's resolver by default");
  await page.selectOption("#def-type", "ping");
  await shot(page, "create-form");
  assertNoErrors(errors);
  await context.close();
});

test("a bad API key says the key was refused", async () => {
  const { page, errors, context } = await openPage(browser, "/measurements/new", { allow: ["403"] });
  await ready(page, "create");
  await fillPing(page, { key: "not-a-key-0000" });
  await page.click('[data-testid="create-submit"]');
  await page.waitForSelector('[data-testid="error-apikey"]');
  assert.match(await testText(page, "error-apikey"), /API key was refused/);
  assert.match(await testText(page, "form-error"), /refused/);
  assert.equal(new URL(page.url()).pathname, "/measurements/new");
  assertNoErrors(errors);
  await context.close();
});

test("an invalid field shows the API's error next to that field", async () => {
  const { page, errors, context } = await openPage(browser, "/measurements/new", { allow: ["400"] });
  await ready(page, "create");
  await fillPing(page, { packets: 99 });
  await page.click('[data-testid="create-submit"]');
  await page.waitForSelector('[data-testid="error-def-packets"]');
  const msg = await testText(page, "error-def-packets");
  assert.match(msg, /packets/);
  assert.match(msg, /1 to 16/);
  assert.equal(await page.getAttribute("#def-packets", "aria-invalid"), "true");
  assert.equal(await page.locator('[data-testid="form-error"]').count(), 0, "the error is at the field, not the form");
  // A source's bad value goes next to that source.
  await page.fill("#def-packets", "3");
  await page.selectOption("#src-0-type", "country");
  await page.fill("#src-0-value", "Netherlands");
  await page.click('[data-testid="create-submit"]');
  await page.waitForSelector('[data-testid="error-src-0-value"]');
  assert.match(await testText(page, "error-src-0-value"), /country code/);
  assertNoErrors(errors);
  await context.close();
});

test("a ping created through the form shows its first result live", async () => {
  const { page, errors, context } = await openPage(browser, "/measurements/new");
  await ready(page, "create");
  await fillPing(page);
  await page.check("#remember");
  await page.click('[data-testid="create-submit"]');
  await page.waitForURL(/\/measurements\/\d+$/, { timeout: 30000 });
  const id = Number(new URL(page.url()).pathname.split("/").pop());
  await ready(page, "measurement", 30000);
  assert.equal(await testText(page, "msm-id"), String(id));
  const created = await api(`/api/v2/measurements/${id}/`);
  assert.equal(created.type, "ping");
  assert.equal(created.target, "127.0.0.1");
  assert.equal(created.is_oneoff, true);
  // The first result arrives on the stream while the page is open.
  await page.waitForFunction(() => Number(document.querySelector('[data-testid="live-count"]')?.textContent) >= 1, null, { timeout: 60000 });
  const row = page.locator('[data-testid="result-row"][data-live="1"]').first();
  await row.waitFor({ timeout: 10000 });
  assert.ok(probes().includes(Number(await row.getAttribute("data-prb"))), "the live row is one of the chosen probes");
  // The key was kept for this tab only, as asked.
  assert.equal(await page.evaluate(() => sessionStorage.getItem("vantage.apiKey")), fixture.api_key);
  assertNoErrors(errors);
  await context.close();
});
