// Browser tests of the measurement list and pages against the local stack: each view
// loads without console errors and shows what the API has (counts, ids, latest values),
// text from results stays text, and an unknown id is a clear page.
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

const msm = (type) => fixture.measurements?.[type] ?? assert.fail(`the fixture has no ${type} measurement`);

/** Read `path` until two reads agree (results keep arriving); returns the stable answer. */
async function stable(path, tries = 5) {
  let a = await api(path);
  for (let i = 0; i < tries; i++) {
    await new Promise((r) => setTimeout(r, 300));
    const b = await api(path);
    if (JSON.stringify(a) === JSON.stringify(b)) return b;
    a = b;
  }
  return a;
}

test("the list shows the API's measurements, newest first", async () => {
  const { page, errors, context } = await openPage(browser, "/measurements");
  await ready(page, "measurements");
  const want = await api("/api/v2/measurements/?sort=-id&page_size=50");
  assert.equal(Number(await testText(page, "msm-count")), want.count);
  const ids = await page.locator('[data-testid="msm-link"]').allInnerTexts();
  assert.deepEqual(ids.map(Number), want.results.map((m) => m.id));
  for (const type of ["ping", "traceroute", "dns"]) assert.ok(ids.map(Number).includes(msm(type)), `${type} measurement listed`);
  await shot(page, "measurements-list");
  assertNoErrors(errors);
  await context.close();
});

test("list filters live in the URL and match the API's answer", async () => {
  const { page, errors, context } = await openPage(browser, "/measurements?type=dns&page_size=25");
  await ready(page, "measurements");
  const want = await api("/api/v2/measurements/?type=dns&page_size=25&sort=-id");
  const ids = (await page.locator('[data-testid="msm-link"]').allInnerTexts()).map(Number);
  assert.deepEqual(ids, want.results.map((m) => m.id));
  assert.ok(ids.includes(msm("dns")));
  assert.ok(!ids.includes(msm("ping")));
  // Choosing another type changes the URL (a shareable link) and the rows.
  await page.selectOption("#f-type", "ping");
  await page.waitForURL(/type=ping/);
  await page.waitForFunction((id) => [...document.querySelectorAll('[data-testid="msm-link"]')].some((a) => a.textContent === String(id)), msm("ping"));
  assert.equal(await page.locator("#f-type").inputValue(), "ping");
  assertNoErrors(errors);
  await context.close();
});

test("ping page: summary numbers and the latest RTTs are the API's", async () => {
  const id = msm("ping");
  const latest = await stable(`/api/v2/measurements/${id}/latest/`);
  const { page, errors, context } = await openPage(browser, `/measurements/${id}`);
  await ready(page, "measurement");
  const summary = await api(`/api/vantage/v1/measurements/${id}/summary?buckets=120`);
  const shownResults = Number(await testText(page, "summary-results"));
  assert.ok(shownResults >= 1 && shownResults <= summary.results, `results shown ${shownResults}, API ${summary.results}`);
  assert.equal(Number(await testText(page, "summary-probes")), summary.probes);
  const after = await api(`/api/v2/measurements/${id}/latest/`);
  // One row per probe with a result; each row's average RTT is the API's (when no newer result came meanwhile).
  const rows = await page.locator('[data-testid="result-row"]').count();
  assert.equal(rows, after.length);
  let compared = 0;
  for (const r of after) {
    const before = latest.find((x) => x.prb_id === r.prb_id);
    if (!before || before.timestamp !== r.timestamp) continue;
    const shown = await page.locator(`[data-testid="rtt-avg-${r.prb_id}"]`).getAttribute("data-value");
    assert.equal(Number(shown), r.avg, `probe ${r.prb_id} average RTT`);
    compared++;
  }
  assert.ok(compared >= 1, "at least one probe's RTT compared");
  // The chart has an accessible name and the table behind it.
  const chart = page.locator('[data-testid="chart-rtt"] [role="img"]');
  assert.match(await chart.getAttribute("aria-label"), /RTT over time/);
  assert.ok((await page.locator('[data-testid="chart-rtt"] details table').count()) === 1);
  // The plot draws the same points as the table behind it.
  await page.waitForFunction(() => {
    const fig = document.querySelector('[data-testid="chart-rtt"]');
    const drawn = fig?.querySelector(".chart")?.getAttribute("data-points");
    return drawn !== undefined && drawn !== null && Number(drawn) > 0 && Number(drawn) === fig.querySelectorAll("details tbody tr").length && fig.querySelector("canvas") !== null;
  });
  await shot(page, "measurement-ping");
  assertNoErrors(errors);
  await context.close();
});

