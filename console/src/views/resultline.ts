// One line of text per raw RIPE Atlas result (the probe page's recent results): ping
// average RTT and loss, traceroute hops and whether it got there, DNS rcode/answers/time,
// HTTP status and time, sslcert validity, NTP offset. Pure; the caller renders it as text.

type Json = Record<string, unknown>;

const obj = (v: unknown): Json | null => (v && typeof v === "object" && !Array.isArray(v) ? (v as Json) : null);
const numOf = (v: unknown): number | null => {
  const n = typeof v === "string" && v.trim() !== "" ? Number(v) : v;
  return typeof n === "number" && Number.isFinite(n) ? n : null;
};
const ms = (v: number): string => (v >= 100 ? `${v.toFixed(0)} ms` : v >= 10 ? `${v.toFixed(1)} ms` : `${v.toFixed(2)} ms`);

const RCODES = ["NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED", "YXDOMAIN", "YXRRSET", "NXRRSET", "NOTAUTH", "NOTZONE"];

/** The rcode in the header of a base64 DNS message (`abuf`); null if it cannot be read. */
export function abufRcode(abuf: unknown): string | null {
  if (typeof abuf !== "string" || abuf.length < 8) return null;
  let head: string;
  try {
    head = atob(abuf.slice(0, 8));
  } catch {
    return null;
  }
  if (head.length < 4) return null;
  const code = head.charCodeAt(3) & 0x0f;
  return RCODES[code] ?? `RCODE${code}`;
}

/** The `error` of a result or answer as text (`timeout 5000`). */
function errorText(e: unknown): string | null {
  if (e === undefined || e === null) return null;
  if (typeof e === "string") return e;
  const o = obj(e);
  if (!o) return String(e);
  return Object.entries(o)
    .map(([k, v]) => `${k} ${typeof v === "string" ? v : JSON.stringify(v)}`)
    .join(", ");
}

function ping(r: Json): string {
  const sent = numOf(r.sent);
  const rcvd = numOf(r.rcvd);
  const avg = numOf(r.avg);
  const loss = sent && rcvd !== null ? ` · ${Math.round(((sent - rcvd) / sent) * 100)}% loss` : "";
  const got = sent !== null && rcvd !== null ? ` (${rcvd}/${sent} replies)` : "";
  if (avg === null || avg < 0) return `no reply${got}`;
  return `avg RTT ${ms(avg)}${got}${loss}`;
}

function traceroute(r: Json): string {
  const hops = Array.isArray(r.result) ? (r.result as unknown[]) : [];
  const last = obj(hops[hops.length - 1]);
  const dst = typeof r.dst_addr === "string" ? r.dst_addr : null;
  const replies = last && Array.isArray(last.result) ? (last.result as unknown[]).map(obj).filter((x): x is Json => x !== null) : [];
  const reached = dst !== null && replies.some((x) => x.from === dst);
  const rtts = replies.map((x) => numOf(x.rtt)).filter((x): x is number => x !== null);
  const rtt = rtts.length ? ` · last hop ${ms(Math.min(...rtts))}` : "";
  return `${hops.length} hops · ${reached ? "reached" : "did not reach"} ${dst ?? "the target"}${rtt}`;
}

function dnsOne(res: Json | null, err: unknown): string {
  const e = errorText(err);
  if (e) return `error: ${e}`;
  if (!res) return "no answer";
  const rcode = abufRcode(res.abuf);
  const an = numOf(res.ANCOUNT);
  const rt = numOf(res.rt);
  return [rcode ?? "answer", an !== null ? `${an} answer${an === 1 ? "" : "s"}` : null, rt !== null ? ms(rt) : null].filter((x) => x).join(" · ");
}

function dns(r: Json): string {
  if (Array.isArray(r.resultset)) {
    const parts = (r.resultset as unknown[]).map(obj).filter((x): x is Json => x !== null);
    if (parts.length === 0) return "no answer";
    const first = dnsOne(obj(parts[0].result), parts[0].error);
    return parts.length > 1 ? `${first} (+${parts.length - 1} more servers)` : first;
  }
  return dnsOne(obj(r.result), r.error);
}

function http(r: Json): string {
  const reqs = Array.isArray(r.result) ? (r.result as unknown[]).map(obj).filter((x): x is Json => x !== null) : [];
  const first = reqs[0];
  if (!first) return "no answer";
  const e = errorText(first.err ?? first.error);
  if (e) return `error: ${e}`;
  const status = numOf(first.res);
  const rt = numOf(first.rt);
  return [status !== null ? `HTTP ${status}` : "no status", rt !== null ? ms(rt) : null].filter((x) => x).join(" · ");
}

function sslcert(r: Json): string {
  const e = errorText(r.err ?? r.alert ?? r.error);
  if (e) return `error: ${e}`;
  const chain = Array.isArray(r.cert) ? r.cert.length : 0;
  const rt = numOf(r.rt);
  const ver = typeof r.ver === "string" ? `TLS ${r.ver}` : null;
  return [ver, `${chain} certificate${chain === 1 ? "" : "s"}`, rt !== null ? ms(rt) : null].filter((x) => x).join(" · ");
}

function ntp(r: Json): string {
  const list = Array.isArray(r.result) ? (r.result as unknown[]).map(obj).filter((x): x is Json => x !== null) : [];
  const offsets = list.map((x) => numOf(x.offset)).filter((x): x is number => x !== null);
  if (offsets.length === 0) return errorText(r.error) ? `error: ${errorText(r.error)}` : "no reply";
  const avg = offsets.reduce((a, b) => a + b, 0) / offsets.length;
  const stratum = numOf(r.stratum);
  return `offset ${(avg * 1000).toFixed(2)} ms${stratum !== null ? ` · stratum ${stratum}` : ""} (${offsets.length}/${list.length} replies)`;
}

/** A one-line summary of a raw result of type `type` (from the result's own `type` if missing). */
export function resultLine(raw: unknown, type?: string): string {
  const r = obj(raw);
  if (!r) return "unreadable result";
  const t = (type ?? (typeof r.type === "string" ? r.type : "")).toLowerCase();
  switch (t) {
    case "ping":
      return ping(r);
    case "traceroute":
    case "mtr":
      return traceroute(r);
    case "dns":
      return dns(r);
    case "http":
      return http(r);
    case "sslcert":
      return sslcert(r);
    case "ntp":
      return ntp(r);
    default:
      return t ? `${t} result` : "result";
  }
}
