// The create form's model, pure (unit-tested): the per-type fields with RIPE Atlas's
// defaults and vantage's ranges, the form state, the RIPE Atlas creation body built from
// it, and which control an API error's JSON pointer names.
import type { MsmType } from "./results/common";

/** Where the API key is kept when the user asks (this tab only). */
export const KEY_STORAGE = "vantage.apiKey";

type Kind = "number" | "text" | "select" | "check";

interface FieldSpec {
  name: string;
  label: string;
  kind: Kind;
  /** The default shown (RIPE Atlas's, or vantage's where RIPE Atlas has none). */
  def: string | boolean;
  options?: string[];
  min?: number;
  max?: number;
  hint?: string;
}

const TRACE_FIELDS = (mtr: boolean): FieldSpec[] => [
  { name: "protocol", label: "Protocol", kind: "select", def: "ICMP", options: ["ICMP", "UDP", "TCP"] },
  { name: "packets", label: mtr ? "Rounds" : "Packets per hop", kind: "number", def: "3", min: 1, max: 16 },
  { name: "paris", label: "Paris id (0: classic)", kind: "number", def: "16", min: 0, max: 64 },
  { name: "first_hop", label: "First hop", kind: "number", def: "1", min: 1, max: 255 },
  { name: "max_hops", label: "Max hops", kind: "number", def: mtr ? "30" : "32", min: 1, max: 255 },
  { name: "size", label: "Packet size (bytes)", kind: "number", def: "48", min: 0, max: 2048 },
  { name: "port", label: "Destination port (UDP/TCP)", kind: "number", def: "", min: 1, max: 65535, hint: "default 33434 (UDP) or 80 (TCP)" },
  { name: "response_timeout", label: "Reply timeout (ms)", kind: "number", def: mtr ? "1000" : "4000", min: 10, max: 60000 },
  { name: "dont_fragment", label: "Don't fragment", kind: "check", def: false },
];

/** The per-type fields, defaults and ranges (core/src/definition/kinds.rs). */
export const TYPE_FIELDS: Record<MsmType, FieldSpec[]> = {
  ping: [
    { name: "packets", label: "Packets", kind: "number", def: "3", min: 1, max: 16 },
    { name: "size", label: "Packet size (bytes)", kind: "number", def: "48", min: 0, max: 2048 },
    { name: "packet_interval", label: "Time between packets (ms)", kind: "number", def: "1000", min: 2, max: 300000 },
  ],
  traceroute: TRACE_FIELDS(false),
  mtr: TRACE_FIELDS(true),
  dns: [
    { name: "query_argument", label: "Query name", kind: "text", def: "", hint: "e.g. ripe.net" },
    { name: "query_class", label: "Query class", kind: "select", def: "IN", options: ["IN", "CHAOS"] },
    {
      name: "query_type",
      label: "Query type",
      kind: "select",
      def: "A",
      options: ["A", "AAAA", "ANY", "CAA", "CDNSKEY", "CDS", "CNAME", "DNSKEY", "DS", "HINFO", "HTTPS", "MX", "NAPTR", "NS", "NSEC", "NSEC3", "NSEC3PARAM", "PTR", "RRSIG", "SOA", "SPF", "SRV", "SSHFP", "SVCB", "TLSA", "TXT"],
    },
    { name: "use_probe_resolver", label: "Use the probe's resolver", kind: "check", def: true, hint: "then the target is not needed" },
    { name: "protocol", label: "Protocol", kind: "select", def: "UDP", options: ["UDP", "TCP"] },
    { name: "set_rd_bit", label: "Recursion desired (RD)", kind: "check", def: true },
    { name: "set_do_bit", label: "DNSSEC OK (DO)", kind: "check", def: false },
    { name: "set_cd_bit", label: "Checking disabled (CD)", kind: "check", def: false },
    { name: "set_nsid_bit", label: "Ask for NSID", kind: "check", def: false },
    { name: "udp_payload_size", label: "EDNS0 UDP payload size", kind: "number", def: "512", min: 512, max: 4096 },
    { name: "retry", label: "Retries", kind: "number", def: "0", min: 0, max: 10 },
    { name: "timeout", label: "Timeout (ms)", kind: "number", def: "5000", min: 100, max: 60000 },
  ],
  http: [
    { name: "method", label: "Method", kind: "select", def: "GET", options: ["GET", "HEAD", "POST"] },
    { name: "path", label: "Path", kind: "text", def: "/" },
    { name: "query_string", label: "Query string", kind: "text", def: "", hint: "without ?" },
    { name: "https", label: "HTTPS", kind: "check", def: false },
    { name: "port", label: "Port", kind: "number", def: "", min: 1, max: 65535, hint: "default 80, or 443 with HTTPS" },
    { name: "version", label: "HTTP version", kind: "select", def: "1.1", options: ["1.1", "1.0"] },
    { name: "header_bytes", label: "Header bytes to report", kind: "number", def: "0", min: 0, max: 2048 },
    { name: "timing_verbosity", label: "Timing detail (0-2)", kind: "number", def: "1", min: 0, max: 2, hint: "1: time to connect and first byte" },
  ],
  sslcert: [
    { name: "port", label: "Port", kind: "number", def: "443", min: 1, max: 65535 },
    { name: "hostname", label: "Server name (SNI)", kind: "text", def: "", hint: "default: the target, if a name" },
  ],
  ntp: [
    { name: "packets", label: "Packets", kind: "number", def: "3", min: 1, max: 16 },
    { name: "timeout", label: "Timeout (ms)", kind: "number", def: "4000", min: 100, max: 60000 },
  ],
};

