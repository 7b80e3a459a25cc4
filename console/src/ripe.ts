// Pure parsing of raw RIPE Atlas results (and vantage's mtr) into what the result views
// show: ping RTTs and loss, traceroute/mtr hops, DNS answers decoded from `abuf` (the
// base64 wire answer), the sslcert chain (subject, issuer, validity from the PEM
// certificates), HTTP timings and NTP offsets. No DOM, no fetch: unit-tested with vitest
// on real results. Every parser tolerates the older firmware shapes (numbers as strings,
// missing fields) and never throws on bad input: what cannot be read becomes `error`.

/** A raw result as the API returns it (RIPE Atlas JSON; fields vary by type and firmware). */
export type RawResult = Record<string, unknown>;

// ---- small readers ------------------------------------------------------------------

/** A number from a number or a numeric string (old firmware sends strings); else undefined. */
export function num(v: unknown): number | undefined {
  if (typeof v === "number") return Number.isFinite(v) ? v : undefined;
  if (typeof v === "string" && v.trim() !== "") {
    const n = Number(v);
    return Number.isFinite(n) ? n : undefined;
  }
  return undefined;
}

/** A string field (numbers shown as text); else undefined. */
export function str(v: unknown): string | undefined {
  if (typeof v === "string") return v;
  if (typeof v === "number" && Number.isFinite(v)) return String(v);
  return undefined;
}

function obj(v: unknown): Record<string, unknown> | undefined {
  return v !== null && typeof v === "object" && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined;
}

function arr(v: unknown): unknown[] {
  return Array.isArray(v) ? v : [];
}

function mean(xs: number[]): number | undefined {
  return xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : undefined;
}

/** The common header of every result. */
export interface Header {
  prb_id: number;
  msm_id: number;
  timestamp: number;
  type: string;
  dst_name?: string;
  dst_addr?: string;
  from?: string;
}

export function header(r: RawResult): Header {
  return {
    prb_id: num(r.prb_id) ?? -1,
    msm_id: num(r.msm_id) ?? -1,
    timestamp: num(r.timestamp) ?? 0,
    type: str(r.type) ?? "",
    dst_name: str(r.dst_name),
    dst_addr: str(r.dst_addr) ?? str(r.addr),
    from: str(r.from),
  };
}

// ---- ping ---------------------------------------------------------------------------

export interface PingSummary {
  sent: number;
  rcvd: number;
  /** Lost fraction, 0..1 (undefined when nothing was sent). */
  loss?: number;
  min?: number;
  avg?: number;
  max?: number;
  /** Every reply's RTT in ms, in order. */
  rtts: number[];
  /** Errors the probe reported per packet (`{error}` entries), or a resolution error. */
  errors: string[];
}

export function parsePing(r: RawResult): PingSummary {
  const rtts: number[] = [];
  const errors: string[] = [];
  for (const e of arr(r.result)) {
    const o = obj(e);
    if (!o) continue;
    const rtt = num(o.rtt);
    // Duplicates (`dup`) are extra copies of a reply, not replies (RIPE Atlas counts them apart).
    if (rtt !== undefined && !o.dup) rtts.push(rtt);
    else if (typeof o.error === "string") errors.push(o.error);
  }
  if (typeof r.error === "string") errors.push(r.error);
  if (typeof r.dnserr === "string") errors.push(r.dnserr);
  const sent = num(r.sent) ?? arr(r.result).length;
  const rcvd = num(r.rcvd) ?? rtts.length;
  // RIPE Atlas reports min/avg/max -1 when nothing came back.
  const pos = (v: number | undefined) => (v !== undefined && v >= 0 ? v : undefined);
  return {
    sent,
    rcvd,
    loss: sent > 0 ? Math.max(0, (sent - rcvd) / sent) : undefined,
    min: pos(num(r.min)) ?? (rtts.length ? Math.min(...rtts) : undefined),
    avg: pos(num(r.avg)) ?? mean(rtts),
    max: pos(num(r.max)) ?? (rtts.length ? Math.max(...rtts) : undefined),
    rtts,
    errors,
  };
}

// ---- traceroute and mtr -------------------------------------------------------------

export interface Responder {
  /** The replying address ("*" for a hop where nothing answered). */
  from: string;
  rtts: number[];
}

