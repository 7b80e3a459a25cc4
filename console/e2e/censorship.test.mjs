// The censorship view (`/censorship`) in a real browser against the stack: the counts by
// country equal `/api/v1/aggregation`, the search count equals `/api/v1/measurements`,
// and a filter typed in the form goes into the URL and the counts.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { api, assertNoErrors, fixture, openBrowser, openPage, ready, shot, testText } from "./harness.mjs";

let browser;
before(async () => {
  browser = await openBrowser();
});
after(async () => {
  await browser?.close();
});

const COUNTS = ["measurement_count", "anomaly_count", "confirmed_count", "failure_count", "ok_count"];

test("counts by country and the search equal the API's", async () => {
  const { probe_cc: cc, test_name: tn, count } = fixture.ooni;
  const q = `probe_cc=${cc}&test_name=${tn}`;
  const agg = await api(`/api/v1/aggregation?axis_x=probe_cc&${q}`);
  const list = await api(`/api/v1/measurements?${q}&limit=1`);
  const row = agg.result.find((r) => r.probe_cc === cc);
  assert.ok(row && Number(row.measurement_count) >= count, "the fastpath holds the fixture's measurements");
  const { page, errors } = await openPage(browser, `/censorship?${q}`);
  await ready(page, "censorship");
  for (const k of COUNTS) assert.equal(Number(await testText(page, `agg-${cc}-${k}`)), Number(row[k]), k);
  assert.equal(Number(await testText(page, "agg-total-measurement_count")), Number(row.measurement_count));
  assert.equal(Number(await testText(page, "search-count")), list.metadata.count);
  const shown = Math.min(50, list.metadata.count);
  assert.equal(await page.locator('[data-testid="search-results"] tbody tr').count(), shown);
  await shot(page, "censorship");
  assertNoErrors(errors);
  await page.context().close();
});

test("all countries, then a country typed in the form", async () => {
  const { probe_cc: cc } = fixture.ooni;
  const all = await api("/api/v1/aggregation?axis_x=probe_cc");
  const total = all.result.reduce((a, r) => a + Number(r.measurement_count), 0);
  const { page, errors } = await openPage(browser, "/censorship");
  await ready(page, "censorship");
  assert.equal(Number(await testText(page, "agg-total-measurement_count")), total);
  // Inputs (URLs, or anything a probe submitted) are shown as text, never run.
  assert.equal(await page.evaluate(() => window.__xss), undefined);
  await page.getByLabel("Country", { exact: true }).fill(cc.toLowerCase());
  await page.waitForURL((u) => u.searchParams.get("probe_cc") === cc);
  const one = await api(`/api/v1/aggregation?axis_x=probe_cc&probe_cc=${cc}`);
  const want = one.result.reduce((a, r) => a + Number(r.measurement_count), 0);
  await page.waitForFunction(
    ([w]) => document.querySelector('[data-testid="agg-total-measurement_count"]')?.textContent === String(w),
    [want],
  );
  const list = await api(`/api/v1/measurements?probe_cc=${cc}&limit=1`);
  await page.waitForFunction(([w]) => document.querySelector('[data-testid="search-count"]')?.textContent === String(w), [list.metadata.count]);
  assertNoErrors(errors);
  await page.context().close();
});