/** RIPE Atlas's default interval per type (seconds). */
export const DEFAULT_INTERVAL: Record<MsmType, number> = { ping: 240, traceroute: 900, mtr: 900, dns: 240, http: 1800, sslcert: 900, ntp: 1800 };

export const SOURCE_TYPES = ["area", "country", "asn", "prefix", "probes", "msm"] as const;
export const AREAS = ["WW", "West", "North-Central", "South-Central", "North-East", "South-East"];

export interface SourceForm {
  type: (typeof SOURCE_TYPES)[number];
  value: string;
  requested: string;
  include: string;
  exclude: string;
}

export interface FormState {
  type: MsmType;
  af: "4" | "6";
  target: string;
  description: string;
  resolve_on_probe: boolean;
  oneoff: boolean;
  interval: string;
  spread: string;
  start: string;
  stop: string;
  options: Record<string, string | boolean>;
  sources: SourceForm[];
}

export function defaults(type: MsmType): Record<string, string | boolean> {
  return Object.fromEntries(TYPE_FIELDS[type].map((f) => [f.name, f.def]));
}

export function initialForm(type: MsmType = "ping"): FormState {
  return {
    type,
    af: "4",
    target: "",
    description: "",
    resolve_on_probe: false,
    oneoff: true,
    interval: String(DEFAULT_INTERVAL[type]),
    spread: "",
    start: "",
    stop: "",
    options: defaults(type),
    sources: [{ type: "area", value: "WW", requested: "10", include: "", exclude: "" }],
  };
}

const tags = (s: string) =>
  s
    .split(",")
    .map((t) => t.trim())
    .filter(Boolean);

/** A number field: the number, or the text as typed (so the API names what is wrong). */
function numberOrText(s: string): number | string {
  const t = s.trim();
  return /^-?\d+$/.test(t) ? Number(t) : t;
}

/** The RIPE Atlas creation body of the form (pure). Empty optional fields are left out. */
export function requestBody(f: FormState): Record<string, unknown> {
  const def: Record<string, unknown> = { type: f.type, af: Number(f.af) };
  const usesResolver = f.type === "dns" && f.options.use_probe_resolver === true;
  if (f.target.trim() && !usesResolver) def.target = f.target.trim();
  if (f.description.trim()) def.description = f.description.trim();
  if (f.resolve_on_probe) def.resolve_on_probe = true;
  if (!f.oneoff) {
    if (f.interval.trim()) def.interval = numberOrText(f.interval);
    if (f.spread.trim()) def.spread = numberOrText(f.spread);
  }
  for (const spec of TYPE_FIELDS[f.type]) {
    const v = f.options[spec.name];
    if (spec.kind === "check") def[spec.name] = v === true;
    else if (typeof v === "string" && v.trim() !== "") def[spec.name] = spec.kind === "number" ? numberOrText(v) : v.trim();
  }
  const body: Record<string, unknown> = {
    definitions: [def],
    probes: f.sources.map((s) => {
      const src: Record<string, unknown> = { type: s.type, value: s.value.trim(), requested: numberOrText(s.requested) };
      const include = tags(s.include);
      const exclude = tags(s.exclude);
      if (include.length || exclude.length) src.tags = { include, exclude };
      return src;
    }),
    is_oneoff: f.oneoff,
  };
  // datetime-local values are taken as UTC (the label says so).
  if (f.start) body.start_time = `${f.start.length === 16 ? `${f.start}:00` : f.start}Z`;
  if (f.stop) body.stop_time = `${f.stop.length === 16 ? `${f.stop}:00` : f.stop}Z`;
  return body;
}

/**
 * The form control an API error's JSON pointer names: `def-<field>` for a definition
 * field, `src-<i>-<field>` (or `src-<i>`) for a probe source, `start`/`stop`; undefined
 * for a pointer the form does not know (shown at the top of the form).
 */
export function controlOf(pointer: string | undefined): string | undefined {
  if (!pointer) return undefined;
  let m = /^\/definitions\/\d+\/([a-z_]+)$/.exec(pointer);
  if (m) return `def-${m[1]}`;
  m = /^\/probes\/(\d+)(?:\/([a-z_]+))?$/.exec(pointer);
  if (m) return m[2] && ["type", "value", "requested", "tags"].includes(m[2]) ? `src-${m[1]}-${m[2] === "tags" ? "include" : m[2]}` : `src-${m[1]}-value`;
  if (pointer === "/start_time") return "start";
  if (pointer === "/stop_time") return "stop";
  if (pointer === "/is_oneoff") return "oneoff";
  return undefined;
}

