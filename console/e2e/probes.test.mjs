// The probe map (`/probes`, `/`) in a real browser against the stack: every probe of
// `/api/vantage/v1/probes/map` counted and drawn, the count per country equal to the
// API's, and a filter applied through the form changes the URL and the count.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { api, assertNoErrors, openBrowser, openPage, ready, shot, testText } from "./harness.mjs";

let browser;
/** The API's answer, read again by each test just before it opens the page. */
let map;
before(async () => {
  browser = await openBrowser();
});
after(async () => {
  await browser?.close();
});

/** The API's rows as objects (by column name), fetched now. */
async function probes() {
  map = await api("/api/vantage/v1/probes/map");
  const at = (c) => map.columns.indexOf(c);
  return map.rows.map((r) => ({
    id: r[at("id")],
    located: typeof r[at("lat")] === "number" && typeof r[at("lon")] === "number",
    status: r[at("status")],
    asn: r[at("asn_v4")],
    country: String(r[at("country_code")] ?? "").toUpperCase(),
  }));
}

function perCountry(list) {
  const m = new Map();
  for (const p of list) m.set(p.country, (m.get(p.country) ?? 0) + 1);
  return m;
}

async function count(page) {
  return Number(await testText(page, "probe-count"));
}

test("the probe map shows every probe the API has, drawn and counted per country", async () => {
  const all = await probes();
  assert.ok(all.length > 0, "the stack has probes");
  const { page, errors } = await openPage(browser, "/probes");
  await ready(page, "probes");
  const located = all.filter((p) => p.located).length;
  await page.waitForSelector(`canvas[data-testid="map-points"][data-drawn="${located}"]`, { timeout: 10000 });
  assert.equal(await count(page), map.count);
  assert.equal(Number(await testText(page, "probe-total")), all.length);
  for (const [cc, n] of perCountry(all)) {
    assert.equal(Number(await testText(page, `country-count-${cc || "none"}`)), n, `probes in ${cc}`);
  }
  // Every listed probe links to its page.
  const first = all[0];
  assert.equal(await page.locator(`[data-testid="probe-table"] a[href="/probes/${first.id}"]`).count(), 1);
  await shot(page, "probes-map");
  assertNoErrors(errors);
  await page.context().close();
});

test("/ is the probe map", async () => {
  await probes();
  const { page, errors } = await openPage(browser, "/");
  await ready(page, "probes");
  assert.equal(await count(page), map.count);
  assertNoErrors(errors);
  await page.context().close();
});

test("filters applied through the form change the URL and the count", async () => {
  const all = await probes();
  const [cc, n] = [...perCountry(all)].filter(([c]) => c).sort((a, b) => b[1] - a[1])[0];
  const { page, errors } = await openPage(browser, "/probes");
  await ready(page, "probes");
  await page.getByLabel("Country").selectOption(cc);
  await page.waitForURL((u) => u.searchParams.get("country") === cc);
  assert.equal(await count(page), n);

  await page.getByLabel("Status").selectOption("1");
  await page.waitForURL((u) => u.searchParams.get("status") === "1" && u.searchParams.get("country") === cc);
  const connected = all.filter((p) => p.country === cc && p.status === 1).length;
  assert.equal(await count(page), connected);
  await page.waitForSelector(`canvas[data-testid="map-points"][data-drawn="${all.filter((p) => p.country === cc && p.status === 1 && p.located).length}"]`);

  // ASN: typed (debounced), then in the URL.
  const asn = all.find((p) => p.country === cc && p.asn)?.asn;
  if (asn) {
    await page.getByLabel("ASN").fill(`AS${asn}`);
    await page.waitForURL((u) => u.searchParams.get("asn") === `AS${asn}`);
    assert.equal(await count(page), all.filter((p) => p.country === cc && p.status === 1 && p.asn === asn).length);
  }
  // The filtered view is a link: opening the URL gives the same count.
  const url = new URL(page.url());
  const again = await openPage(browser, url.pathname + url.search);
  await ready(again.page, "probes");
  assert.equal(await count(again.page), await count(page));
  assertNoErrors(again.errors);
  await again.context.close();

  await page.getByRole("button", { name: "Clear filters" }).click();
  await page.waitForURL((u) => u.search === "");
  assert.equal(await count(page), map.count);
  assertNoErrors(errors);
  await page.context().close();
});

test("clicking a country in the count table filters to it", async () => {
  const all = await probes();
  const [cc, n] = [...perCountry(all)].filter(([c]) => c)[0];
  const { page, errors } = await openPage(browser, "/probes");
  await ready(page, "probes");
  await page.locator('[data-testid="country-table"]').getByRole("button", { name: cc, exact: true }).click();
  await page.waitForURL((u) => u.searchParams.get("country") === cc);
  assert.equal(await count(page), n);
  assertNoErrors(errors);
  await page.context().close();
});

test("a probe in the list opens its page", async () => {
  const id = (await probes())[0].id;
  const { page, errors } = await openPage(browser, "/probes");
  await ready(page, "probes");
  await page.locator(`[data-testid="probe-table"] a[href="/probes/${id}"]`).click();
  await ready(page, "probe");
  assert.equal(await testText(page, "probe-id"), String(id));
  assertNoErrors(errors);
  await page.context().close();
});

test("clicking a point on the map opens that probe's page", async () => {
  const located = (await probes()).filter((p) => p.located);
  assert.ok(located.length > 0, "the stack has located probes");
  const cc = located[0].country;
  const ids = new Set(located.filter((p) => p.country === cc).map((p) => String(p.id)));
  const { page, errors } = await openPage(browser, `/probes?country=${cc}`);
  await ready(page, "probes");
  const canvas = page.locator('[data-view="probes"] canvas[data-testid="map-points"]');
  await page.waitForSelector(`[data-view="probes"] canvas[data-drawn="${ids.size}"]`);
  // A pixel the points layer painted (the canvas holds nothing else), in CSS pixels.
  const at = await canvas.evaluate((c) => {
    const ctx = c.getContext("2d");
    const { data, width, height } = ctx.getImageData(0, 0, c.width, c.height);
    const dpr = c.width / c.clientWidth;
    for (let y = 0; y < height; y++) for (let x = 0; x < width; x++) if (data[(y * width + x) * 4 + 3] > 200) return { x: x / dpr + 1, y: y / dpr + 1 };
    return null;
  });
  assert.ok(at, "the map drew the probes");
  await canvas.click({ position: at });
  await ready(page, "probe");
  const id = await testText(page, "probe-id");
  assert.ok(ids.has(id), `probe ${id} is one of ${cc}'s`);
  assert.equal(new URL(page.url()).pathname, `/probes/${id}`);
  assertNoErrors(errors);
  await page.context().close();
});
