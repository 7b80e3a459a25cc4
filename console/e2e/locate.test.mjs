// The locate view (`/locate`) in a real browser against the stack and its engines: the
// best city equals the API's, the candidates and each engine's answer are listed, the
// form checks addresses, and a batch is located and offered as CSV.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { api, assertNoErrors, fixture, openBrowser, openPage, ready, shot, testText } from "./harness.mjs";

let browser;
let answer;
before(async () => {
  browser = await openBrowser();
  answer = await api(`/api/v1/locate/${encodeURIComponent(fixture.locate_ip)}`);
});
after(async () => {
  await browser?.close();
});

test("locating an address shows the best city, the candidates and the engines' answers", async () => {
  assert.equal(answer.locations[0]?.cityName, fixture.locate_city, "the API's best city is the fixture's");
  const partials = await api(`/api/v1/locate/${encodeURIComponent(fixture.locate_ip)}/partials`);
  const { page, errors } = await openPage(browser, `/locate?ip=${encodeURIComponent(fixture.locate_ip)}`);
  await ready(page, "locate");
  assert.equal(await testText(page, "locate-best"), fixture.locate_label);
  assert.equal(await testText(page, "locate-anycast"), answer.anycast ? "yes" : "no");
  assert.equal(await page.locator('[data-testid="locate-candidates"] tbody tr').count(), answer.locations.length);
  const engines = (await page.locator('[data-testid="locate-partials"] tbody tr td:first-child').allInnerTexts()).map((t) => t.trim());
  assert.deepEqual(engines, partials.partials.map((p) => p.engine));
  const sites = partials.partials.find((p) => p.engine === "anycast")?.locations.length ?? 0;
  await page.waitForSelector(`[data-view="locate"] canvas[data-drawn="${answer.locations.length + sites}"]`);
  await shot(page, "locate");
  assertNoErrors(errors);
  await page.context().close();
});

test("the form locates what is typed and refuses what is not an address", async () => {
  const { page, errors } = await openPage(browser, "/locate");
  await ready(page, "locate");
  const input = page.getByLabel("IP address", { exact: true });
  await input.fill("not-an-address");
  await page.getByRole("button", { name: "Locate", exact: true }).click();
  await page.waitForSelector('[data-testid="error-locate-ip"]');
  assert.match(await testText(page, "error-locate-ip"), /not an IPv4 or IPv6 address/);
  assert.equal(new URL(page.url()).searchParams.get("ip"), null);
  await input.fill(fixture.locate_ip);
  await page.getByRole("button", { name: "Locate", exact: true }).click();
  await page.waitForURL((u) => u.searchParams.get("ip") === fixture.locate_ip);
  await page.waitForSelector('[data-testid="locate-best"]');
  assert.equal(await testText(page, "locate-best"), fixture.locate_label);
  assertNoErrors(errors);
  await page.context().close();
});

test("a batch lists bad entries, locates the rest and offers a CSV", async () => {
  const { page, errors } = await openPage(browser, "/locate");
  await ready(page, "locate");
  await page.getByLabel(/^Addresses/).fill(`${fixture.locate_ip}\nnot-an-ip, =cmd()`);
  await page.getByRole("button", { name: "Locate all" }).click();
  await page.waitForSelector('[data-testid="batch-csv"]');
  assert.deepEqual((await page.locator('[data-testid="batch-invalid"] li').allInnerTexts()).map((t) => t.trim()), ["not-an-ip", "=cmd()"]);
  assert.equal(await testText(page, "batch-progress"), "1 of 1");
  const [download] = await Promise.all([page.waitForEvent("download"), page.locator('[data-testid="batch-csv"]').click()]);
  assert.equal(download.suggestedFilename(), "vantage-locate.csv");
  const csv = await readFile(await download.path(), "utf8");
  const lines = csv.trim().split("\r\n");
  assert.equal(lines.length, 2);
  assert.ok(lines[0].startsWith('"ip","city"'), lines[0]);
  assert.ok(lines[1].startsWith(`"${fixture.locate_ip}","${fixture.locate_city ?? ""}"`), lines[1]);
  assertNoErrors(errors);
  await page.context().close();
});