export interface Hop {
  hop: number;
  responders: Responder[];
  /** Probes sent at this hop, and the ones that got no answer. */
  sent: number;
  lost: number;
  /** Lost fraction 0..1. */
  loss: number;
  best?: number;
  avg?: number;
  worst?: number;
  /** mtr: standard deviation of the RTTs. */
  stdev?: number;
  /** ICMP error letters (`err`: N, H, A, P, …), MTU notes, or a probe error. */
  notes: string[];
}

function hopStats(h: Omit<Hop, "best" | "avg" | "worst">): Hop {
  const all = h.responders.flatMap((r) => r.rtts);
  return {
    ...h,
    best: all.length ? Math.min(...all) : undefined,
    avg: mean(all),
    worst: all.length ? Math.max(...all) : undefined,
  };
}

/** The hops of a traceroute result (`result[]` of `{hop, result: [{from, rtt} | {x:"*"} | {err}]}`). */
export function parseTraceroute(r: RawResult): Hop[] {
  const hops: Hop[] = [];
  for (const e of arr(r.result)) {
    const o = obj(e);
    if (!o) continue;
    const hop = num(o.hop) ?? hops.length + 1;
    const notes: string[] = [];
    if (typeof o.error === "string") notes.push(o.error);
    const by = new Map<string, number[]>();
    let sent = 0;
    let lost = 0;
    for (const p of arr(o.result)) {
      const q = obj(p);
      if (!q) continue;
      sent++;
      const rtt = num(q.rtt);
      const from = str(q.from);
      if (q.x === "*" || rtt === undefined) {
        if (q.x === "*" || from === undefined) lost++;
      }
      if (from !== undefined) {
        const list = by.get(from) ?? [];
        if (rtt !== undefined) list.push(rtt);
        by.set(from, list);
      }
      if (q.err !== undefined) notes.push(`err ${String(q.err)}`);
      if (q.mtu !== undefined) notes.push(`mtu ${String(q.mtu)}`);
      if (typeof q.error === "string") notes.push(q.error);
    }
    const responders = [...by].map(([from, rtts]) => ({ from, rtts }));
    if (responders.length === 0) responders.push({ from: "*", rtts: [] });
    hops.push(hopStats({ hop, responders, sent, lost, loss: sent ? lost / sent : 0, notes }));
  }
  return hops;
}

/** The hops of a vantage mtr result (`result[]` of `{hop, from, stats, timings}`). */
export function parseMtr(r: RawResult): Hop[] {
  const hops: Hop[] = [];
  for (const e of arr(r.result)) {
    const o = obj(e);
    if (!o) continue;
    const hop = num(o.hop) ?? hops.length + 1;
    const notes: string[] = [];
    if (typeof o.error === "string") notes.push(o.error);
    if (o.err !== undefined) notes.push(`err ${String(o.err)}`);
    if (o.mtu !== undefined) notes.push(`mtu ${String(o.mtu)}`);
    const stats = obj(o.stats) ?? {};
    const rtts = arr(o.timings)
      .map((t) => num(obj(t)?.rtt))
      .filter((x): x is number => x !== undefined);
    const sent = num(stats.total) ?? arr(o.timings).length;
    const rcv = num(stats.rcv) ?? rtts.length;
    const from = str(o.from) ?? "*";
    const others = arr(o.from_all).map(str).filter((x): x is string => x !== undefined && x !== from);
    const loss = num(stats.loss);
    hops.push({
      hop,
      responders: [{ from, rtts }, ...others.map((f) => ({ from: f, rtts: [] }))],
      sent,
      lost: sent - rcv,
      loss: loss !== undefined ? loss / 100 : sent ? (sent - rcv) / sent : 0,
      best: num(stats.min),
      avg: num(stats.avg),
      worst: num(stats.max),
      stdev: num(stats.stDev),
      notes,
    });
  }
  return hops;
}

/** Hops of a traceroute or mtr result, by its type. */
export function parseHops(r: RawResult): Hop[] {
  return r.type === "mtr" ? parseMtr(r) : parseTraceroute(r);
}

/** Did the path reach the destination (the last hop answered from `dst_addr`)? */
export function reached(r: RawResult, hops: Hop[]): boolean {
  const dst = str(r.dst_addr);
  const last = hops[hops.length - 1];
  return !!dst && !!last && last.responders.some((x) => x.from === dst);
}

