// Bench: the probe map in headless Chromium (Debian's /usr/bin/chromium, playwright-core).
//
//   VANTAGE_CONSOLE_URL=https://127.0.0.1:8443 node console/bench/map.mjs
//
// Against an API whose catalog holds the probes (10,000 for the figure): opens
// /probes RUNS times (fresh context, cold cache), measures from navigation start to the
// view's `probes-drawn` / `probes-painted` performance marks (data loaded, every located
// probe drawn on the canvas, then the next frame; `probes-data` and the map request's
// resource timing say how much of it was the API), and the time to apply a country
// filter and a status filter through the form (change event to the redrawn canvas and
// the next frame). Prints the gzipped size of the JS and CSS the first view loaded.
// Exits non-zero if the median render is over 1000 ms or the first view's JS+CSS is
// over 250 KB gzipped.
import { chromium } from "playwright-core";
import { gzipSync } from "node:zlib";

const base = (process.env.VANTAGE_CONSOLE_URL ?? "").replace(/\/$/, "");
if (!base) {
  console.error("set VANTAGE_CONSOLE_URL to the console's base URL (e.g. https://127.0.0.1:8443)");
  process.exit(2);
}
const RUNS = Number(process.env.RUNS ?? 5);
const RENDER_BUDGET_MS = 1000;
const SIZE_BUDGET_KB = 250;

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};
const f = (ms) => `${ms.toFixed(0)} ms`;

/** In the page: change a <select> and time it until the map has drawn again and painted. */
function timeSelect([id, value]) {
  return new Promise((resolve, reject) => {
    const sel = document.getElementById(id);
    const canvas = document.querySelector('[data-view="probes"] canvas[data-testid="map-points"]');
    if (!sel || !canvas) return reject(new Error(`no #${id} or map canvas`));
    const seq = canvas.dataset.seq;
    const t0 = performance.now();
    sel.value = value;
    sel.dispatchEvent(new Event("change", { bubbles: true }));
    const wait = () => {
      if (canvas.dataset.seq !== seq) requestAnimationFrame(() => resolve({ ms: performance.now() - t0, drawn: Number(canvas.dataset.drawn), shown: document.querySelector('[data-testid="probe-count"]')?.textContent }));
      else requestAnimationFrame(wait);
    };
    wait();
  });
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--no-first-run"],
  headless: true,
});
const render = [];
const drawn = [];
const countryMs = [];
const statusMs = [];
const apiEnd = [];
let assets = null;
let probes = 0;
try {
  for (let run = 0; run < RUNS; run++) {
    const context = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1280, height: 900 } });
    const page = await context.newPage();
    const loaded = [];
    page.on("response", (r) => {
      const t = r.request().resourceType();
      if (t === "script" || t === "stylesheet") loaded.push(r);
    });
    const errors = [];
    page.on("pageerror", (e) => errors.push(e.message));
    await page.goto(`${base}/probes`);
    await page.waitForSelector('[data-view="probes"][data-ready="1"]', { timeout: 30000 });
    await page.waitForFunction(() => performance.getEntriesByName("probes-painted").length > 0, null, { timeout: 30000 });
    const m = await page.evaluate(() => {
      const d = performance.getEntriesByName("probes-drawn")[0];
      const p = performance.getEntriesByName("probes-painted")[0];
      const data = performance.getEntriesByName("probes-data")[0];
      const res = performance.getEntriesByType("resource").find((e) => e.name.includes("/api/vantage/v1/probes/map"));
      const canvas = document.querySelector('[data-view="probes"] canvas[data-testid="map-points"]');
      return { api: res ? res.responseEnd : NaN, apiWait: res ? res.responseStart - res.requestStart : NaN, data: data?.startTime ?? NaN, drawn: d.startTime, painted: p.startTime, points: Number(canvas?.dataset.drawn ?? 0), total: Number(document.querySelector('[data-testid="probe-total"]')?.textContent ?? 0) };
    });
    probes = m.total;
    render.push(m.painted);
    drawn.push(m.drawn);
    if (errors.length) throw new Error(`page errors: ${errors.join("; ")}`);
    if (assets === null) {
      let raw = 0;
      let gz = 0;
      const files = [];
      for (const r of loaded) {
        const body = await r.body();
        const g = gzipSync(body, { level: 9 }).length;
        raw += body.length;
        gz += g;
        files.push(`${new URL(r.url()).pathname} ${(body.length / 1024).toFixed(1)} KB (${(g / 1024).toFixed(1)} KB gz)`);
      }
      assets = { raw, gz, files };
    }
    // The country with the most probes, then connected only: filters through the form.
    const top = await page.evaluate(() => {
      const opts = [...document.querySelectorAll("#f-country option")].filter((o) => o.value);
      const n = (o) => Number(/\((\d+)\)/.exec(o.textContent ?? "")?.[1] ?? 0);
      opts.sort((a, b) => n(b) - n(a));
      return opts[0]?.value ?? "";
    });
    const c = await page.evaluate(timeSelect, ["f-country", top]);
    const s = await page.evaluate(timeSelect, ["f-status", "1"]);
    countryMs.push(c.ms);
    statusMs.push(s.ms);
    apiEnd.push(m.api);
    console.log(
      `run ${run + 1}: map answer received at ${f(m.api)} (server ${f(m.apiWait)}), read at ${f(m.data)}, ${m.points} points drawn at ${f(m.drawn)}, painted at ${f(m.painted)}; ` +
        `country=${top}: ${f(c.ms)} (${c.shown} probes); +status=connected: ${f(s.ms)} (${s.shown} probes)`,
    );
    await context.close();
  }
} finally {
  await browser.close();
}

console.log(`\nprobe map, ${probes} probes, ${RUNS} runs (navigation start → drawn and painted):`);
console.log(`  render: median ${f(median(render))}, max ${f(Math.max(...render))} (drawn: median ${f(median(drawn))}; map answer received: median ${f(median(apiEnd))})`);
console.log(`  country filter: median ${f(median(countryMs))}, max ${f(Math.max(...countryMs))}`);
console.log(`  status filter:  median ${f(median(statusMs))}, max ${f(Math.max(...statusMs))}`);
console.log(`  first view JS+CSS: ${(assets.raw / 1024).toFixed(1)} KB, ${(assets.gz / 1024).toFixed(1)} KB gzipped`);
for (const line of assets.files) console.log(`    ${line}`);
let failed = false;
if (median(render) > RENDER_BUDGET_MS) {
  console.error(`FAIL: median render ${f(median(render))} is over ${RENDER_BUDGET_MS} ms`);
  failed = true;
}
if (assets.gz / 1024 > SIZE_BUDGET_KB) {
  console.error(`FAIL: the first view loads ${(assets.gz / 1024).toFixed(1)} KB gzipped JS+CSS, over ${SIZE_BUDGET_KB} KB`);
  failed = true;
}
process.exit(failed ? 1 : 0);
