// Bench: the measurement page of a large measurement (1,000,000 results) in headless
// Chromium. Measures first contentful paint and the time until the page's data is in
// (`performance.mark("measurement-ready")`), over several runs with a cold context each.
//
//   VANTAGE_CONSOLE_URL=https://127.0.0.1:8443 BENCH_MSM=1000001 node bench/measurement.mjs
//
// Env: BENCH_RUNS (default 5), BENCH_FCP_MAX_MS (default 1500: exit 1 when the median
// first paint is above it), CHROMIUM (default /usr/bin/chromium). Prints one JSON line.
import { chromium } from "playwright-core";

const base = (process.env.VANTAGE_CONSOLE_URL ?? "").replace(/\/$/, "");
const msm = process.env.BENCH_MSM ?? "";
if (!base || !/^\d+$/.test(msm)) {
  console.error("set VANTAGE_CONSOLE_URL (the console's origin) and BENCH_MSM (a measurement id), e.g.\n  VANTAGE_CONSOLE_URL=https://127.0.0.1:8443 BENCH_MSM=1000001 node bench/measurement.mjs");
  process.exit(2);
}
const runs = Number(process.env.BENCH_RUNS ?? "5");
const limit = Number(process.env.BENCH_FCP_MAX_MS ?? "1500");

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"],
  headless: true,
});
const fcp = [];
const readyMs = [];
let results;
try {
  for (let i = 0; i < runs; i++) {
    const context = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1280, height: 900 } });
    const page = await context.newPage();
    // Record first-contentful-paint from the start of the navigation.
    await page.addInitScript(() => {
      window.__fcp = null;
      new PerformanceObserver((list) => {
        for (const e of list.getEntries()) if (e.name === "first-contentful-paint") window.__fcp = e.startTime;
      }).observe({ type: "paint", buffered: true });
    });
    const errors = [];
    page.on("pageerror", (e) => errors.push(e.message));
    await page.goto(`${base}/measurements/${msm}`);
    await page.waitForSelector('[data-view="measurement"][data-ready="1"]', { timeout: 60000 });
    await page.waitForFunction(() => window.__fcp !== null, null, { timeout: 10000 });
    const t = await page.evaluate(() => ({
      fcp: window.__fcp,
      ready: performance.getEntriesByName("measurement-ready")[0]?.startTime ?? null,
      results: document.querySelector('[data-testid="summary-results"]')?.textContent ?? null,
    }));
    if (errors.length) throw new Error(`page errors: ${errors.join("; ")}`);
    if (t.ready === null) throw new Error("the page never marked measurement-ready");
    fcp.push(t.fcp);
    readyMs.push(t.ready);
    results = t.results;
    console.error(`run ${i + 1}: first paint ${t.fcp.toFixed(0)} ms, data ready ${t.ready.toFixed(0)} ms`);
    await context.close();
  }
} finally {
  await browser.close();
}
const out = {
  bench: "measurement-page",
  msm: Number(msm),
  results_shown: results === null ? null : Number(results),
  runs,
  fcp_ms: { median: Math.round(median(fcp)), max: Math.round(Math.max(...fcp)) },
  ready_ms: { median: Math.round(median(readyMs)), max: Math.round(Math.max(...readyMs)) },
  fcp_limit_ms: limit,
};
console.log(JSON.stringify(out));
if (out.fcp_ms.median > limit) {
  console.error(`median first paint ${out.fcp_ms.median} ms is above ${limit} ms`);
  process.exit(1);
}