test("ping page: choosing a probe narrows the chart to it", async () => {
  const id = msm("ping");
  const prb = fixture.probes[0];
  const { page, errors, context } = await openPage(browser, `/measurements/${id}`);
  await ready(page, "measurement");
  const answered = page.waitForResponse((r) => r.url().includes(`/summary?buckets=120&prb_id=${prb}`));
  await page.selectOption("#ping-probe", String(prb));
  await page.waitForURL(new RegExp(`prb_id=${prb}`));
  const resp = await answered;
  assert.equal(resp.status(), 200);
  const want = await resp.json();
  assert.ok(want.series.length >= 1, "the probe has results");
  await page.waitForFunction((p) => document.querySelector('[data-testid="chart-rtt"] [role="img"]')?.getAttribute("aria-label")?.includes(`probe ${p} (ms)`), prb);
  // The chart's table holds exactly that probe's buckets.
  await page.waitForFunction((n) => document.querySelectorAll('[data-testid="chart-rtt"] details tbody tr').length === n, want.series.length);
  assertNoErrors(errors);
  await context.close();
});

test("traceroute page: hop table and path view of the latest results", async () => {
  const id = msm("traceroute");
  const latest = await stable(`/api/v2/measurements/${id}/latest/`);
  assert.ok(latest.length >= 1, "the traceroute has results");
  const { page, errors, context } = await openPage(browser, `/measurements/${id}`);
  await ready(page, "measurement");
  const first = [...latest].sort((a, b) => a.prb_id - b.prb_id)[0];
  await page.waitForSelector('[data-testid="hop-table"]');
  const hops = await page.locator('[data-testid="hop-table"] tbody tr').count();
  assert.equal(hops, first.result.length);
  const svg = page.locator('[data-testid="path-view"]');
  assert.match(await svg.getAttribute("aria-label"), /Paths of \d+ probes/);
  assert.ok((await svg.locator("text", { hasText: `Probe ${first.prb_id}` }).count()) >= 1);
  assert.equal(await page.locator('[data-testid="result-row"]').count(), latest.length);
  await shot(page, "measurement-traceroute");
  assertNoErrors(errors);
  await context.close();
});

test("dns page: rcodes and answers per probe, the API's breakdown", async () => {
  const id = msm("dns");
  const { page, errors, context } = await openPage(browser, `/measurements/${id}`);
  await ready(page, "measurement");
  const summary = await api(`/api/vantage/v1/measurements/${id}/summary?buckets=120`);
  const latest = await api(`/api/v2/measurements/${id}/latest/`);
  assert.equal(await page.locator('[data-testid="result-row"]').count(), latest.length);
  const labels = await page.locator('[data-testid="rcode-breakdown"] tbody th').allInnerTexts();
  assert.deepEqual(labels.sort(), (summary.breakdown.rcodes ?? []).map((r) => r.rcode || "(no answer)").sort());
  await shot(page, "measurement-dns");
  assertNoErrors(errors);
  await context.close();
});

test("text from results is shown as text, never run", async () => {
  const id = fixture.xss_measurement ?? assert.fail("the fixture has no xss_measurement");
  const text = fixture.xss_text ?? assert.fail("the fixture has no xss_text");
  const { page, errors, context } = await openPage(browser, `/measurements/${id}`, { allow: ["/x", "favicon"] });
  await ready(page, "measurement");
  await page.waitForFunction((t) => document.body.innerText.includes(t), text, { timeout: 10000 });
  assert.equal(await page.evaluate(() => window.__xss), undefined);
  assert.equal(await page.locator('main script, main img[src="x"]').count(), 0);
  assertNoErrors(errors);
  await context.close();
});

test("an unknown measurement id is a clear not-found page", async () => {
  const id = fixture.unknown_msm ?? assert.fail("the fixture has no unknown_msm");
  const { page, errors, context } = await openPage(browser, `/measurements/${id}`, { allow: ["404"] });
  await ready(page, "notfound");
  assert.equal(await testText(page, "notfound"), `No measurement with id ${id}.`);
  assertNoErrors(errors);
  await context.close();
});