export interface PathNode {
  /** Address (or `*@hop` for a silent hop of one probe's path). */
  id: string;
  label: string;
  /** Hop number where it was first seen (its row in the path view). */
  hop: number;
  /** Probes whose path passes through it. */
  probes: number[];
}

export interface PathGraph {
  nodes: PathNode[];
  /** Edges between node ids, with the probes taking them. */
  edges: { from: string; to: string; probes: number[] }[];
}

/**
 * Merge the paths of several probes into one graph: a node per responding address
 * (shared hops merged), silent hops kept per probe, an edge per consecutive pair.
 * Each path starts at a node for its probe.
 */
export function mergePaths(paths: { prb_id: number; hops: Hop[] }[]): PathGraph {
  const nodes = new Map<string, PathNode>();
  const edges = new Map<string, { from: string; to: string; probes: number[] }>();
  const add = (id: string, label: string, hop: number, prb: number) => {
    const n = nodes.get(id);
    if (n) {
      if (!n.probes.includes(prb)) n.probes.push(prb);
      n.hop = Math.min(n.hop, hop);
    } else nodes.set(id, { id, label, hop, probes: [prb] });
  };
  for (const p of paths) {
    let prev = `probe:${p.prb_id}`;
    add(prev, `Probe ${p.prb_id}`, 0, p.prb_id);
    for (const h of p.hops) {
      const named = h.responders.find((r) => r.from !== "*");
      const id = named ? named.from : `*:${p.prb_id}:${h.hop}`;
      add(id, named ? named.from : "*", h.hop, p.prb_id);
      const key = `${prev}→${id}`;
      const e = edges.get(key);
      if (e) {
        if (!e.probes.includes(p.prb_id)) e.probes.push(p.prb_id);
      } else edges.set(key, { from: prev, to: id, probes: [p.prb_id] });
      prev = id;
    }
  }
  return { nodes: [...nodes.values()], edges: [...edges.values()] };
}

// ---- DNS wire format ------------------------------------------------------------------

export const RCODES: Record<number, string> = {
  0: "NOERROR",
  1: "FORMERR",
  2: "SERVFAIL",
  3: "NXDOMAIN",
  4: "NOTIMP",
  5: "REFUSED",
  6: "YXDOMAIN",
  7: "YXRRSET",
  8: "NXRRSET",
  9: "NOTAUTH",
  10: "NOTZONE",
};

export const RR_TYPES: Record<number, string> = {
  1: "A",
  2: "NS",
  5: "CNAME",
  6: "SOA",
  12: "PTR",
  13: "HINFO",
  15: "MX",
  16: "TXT",
  28: "AAAA",
  33: "SRV",
  35: "NAPTR",
  41: "OPT",
  43: "DS",
  44: "SSHFP",
  46: "RRSIG",
  47: "NSEC",
  48: "DNSKEY",
  50: "NSEC3",
  51: "NSEC3PARAM",
  52: "TLSA",
  59: "CDS",
  60: "CDNSKEY",
  64: "SVCB",
  65: "HTTPS",
  99: "SPF",
  255: "ANY",
  257: "CAA",
};

const CLASSES: Record<number, string> = { 1: "IN", 3: "CH", 4: "HS", 255: "ANY" };

export interface DnsRecord {
  name: string;
  type: string;
  class: string;
  ttl: number;
  /** The data as text: an address, a name, `10 mx.example.`, TXT strings, … */
  data: string;
}

export interface DnsMessage {
  id: number;
  qr: boolean;
  opcode: number;
  aa: boolean;
  tc: boolean;
  rd: boolean;
  ra: boolean;
  ad: boolean;
  cd: boolean;
  rcode: number;
  rcodeName: string;
  qdcount: number;
  ancount: number;
  nscount: number;
  arcount: number;
  question?: { name: string; type: string; class: string };
  answers: DnsRecord[];
  authority: DnsRecord[];
  additional: DnsRecord[];
  /** Set when the message is truncated or malformed past the header. */
  error?: string;
}

/** Bytes of a base64 string (standard alphabet; padding optional). Undefined when invalid. */
export function base64Bytes(b64: string): Uint8Array | undefined {
  const s = b64.replace(/\s+/g, "");
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(s)) return undefined;
  try {
    const bin = atob(s.padEnd(Math.ceil(s.length / 4) * 4, "="));
    const out = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
    return out;
  } catch {
    return undefined;
  }
}

