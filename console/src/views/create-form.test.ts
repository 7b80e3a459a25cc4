// The create form's body and error mapping (pure).
import { describe, expect, test } from "vitest";
import { TYPE_FIELDS, controlOf, initialForm, requestBody } from "./create-form";

describe("requestBody", () => {
  test("a one-off ping from probe ids, with RIPE Atlas defaults", () => {
    const f = initialForm("ping");
    f.target = " 127.0.0.1 ";
    f.sources = [{ type: "probes", value: "101,102", requested: "2", include: "", exclude: "" }];
    expect(requestBody(f)).toEqual({
      definitions: [{ type: "ping", af: 4, target: "127.0.0.1", packets: 3, size: 48, packet_interval: 1000 }],
      probes: [{ type: "probes", value: "101,102", requested: 2 }],
      is_oneoff: true,
    });
  });
  test("a repeated dns on the probe's resolver: no target, interval, tags, times in UTC", () => {
    const f = initialForm("dns");
    f.target = "192.0.2.53";
    f.options.query_argument = "ripe.net";
    f.oneoff = false;
    f.interval = "300";
    f.start = "2027-01-02T03:04";
    f.sources = [
      { type: "country", value: "NL", requested: "5", include: "system-ipv4-works", exclude: "" },
      { type: "area", value: "WW", requested: "1", include: "", exclude: "a, b" },
    ];
    const b = requestBody(f);
    const d = (b.definitions as Record<string, unknown>[])[0];
    expect(d.target).toBeUndefined();
    expect(d).toMatchObject({ type: "dns", query_argument: "ripe.net", query_class: "IN", query_type: "A", use_probe_resolver: true, interval: 300 });
    expect(b.is_oneoff).toBe(false);
    expect(b.start_time).toBe("2027-01-02T03:04:00Z");
    expect(b.probes).toEqual([
      { type: "country", value: "NL", requested: 5, tags: { include: ["system-ipv4-works"], exclude: [] } },
      { type: "area", value: "WW", requested: 1, tags: { include: [], exclude: ["a", "b"] } },
    ]);
  });
  test("a value that is not a number goes to the API as typed (it names the field)", () => {
    const f = initialForm("ping");
    f.options.packets = "lots";
    expect((requestBody(f).definitions as Record<string, unknown>[])[0].packets).toBe("lots");
  });
  test("traceroute and mtr defaults", () => {
    const t = Object.fromEntries(TYPE_FIELDS.traceroute.map((x) => [x.name, x.def]));
    expect(t).toMatchObject({ protocol: "ICMP", packets: "3", paris: "16", first_hop: "1", max_hops: "32" });
    const m = Object.fromEntries(TYPE_FIELDS.mtr.map((x) => [x.name, x.def]));
    expect(m).toMatchObject({ protocol: "ICMP", max_hops: "30", response_timeout: "1000" });
  });
});

describe("controlOf", () => {
  test("pointers name form controls", () => {
    expect(controlOf("/definitions/0/packets")).toBe("def-packets");
    expect(controlOf("/definitions/0/target")).toBe("def-target");
    expect(controlOf("/probes/0/value")).toBe("src-0-value");
    expect(controlOf("/probes/1/requested")).toBe("src-1-requested");
    expect(controlOf("/probes/2")).toBe("src-2-value");
    expect(controlOf("/stop_time")).toBe("stop");
  });
  test("unknown pointers go to the form", () => {
    expect(controlOf("/body")).toBeUndefined();
    expect(controlOf("/probes")).toBeUndefined();
    expect(controlOf(undefined)).toBeUndefined();
    expect(controlOf("?page")).toBeUndefined();
  });
});
