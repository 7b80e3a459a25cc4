import { describe, expect, it } from "vitest";
import { dayUnix, n, stackOf } from "./censorship-data";

describe("censorship data", () => {
  it("reads counts and days", () => {
    expect([n(3), n("4"), n(null), n("x")]).toEqual([3, 4, 0, 0]);
    expect(dayUnix("2024-05-01")).toBe(1714521600);
    expect(dayUnix("2024-05-01T00:00:00Z")).toBe(1714521600);
    expect(dayUnix("yesterday")).toBeNaN();
  });
  it("splits a day into parts that add up to its count (a confirmed failure counts once)", () => {
    const day = { measurement_count: 2, ok_count: 0, anomaly_count: 0, confirmed_count: 1, failure_count: 2 };
    const parts = stackOf(day);
    expect(parts.map((p) => p.n)).toEqual([0, 0, 1, 1]);
    expect(parts.reduce((a, p) => a + p.n, 0)).toBe(2);
    expect(stackOf({ measurement_count: "10", ok_count: "5", anomaly_count: "3", confirmed_count: "1", failure_count: "1" }).map((p) => p.n)).toEqual([5, 3, 1, 1]);
  });
});