class DnsReadError extends Error {}

class Reader {
  constructor(
    readonly b: Uint8Array,
    public pos = 0,
  ) {}
  need(n: number): void {
    if (this.pos + n > this.b.length) throw new DnsReadError(`truncated at byte ${this.pos}`);
  }
  u8(): number {
    this.need(1);
    return this.b[this.pos++];
  }
  u16(): number {
    this.need(2);
    const v = (this.b[this.pos] << 8) | this.b[this.pos + 1];
    this.pos += 2;
    return v;
  }
  u32(): number {
    this.need(4);
    const v = this.b[this.pos] * 2 ** 24 + ((this.b[this.pos + 1] << 16) | (this.b[this.pos + 2] << 8) | this.b[this.pos + 3]);
    this.pos += 4;
    return v;
  }
  /** A domain name at the current position, following compression pointers. */
  name(): string {
    const { text, end } = readName(this.b, this.pos);
    this.pos = end;
    return text;
  }
}

/** A name label as text: printable ASCII kept, dots and others escaped as in zone files. */
function labelText(b: Uint8Array, start: number, len: number): string {
  let s = "";
  for (let i = start; i < start + len; i++) {
    const c = b[i];
    if (c === 0x2e || c === 0x5c) s += `\\${String.fromCharCode(c)}`;
    else if (c > 0x20 && c < 0x7f) s += String.fromCharCode(c);
    else s += `\\${c.toString().padStart(3, "0")}`;
  }
  return s;
}

/** Read a (possibly compressed) name at `start`; `end` is where the name ends in place. */
function readName(b: Uint8Array, start: number): { text: string; end: number } {
  const labels: string[] = [];
  let pos = start;
  let end = -1;
  let jumps = 0;
  for (;;) {
    if (pos >= b.length) throw new DnsReadError(`name runs past the end at byte ${pos}`);
    const len = b[pos];
    if (len === 0) {
      if (end < 0) end = pos + 1;
      break;
    }
    if ((len & 0xc0) === 0xc0) {
      if (pos + 1 >= b.length) throw new DnsReadError(`truncated pointer at byte ${pos}`);
      if (end < 0) end = pos + 2;
      if (++jumps > 64) throw new DnsReadError("compression loop");
      pos = ((len & 0x3f) << 8) | b[pos + 1];
      continue;
    }
    if ((len & 0xc0) !== 0) throw new DnsReadError(`bad label length ${len} at byte ${pos}`);
    if (pos + 1 + len > b.length) throw new DnsReadError(`label runs past the end at byte ${pos}`);
    labels.push(labelText(b, pos + 1, len));
    pos += 1 + len;
  }
  return { text: labels.length ? `${labels.join(".")}.` : ".", end };
}

