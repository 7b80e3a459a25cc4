import { describe, expect, it } from "vitest";
import { countByCountry, filterProbes, parseAsn, readFilters, readMap, statusClass, tagCounts } from "./probes-data";

const answer = {
  count: 4,
  columns: ["id", "lat", "lon", "status", "is_anchor", "asn_v4", "country_code", "tags"],
  rows: [
    [1, 52.37, 4.89, 1, false, 64500, "NL", ["home", "system-ipv4-works"]],
    [2, 48.85, 2.35, 2, true, 64501, "FR", ["System-IPv4-Works"]],
    [3, null, null, 0, false, null, "NL", []],
    [4, 40.7, -74, 3, false, 64500, "us", ["home"]],
    ["bad", 0, 0, 1, false, 1, "NL", []],
  ],
};

describe("readMap", () => {
  it("reads rows by column name and skips rows without an id", () => {
    const p = readMap(answer);
    expect(p.map((x) => x.id)).toEqual([1, 2, 3, 4]);
    expect(p[1]).toEqual({ id: 2, lat: 48.85, lon: 2.35, status: 2, anchor: true, asn: 64501, country: "FR", tags: ["system-ipv4-works"] });
    expect(p[2].lat).toBeNull();
    expect(p[3].country).toBe("US");
  });
  it("follows the columns whatever their order", () => {
    const p = readMap({ count: 1, columns: ["country_code", "id", "status"], rows: [["DE", 9, 1]] });
    expect(p).toEqual([{ id: 9, lat: null, lon: null, status: 1, anchor: false, asn: null, country: "DE", tags: [] }]);
  });
});

describe("filters", () => {
  const probes = readMap(answer);
  it("reads the query string and ignores bad values", () => {
    const f = readFilters(new URLSearchParams("country=nl&asn=AS64500&tag=home,%20System-IPv4-works&status=1&anchor=0"));
    expect(f).toEqual({ country: "NL", asn: 64500, tags: ["home", "system-ipv4-works"], status: 1, anchor: false });
    expect(readFilters(new URLSearchParams("country=Holland&asn=x&status=9&anchor=maybe"))).toEqual({ country: "", asn: null, tags: [], status: null, anchor: null });
  });
  it("parses AS numbers", () => {
    expect(parseAsn("as3333")).toBe(3333);
    expect(parseAsn(" 64500 ")).toBe(64500);
    expect(parseAsn("AS")).toBeNull();
    expect(parseAsn("99999999999")).toBeNull();
  });
  it("keeps the probes that pass every filter", () => {
    const ids = (q: string) => filterProbes(probes, readFilters(new URLSearchParams(q))).map((p) => p.id);
    expect(ids("")).toEqual([1, 2, 3, 4]);
    expect(ids("country=NL")).toEqual([1, 3]);
    expect(ids("asn=64500")).toEqual([1, 4]);
    expect(ids("tag=home")).toEqual([1, 4]);
    expect(ids("tag=home,system-ipv4-works")).toEqual([1]);
    expect(ids("tag=system-ipv4-works")).toEqual([1, 2]);
    expect(ids("status=2")).toEqual([2]);
    expect(ids("status=0")).toEqual([3]);
    expect(ids("anchor=1")).toEqual([2]);
    expect(ids("anchor=0&country=NL&status=1")).toEqual([1]);
  });
  it("counts per country, most first", () => {
    expect(countByCountry(probes)).toEqual([
      { country: "NL", total: 2, connected: 1, disconnected: 0, anchors: 0 },
      { country: "FR", total: 1, connected: 0, disconnected: 1, anchors: 1 },
      { country: "US", total: 1, connected: 0, disconnected: 0, anchors: 0 },
    ]);
    expect(tagCounts(probes)).toEqual([
      ["home", 2],
      ["system-ipv4-works", 2],
    ]);
  });
  it("classes by status, anchors apart", () => {
    expect([0, 1, 2, 3].map((s) => statusClass(s, false))).toEqual(["never", "connected", "disconnected", "abandoned"]);
    expect([statusClass(1, true), statusClass(2, true)]).toEqual(["anchor", "anchor-off"]);
  });
  it("filters 10,000 probes quickly", () => {
    const rows = Array.from({ length: 10000 }, (_, i) => [i + 1, 0, 0, i % 4, i % 50 === 0, 64500 + (i % 300), ["NL", "DE", "US", "FR"][i % 4], i % 2 ? ["system-ipv4-works"] : []]);
    const many = readMap({ count: rows.length, columns: answer.columns, rows });
    const t0 = performance.now();
    const out = filterProbes(many, readFilters(new URLSearchParams("country=DE&tag=system-ipv4-works")));
    countByCountry(out);
    expect(out.length).toBe(2500);
    expect(performance.now() - t0).toBeLessThan(50);
  });
});
