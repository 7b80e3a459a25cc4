import { describe, expect, it } from "vitest";
import { fitBox } from "./worldmap";

const pt = (lat: number, lon: number) => ({ id: `${lat},${lon}`, lat, lon, cls: "candidate", label: "" });

describe("fitBox", () => {
  it("widens a single point to the minimum span around it", () => {
    expect(fitBox([pt(52, 5)], 30)).toEqual([
      [-10, 43],
      [20, 61],
    ]);
  });
  it("keeps a wide extent and clamps at the poles and the antimeridian", () => {
    expect(fitBox([pt(-33.9, 151.2), pt(51.5, -0.1)], 30)).toEqual([
      [-0.1, -33.9],
      [151.2, 51.5],
    ]);
    expect(fitBox([pt(84, 179)], 30)).toEqual([
      [164, 75],
      [180, 85],
    ]);
  });
  it("has no box without a located point", () => {
    expect(fitBox([], 30)).toBeNull();
    expect(fitBox([pt(NaN, 1)], 30)).toBeNull();
  });
});