function ipv6Text(b: Uint8Array, at: number): string {
  const words: number[] = [];
  for (let i = 0; i < 8; i++) words.push((b[at + 2 * i] << 8) | b[at + 2 * i + 1]);
  // Compress the longest run of zero words (RFC 5952).
  let best = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (words[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && words[j] === 0) j++;
    if (j - i > bestLen) {
      best = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = words.map((w) => w.toString(16));
  if (best < 0) return hex.join(":");
  return `${hex.slice(0, best).join(":")}::${hex.slice(best + bestLen).join(":")}`;
}

/** TXT character-strings as text, each quoted (non-printable bytes escaped). */
function txtText(b: Uint8Array, start: number, end: number): string {
  const parts: string[] = [];
  let pos = start;
  while (pos < end) {
    const len = b[pos];
    let s = "";
    for (let i = pos + 1; i < Math.min(pos + 1 + len, end); i++) {
      const c = b[i];
      if (c === 0x22 || c === 0x5c) s += `\\${String.fromCharCode(c)}`;
      else if (c >= 0x20 && c < 0x7f) s += String.fromCharCode(c);
      else s += `\\${c.toString().padStart(3, "0")}`;
    }
    parts.push(`"${s}"`);
    pos += 1 + len;
  }
  return parts.join(" ");
}

function rdataText(b: Uint8Array, type: number, start: number, len: number): string {
  const end = start + len;
  switch (type) {
    case 1:
      return len === 4 ? `${b[start]}.${b[start + 1]}.${b[start + 2]}.${b[start + 3]}` : `(${len} bytes)`;
    case 28:
      return len === 16 ? ipv6Text(b, start) : `(${len} bytes)`;
    case 2:
    case 5:
    case 12:
      return readName(b, start).text;
    case 15: {
      const pref = (b[start] << 8) | b[start + 1];
      return `${pref} ${readName(b, start + 2).text}`;
    }
    case 16:
    case 99:
      return txtText(b, start, end);
    case 6: {
      const m = readName(b, start);
      const r = readName(b, m.end);
      const rd = new Reader(b, r.end);
      const nums = [rd.u32(), rd.u32(), rd.u32(), rd.u32(), rd.u32()];
      return `${m.text} ${r.text} ${nums.join(" ")}`;
    }
    default: {
      let hex = "";
      for (let i = start; i < Math.min(end, start + 32); i++) hex += b[i].toString(16).padStart(2, "0");
      return `\\# ${len} ${hex}${len > 32 ? "…" : ""}`;
    }
  }
}

function record(rd: Reader): DnsRecord {
  const name = rd.name();
  const type = rd.u16();
  const klass = rd.u16();
  const ttl = rd.u32();
  const len = rd.u16();
  rd.need(len);
  const data = rdataText(rd.b, type, rd.pos, len);
  rd.pos += len;
  return {
    name,
    type: RR_TYPES[type] ?? `TYPE${type}`,
    class: type === 41 ? `udp${klass}` : (CLASSES[klass] ?? `CLASS${klass}`),
    ttl,
    data,
  };
}

/**
 * Decode a DNS message (RFC 1035 wire format): header flags, rcode, counts, the question,
 * and the answer/authority/additional records with A, AAAA, CNAME, NS, PTR, MX, TXT and
 * SOA data as text (other types as `\# len hex`). Undefined when shorter than a header;
 * a message cut short keeps what was read and says where in `error`.
 */
export function decodeDns(bytes: Uint8Array): DnsMessage | undefined {
  if (bytes.length < 12) return undefined;
  const rd = new Reader(bytes);
  const id = rd.u16();
  const flags = rd.u16();
  const rcode = flags & 0xf;
  const m: DnsMessage = {
    id,
    qr: (flags & 0x8000) !== 0,
    opcode: (flags >> 11) & 0xf,
    aa: (flags & 0x0400) !== 0,
    tc: (flags & 0x0200) !== 0,
    rd: (flags & 0x0100) !== 0,
    ra: (flags & 0x0080) !== 0,
    ad: (flags & 0x0020) !== 0,
    cd: (flags & 0x0010) !== 0,
    rcode,
    rcodeName: RCODES[rcode] ?? `RCODE${rcode}`,
    qdcount: rd.u16(),
    ancount: rd.u16(),
    nscount: rd.u16(),
    arcount: rd.u16(),
    answers: [],
    authority: [],
    additional: [],
  };
  try {
    for (let i = 0; i < m.qdcount; i++) {
      const name = rd.name();
      const type = rd.u16();
      const klass = rd.u16();
      if (i === 0) m.question = { name, type: RR_TYPES[type] ?? `TYPE${type}`, class: CLASSES[klass] ?? `CLASS${klass}` };
    }
    for (let i = 0; i < m.ancount; i++) m.answers.push(record(rd));
    for (let i = 0; i < m.nscount; i++) m.authority.push(record(rd));
    for (let i = 0; i < m.arcount; i++) m.additional.push(record(rd));
  } catch (e) {
    if (!(e instanceof DnsReadError)) throw e;
    m.error = e.message;
  }
  // The extended rcode's high bits are in the OPT record's TTL.
  const opt = m.additional.find((r) => r.type === "OPT");
  if (opt && opt.ttl >>> 24) {
    m.rcode = ((opt.ttl >>> 24) << 4) | rcode;
    m.rcodeName = RCODES[m.rcode] ?? (m.rcode === 16 ? "BADVERS" : `RCODE${m.rcode}`);
  }
  return m;
}

/** One DNS exchange of a result: the server asked, and its answer or error. */
export interface DnsExchange {
  dst_addr?: string;
  /** Response time in ms. */
  rt?: number;
  size?: number;
  /** The rcode's name (NOERROR, NXDOMAIN, …) when the answer decoded. */
  rcode?: string;
  ancount?: number;
  answers: DnsRecord[];
  message?: DnsMessage;
  /** Timeout, socket or decode error, as text. */
  error?: string;
}

function errorText(v: unknown): string | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v === "string") return v;
  const o = obj(v);
  if (o) {
    return Object.entries(o)
      .map(([k, x]) => `${k}: ${typeof x === "string" ? x : JSON.stringify(x)}`)
      .join(", ");
  }
  return JSON.stringify(v);
}

