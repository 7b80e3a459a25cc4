import { describe, expect, it } from "vitest";
import { abufRcode, resultLine } from "./resultline";

// A DNS answer header: id 0x1234, flags 0x8180 (NOERROR) / 0x8183 (NXDOMAIN).
const header = (flags2: number) => btoa(String.fromCharCode(0x12, 0x34, 0x81, flags2, 0, 1, 0, 1, 0, 0, 0, 0));

describe("resultLine", () => {
  it("summarises ping", () => {
    expect(resultLine({ type: "ping", avg: 12.345, sent: 3, rcvd: 3 })).toBe("avg RTT 12.3 ms (3/3 replies) · 0% loss");
    expect(resultLine({ type: "ping", avg: -1, sent: 3, rcvd: 0 })).toBe("no reply (0/3 replies)");
    expect(resultLine({ type: "ping", avg: "150.2", sent: "4", rcvd: "2" })).toBe("avg RTT 150 ms (2/4 replies) · 50% loss");
  });
  it("summarises traceroute", () => {
    const r = { type: "traceroute", dst_addr: "192.0.2.1", result: [{ hop: 1, result: [{ from: "10.0.0.1", rtt: 1 }] }, { hop: 2, result: [{ from: "192.0.2.1", rtt: 5.5 }, { x: "*" }] }] };
    expect(resultLine(r)).toBe("2 hops · reached 192.0.2.1 · last hop 5.50 ms");
    expect(resultLine({ ...r, dst_addr: "192.0.2.9" })).toBe("2 hops · did not reach 192.0.2.9 · last hop 5.50 ms");
  });
  it("summarises dns, from abuf's header", () => {
    expect(abufRcode(header(0x80))).toBe("NOERROR");
    expect(abufRcode(header(0x83))).toBe("NXDOMAIN");
    expect(abufRcode("!!")).toBeNull();
    expect(resultLine({ type: "dns", result: { rt: 12.5, ANCOUNT: 1, abuf: header(0x80) } })).toBe("NOERROR · 1 answer · 12.5 ms");
    expect(resultLine({ type: "dns", error: { timeout: 5000 } })).toBe("error: timeout 5000");
    expect(resultLine({ type: "dns", resultset: [{ error: { timeout: 5000 } }, { result: { rt: 3 } }] })).toBe("error: timeout 5000 (+1 more servers)");
  });
  it("summarises http, sslcert and ntp", () => {
    expect(resultLine({ type: "http", result: [{ res: 200, rt: 35.2 }] })).toBe("HTTP 200 · 35.2 ms");
    expect(resultLine({ type: "http", result: [{ err: "connect: timeout" }] })).toBe("error: connect: timeout");
    expect(resultLine({ type: "sslcert", ver: "1.3", cert: ["a", "b"], rt: 80 })).toBe("TLS 1.3 · 2 certificates · 80.0 ms");
    expect(resultLine({ type: "ntp", stratum: 2, result: [{ offset: 0.001 }, { x: "*" }, { offset: 0.003 }] })).toBe("offset 2.00 ms · stratum 2 (2/3 replies)");
  });
  it("never throws on odd input", () => {
    expect(resultLine(null)).toBe("unreadable result");
    expect(resultLine({ type: "ping" })).toBe("no reply");
    expect(resultLine({ type: "wat" })).toBe("wat result");
    expect(resultLine({ type: "traceroute", result: "x" })).toBe("0 hops · did not reach the target");
  });
});
