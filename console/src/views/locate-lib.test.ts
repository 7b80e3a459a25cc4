import { describe, expect, it } from "vitest";
import { apiMessage, cityLabel, csvField, isIp, locationKey, parseAddresses, place, runPool, toCsv } from "./locate-lib";

describe("addresses", () => {
  it("tells addresses from other text", () => {
    for (const ok of ["193.0.14.129", "8.8.8.8", "0.0.0.0", "2001:67c:2e8::2", "::1", "::ffff:192.0.2.1", "2001:db8:0:0:0:0:0:1"]) expect(isIp(ok), ok).toBe(true);
    for (const bad of ["", "256.1.1.1", "1.2.3", "01.2.3.4", "1.2.3.4/24", "example.com", "2001:db8::1::2", "fe80::1%eth0", "[::1]", "12345::", "1.2.3.4 "]) expect(isIp(bad), bad).toBe(false);
  });
  it("splits a pasted list, drops repeats and lists the bad entries", () => {
    expect(parseAddresses("193.0.14.129\n8.8.8.8, 2001:67c:2e8::2;nope\n\n193.0.14.129 999.1.1.1")).toEqual({
      valid: ["193.0.14.129", "8.8.8.8", "2001:67c:2e8::2"],
      invalid: ["nope", "999.1.1.1"],
    });
  });
});

describe("csv", () => {
  it("quotes, doubles quotes and defuses formulas", () => {
    expect(csvField('say "hi", ok')).toBe('"say ""hi"", ok"');
    expect(csvField("=HYPERLINK(\"x\")")).toBe('"\'=HYPERLINK(""x"")"');
    expect(["+1", "-2", "@a", "\tx"].map(csvField)).toEqual(['"\'+1"', '"\'-2"', '"\'@a"', '"\'\tx"']);
    expect(csvField(null)).toBe('""');
    expect(csvField(-33.9)).toBe('"-33.9"');
    expect(csvField("-33.9")).toBe('"\'-33.9"');
    expect(toCsv(["a", "b"], [["x\ny", 1]])).toBe('"a","b"\r\n"x\ny","1"\r\n');
  });
});

describe("runPool", () => {
  it("runs at most `limit` at once and keeps the order", async () => {
    let running = 0;
    let peak = 0;
    const seen: number[] = [];
    const out = await runPool(
      [5, 1, 4, 2, 3, 1, 2, 5, 1],
      4,
      async (ms, i) => {
        running++;
        peak = Math.max(peak, running);
        await new Promise((r) => setTimeout(r, ms));
        running--;
        return i * 10;
      },
      (i) => seen.push(i),
    );
    expect(out).toEqual([0, 10, 20, 30, 40, 50, 60, 70, 80]);
    expect(peak).toBe(4);
    expect(seen.sort()).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8]);
  });
});

describe("apiMessage", () => {
  it("reads both error shapes", () => {
    expect(apiMessage(503, { error: "engines_unavailable", message: "start vantage api with --engines-url" })).toBe("start vantage api with --engines-url");
    expect(apiMessage(503, { error: { status: 503, detail: "geolocation is not configured" } })).toBe("geolocation is not configured");
    expect(apiMessage(502, "Bad gateway")).toBe("Bad gateway");
    expect(apiMessage(500, null)).toBe("HTTP 500");
  });
});

describe("locations", () => {
  const city = { id: 2925533, cityName: "Frankfurt am Main", stateAnsiCode: "05", countryCodeAlpha2: "DE", scope: "city" as const };
  const country = { id: null, cityName: null, stateAnsiCode: null, countryCodeAlpha2: "NL", scope: "country" as const };
  it("names a city, and at country scope only the country", () => {
    expect(place(city)).toBe("Frankfurt am Main, 05, DE");
    expect(cityLabel(city)).toBe("Frankfurt am Main");
    expect(place(country)).toBe("NL (country only)");
    expect(cityLabel(country)).toBe("(somewhere in NL)");
    // Answers from before `scope` existed are cities.
    expect(place({ id: 1, cityName: "X", countryCodeAlpha2: "FR" })).toBe("X, FR");
  });
  it("keys a location by its city, or by its country at country scope", () => {
    expect(locationKey(city)).toBe("c2925533");
    expect(locationKey(country)).toBe("cc-NL");
  });
});