/** Answers the probe firmware itself decoded (`answers[]` of {TYPE, NAME, RDATA/…}) when there is no abuf. */
function firmwareAnswers(v: unknown): DnsRecord[] {
  return arr(v).flatMap((a) => {
    const o = obj(a);
    if (!o) return [];
    const type = str(o.TYPE) ?? "";
    let data: string;
    if (Array.isArray(o.RDATA)) data = o.RDATA.map((x) => String(x)).join(" ");
    else if (o.RDATA !== undefined) data = String(o.RDATA);
    else if (o.MNAME !== undefined) data = `${String(o.MNAME)} ${String(o.RNAME ?? "")} ${String(o.SERIAL ?? "")}`.trim();
    else data = "";
    return [{ name: str(o.NAME) ?? "", type: /^\d+$/.test(type) ? (RR_TYPES[Number(type)] ?? `TYPE${type}`) : type, class: "IN", ttl: num(o.TTL) ?? 0, data }];
  });
}

function exchange(e: Record<string, unknown>, fallbackDst?: string): DnsExchange {
  const res = obj(e.result);
  const out: DnsExchange = { dst_addr: str(e.dst_addr) ?? fallbackDst, answers: [] };
  const err = errorText(e.error);
  if (!res) {
    out.error = err ?? "no answer";
    return out;
  }
  out.rt = num(res.rt);
  out.size = num(res.size);
  out.ancount = num(res.ANCOUNT);
  const abuf = str(res.abuf);
  if (abuf) {
    const bytes = base64Bytes(abuf);
    const m = bytes ? decodeDns(bytes) : undefined;
    if (m) {
      out.message = m;
      out.rcode = m.rcodeName;
      out.ancount = m.ancount;
      out.answers = m.answers;
      if (m.error) out.error = `answer decoded in part: ${m.error}`;
    } else out.error = "the answer (abuf) does not decode";
  } else {
    out.answers = firmwareAnswers(res.answers);
  }
  if (err) out.error = err;
  return out;
}

/**
 * The DNS exchanges of a result: one for a query to the target (`result`), one per
 * resolver when the probe used its own (`resultset[]`), or the error.
 */
export function parseDns(r: RawResult): DnsExchange[] {
  const set = arr(r.resultset);
  if (set.length) return set.map((e) => exchange(obj(e) ?? {}));
  return [exchange(r, str(r.dst_addr))];
}

// ---- HTTP ---------------------------------------------------------------------------

export interface HttpRow {
  dst_addr?: string;
  method?: string;
  /** HTTP status code. */
  res?: number;
  ver?: string;
  /** Total time, time to connect, time to first byte (ms). */
  rt?: number;
  ttc?: number;
  ttfb?: number;
  hsize?: number;
  bsize?: number;
  /** Response header lines (when header_bytes > 0). */
  header: string[];
  error?: string;
}

/** The HTTP exchanges of a result (`result[]`; old firmware's text forms become an error). */
export function parseHttp(r: RawResult): HttpRow[] {
  if (!Array.isArray(r.result)) {
    const msg = str(r.dnserr) ?? str(r.err) ?? str(r.result) ?? str(r.src_addr);
    return [{ header: [], error: msg ? `unreadable result: ${msg}` : "no result" }];
  }
  return r.result.map((e) => {
    const o = obj(e) ?? {};
    return {
      dst_addr: str(o.dst_addr) ?? str(o.addr),
      method: str(o.method) ?? str(o.mode),
      res: num(o.res),
      ver: str(o.ver),
      rt: num(o.rt),
      ttc: num(o.ttc),
      ttfb: num(o.ttfb),
      hsize: num(o.hsize),
      bsize: num(o.bsize),
      header: arr(o.header).map((h) => String(h)),
      error: str(o.err) ?? str(o.dnserr),
    };
  });
}

