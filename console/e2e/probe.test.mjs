// The probe page (`/probes/{id}`) in a real browser against the stack: spec and status
// equal to `/api/v2/probes/{id}/`, the connection history with the probe's connect
// event, its measurements and results; an unknown id is the not-found page.
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

const dash = (v) => (v === null || v === undefined || v === "" ? "—" : String(v));

async function tagTexts(page, id) {
  const el = page.locator(`[data-testid="${id}"]`);
  const items = await el.locator("li").allInnerTexts();
  return items.length ? items.map((t) => t.trim()) : [];
}

test("the probe page shows what the API has about a connected probe", async () => {
  const id = fixture.probes[0];
  const p = await api(`/api/v2/probes/${id}/`);
  const conns = await api(`/api/vantage/v1/probes/${id}/connections?limit=100`);
  const msms = await api(`/api/vantage/v1/probes/${id}/measurements`);
  const results = await api(`/api/vantage/v1/probes/${id}/results?limit=50`);
  const { page, errors } = await openPage(browser, `/probes/${id}`);
  await ready(page, "probe");
  assert.equal(await testText(page, "probe-id"), String(p.id));
  assert.equal(await testText(page, "probe-status"), p.status.name);
  assert.equal(await testText(page, "probe-country"), dash(p.country_code));
  assert.equal(await testText(page, "probe-asn-v4"), p.asn_v4 ? `AS${p.asn_v4}` : "—");
  assert.equal(await testText(page, "probe-controller"), dash(p.controller));
  assert.equal(await testText(page, "probe-address-v4"), dash(p.address_v4));
  assert.equal(await testText(page, "probe-description"), dash(p.description));
  assert.equal(await testText(page, "probe-anchor"), p.is_anchor ? "yes" : "no");
  const slugs = (p.tags ?? []).map((t) => t.slug);
  assert.deepEqual(await tagTexts(page, "probe-tags-user"), slugs.filter((s) => !s.startsWith("system-")));
  assert.deepEqual(await tagTexts(page, "probe-tags-system"), slugs.filter((s) => s.startsWith("system-")));

  // Connection history: the probe's connect event is there, as the API has it.
  assert.ok(conns.connections.some((c) => c.event === "connect"), "the API records the probe's connect event");
  const rows = page.locator('[data-testid="connections"] tbody tr');
  assert.equal(await rows.count(), conns.connections.length);
  const events = (await page.locator('[data-testid="connections"] tbody tr td:nth-child(2)').allInnerTexts()).map((t) => t.trim());
  assert.deepEqual(events, conns.connections.map((c) => c.event));

  // Measurements it takes part in (links) and its recent results.
  for (const m of msms.results) {
    assert.equal(await page.locator(`[data-testid="probe-measurements"] a[href="/measurements/${m.id}"]`).count(), 1, `measurement ${m.id} listed`);
  }
  if (results.length) assert.equal(await page.locator('[data-testid="probe-results"] tbody tr').count(), results.length);
  else assert.equal(await page.locator('[data-testid="probe-results"] td.empty').count(), 1);
  // Its place on the map.
  if (p.geometry) await page.waitForSelector('[data-view="probe"] canvas[data-drawn="1"]');
  // Result fields (hostnames, answers) are text, never markup.
  assert.equal(await page.evaluate(() => window.__xss), undefined);
  await shot(page, "probe-page");
  assertNoErrors(errors);
  await page.context().close();
});

test("a probe whose agent never connected shows its status", async () => {
  const id = fixture.disconnected_probe;
  const p = await api(`/api/v2/probes/${id}/`);
  const { page, errors } = await openPage(browser, `/probes/${id}`);
  await ready(page, "probe");
  assert.equal(await testText(page, "probe-status"), p.status.name);
  assert.notEqual(p.status.id, 1);
  assertNoErrors(errors);
  await page.context().close();
});

test("an unknown probe id is a clear not-found page", async () => {
  const id = fixture.unknown_probe;
  const { page, errors } = await openPage(browser, `/probes/${id}`, { allow: [`/api/v2/probes/${id}`] });
  await ready(page, "notfound");
  assert.match(await testText(page, "notfound"), new RegExp(`No probe with id ${id}\\b`));
  assertNoErrors(errors);
  await page.context().close();
});

test("a malformed probe id is a not-found page too", async () => {
  const { page, errors } = await openPage(browser, "/probes/abc%3Cb%3E");
  await ready(page, "notfound");
  assert.equal(await testText(page, "notfound"), "No probe with id abc<b>.");
  assert.equal(await page.locator("[data-view=notfound] b").count(), 0);
  assertNoErrors(errors);
  await page.context().close();
});