// ---- sslcert: a small X.509 reader --------------------------------------------------

export interface CertInfo {
  subject: string;
  issuer: string;
  /** Unix seconds. */
  notBefore?: number;
  notAfter?: number;
  /** Set when the certificate does not parse. */
  error?: string;
}

interface Tlv {
  tag: number;
  start: number;
  len: number;
  end: number;
}

function tlv(b: Uint8Array, at: number): Tlv {
  if (at + 2 > b.length) throw new Error("DER runs past the end");
  const tag = b[at];
  let len = b[at + 1];
  let start = at + 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    if (n === 0 || n > 4 || start + n > b.length) throw new Error("bad DER length");
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + b[start + i];
    start += n;
  }
  if (start + len > b.length) throw new Error("DER value runs past the end");
  return { tag, start, len, end: start + len };
}

function children(b: Uint8Array, t: Tlv): Tlv[] {
  const out: Tlv[] = [];
  for (let p = t.start; p < t.end; ) {
    const c = tlv(b, p);
    out.push(c);
    p = c.end;
  }
  return out;
}

const OID_NAMES: Record<string, string> = {
  "2.5.4.3": "CN",
  "2.5.4.6": "C",
  "2.5.4.7": "L",
  "2.5.4.8": "ST",
  "2.5.4.10": "O",
  "2.5.4.11": "OU",
  "1.2.840.113549.1.9.1": "emailAddress",
};

function oid(b: Uint8Array, t: Tlv): string {
  const parts: number[] = [];
  let v = 0;
  for (let i = t.start; i < t.end; i++) {
    v = v * 128 + (b[i] & 0x7f);
    if (!(b[i] & 0x80)) {
      if (parts.length === 0) parts.push(v < 80 ? Math.floor(v / 40) : 2, v < 80 ? v % 40 : v - 80);
      else parts.push(v);
      v = 0;
    }
  }
  return parts.join(".");
}

function derString(b: Uint8Array, t: Tlv): string {
  const bytes = b.subarray(t.start, t.end);
  if (t.tag === 0x1e) {
    let s = "";
    for (let i = 0; i + 1 < bytes.length; i += 2) s += String.fromCharCode((bytes[i] << 8) | bytes[i + 1]);
    return s;
  }
  if (t.tag === 0x0c) return new TextDecoder().decode(bytes);
  let s = "";
  for (const c of bytes) s += String.fromCharCode(c);
  return s;
}

/** An X.501 name as `CN=…, O=…, C=…` (most specific first, as browsers show it). */
function dn(b: Uint8Array, t: Tlv): string {
  const parts: string[] = [];
  for (const set of children(b, t)) {
    for (const atv of children(b, set)) {
      const [k, v] = children(b, atv);
      if (!k || !v) continue;
      const o = oid(b, k);
      parts.push(`${OID_NAMES[o] ?? o}=${derString(b, v)}`);
    }
  }
  return parts.reverse().join(", ");
}

function derTime(b: Uint8Array, t: Tlv): number | undefined {
  const s = derString(b, t);
  const m = t.tag === 0x17 ? /^(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})?Z$/.exec(s) : /^(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})?Z$/.exec(s);
  if (!m) return undefined;
  let year = Number(m[1]);
  if (t.tag === 0x17) year += year < 50 ? 2000 : 1900;
  return Date.UTC(year, Number(m[2]) - 1, Number(m[3]), Number(m[4]), Number(m[5]), Number(m[6] ?? 0)) / 1000;
}

/** Subject, issuer and validity of a PEM certificate (old firmware escapes newlines as `\n`). */
export function parseCertificate(pem: string): CertInfo {
  const body = pem
    .replace(/\\n/g, "\n")
    .replace(/-----(BEGIN|END) CERTIFICATE-----/g, "")
    .replace(/\s+/g, "");
  const b = base64Bytes(body);
  if (!b || b.length === 0) return { subject: "", issuer: "", error: "not a PEM certificate" };
  try {
    const cert = tlv(b, 0);
    const tbs = children(b, cert)[0];
    let f = children(b, tbs);
    if (f[0]?.tag === 0xa0) f = f.slice(1); // explicit version
    // serialNumber, signature, issuer, validity, subject
    const [, , issuer, validity, subject] = f;
    if (!issuer || !validity || !subject) throw new Error("the certificate lacks issuer, validity or subject");
    const [nb, na] = children(b, validity);
    return { subject: dn(b, subject), issuer: dn(b, issuer), notBefore: nb && derTime(b, nb), notAfter: na && derTime(b, na) };
  } catch (e) {
    return { subject: "", issuer: "", error: `the certificate does not parse: ${(e as Error).message}` };
  }
}

export interface SslcertSummary {
  ver?: string;
  method?: string;
  rt?: number;
  ttc?: number;
  chain: CertInfo[];
  /** Whether the leaf was valid at the time of the result (undefined without a chain). */
  valid?: boolean;
  /** TLS alert (`alert.decription`, RIPE Atlas's spelling) or error. */
  error?: string;
}

export function parseSslcert(r: RawResult): SslcertSummary {
  const chain = arr(r.cert).map((c) => (typeof c === "string" ? parseCertificate(c) : { subject: "", issuer: "", error: "not a PEM certificate" }));
  const t = num(r.timestamp);
  const leaf = chain[0];
  const valid = leaf && !leaf.error && t !== undefined && leaf.notBefore !== undefined && leaf.notAfter !== undefined ? t >= leaf.notBefore && t <= leaf.notAfter : undefined;
  const alert = obj(r.alert);
  const error = alert ? `TLS alert ${String(alert.decription ?? alert.description ?? "?")} (level ${String(alert.level ?? "?")})` : (str(r.error) ?? str(r.dnserr) ?? str(r.err));
  return { ver: str(r.ver), method: str(r.method), rt: num(r.rt), ttc: num(r.ttc), chain, valid, error };
}

// ---- NTP ----------------------------------------------------------------------------

export interface NtpSummary {
  stratum?: number;
  refId?: string;
  /** Per packet, in seconds. */
  offsets: number[];
  rtts: number[];
  offsetAvg?: number;
  rttAvg?: number;
  lost: number;
  error?: string;
}

export function parseNtp(r: RawResult): NtpSummary {
  const offsets: number[] = [];
  const rtts: number[] = [];
  let lost = 0;
  const errs: string[] = [];
  for (const e of arr(r.result)) {
    const o = obj(e);
    if (!o) continue;
    const off = num(o.offset);
    const rtt = num(o.rtt);
    if (o.x === "*" || off === undefined) {
      lost++;
      if (typeof o.err === "string") errs.push(o.err);
      continue;
    }
    offsets.push(off);
    if (rtt !== undefined) rtts.push(rtt);
  }
  const error = str(r.error) ?? str(r.dnserr) ?? (errs.length ? errs[0] : undefined);
  return { stratum: num(r.stratum), refId: str(r["ref-id"]), offsets, rtts, offsetAvg: mean(offsets), rttAvg: mean(rtts), lost, error };
}

// ---- one line per result -------------------------------------------------------------

/** The main number of a result, for tables and live rows: ms (ping avg, dns rt, …). */
export function headline(r: RawResult): { value?: number; text: string } {
  switch (r.type) {
    case "ping": {
      const p = parsePing(r);
      return { value: p.avg, text: p.errors[0] ?? `${p.rcvd}/${p.sent} received` };
    }
    case "traceroute":
    case "mtr": {
      const h = parseHops(r);
      const last = h[h.length - 1];
      return { value: last?.avg, text: `${h.length} hops${reached(r, h) ? ", reached" : ""}` };
    }
    case "dns": {
      const d = parseDns(r)[0];
      return { value: d?.rt, text: d?.error ?? `${d?.rcode ?? "?"}, ${d?.answers.length ?? 0} answers` };
    }
    case "http": {
      const h = parseHttp(r)[0];
      return { value: h?.rt, text: h?.error ?? `HTTP ${h?.res ?? "?"}` };
    }
    case "sslcert": {
      const s = parseSslcert(r);
      return { value: s.rt, text: s.error ?? (s.valid === false ? "certificate not valid" : `${s.chain.length} certificates`) };
    }
    case "ntp": {
      const n = parseNtp(r);
      return { value: n.offsetAvg !== undefined ? n.offsetAvg * 1000 : undefined, text: n.error ?? `stratum ${n.stratum ?? "?"}` };
    }
    default:
      return { text: "" };
  }
}
