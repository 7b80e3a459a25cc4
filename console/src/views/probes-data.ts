// The probe map's data, pure: the columnar `/api/vantage/v1/probes/map` answer read into
// rows, the filters of the query string, filtering and the count per country. Filtering
// runs in memory on every keystroke, so it is one pass with precomputed lower-case tags.

/** One probe as the map knows it. */
export interface MapProbe {
  id: number;
  lat: number | null;
  lon: number | null;
  /** RIPE probe status id: 0 never connected, 1 connected, 2 disconnected, 3 abandoned. */
  status: number;
  anchor: boolean;
  asn: number | null;
  country: string;
  /** User and system tag slugs. */
  tags: string[];
}

/** The map endpoint's answer: columns named once, one array per probe. */
export interface MapAnswer {
  count: number;
  columns: string[];
  rows: unknown[][];
}

export const STATUS_NAMES: Record<number, string> = {
  0: "Never connected",
  1: "Connected",
  2: "Disconnected",
  3: "Abandoned",
};

/** The map class of a status (a shape and colour in `CLASSES`). */
export function statusClass(status: number, anchor: boolean): string {
  if (anchor) return status === 1 ? "anchor" : "anchor-off";
  switch (status) {
    case 1:
      return "connected";
    case 2:
      return "disconnected";
    case 3:
      return "abandoned";
    default:
      return "never";
  }
}

const num = (v: unknown): number | null => (typeof v === "number" && Number.isFinite(v) ? v : null);

/** Read the columnar answer by column name (the order may change; unknown columns are ignored). */
export function readMap(answer: MapAnswer): MapProbe[] {
  const at = (name: string) => answer.columns.indexOf(name);
  const [iId, iLat, iLon, iStatus, iAnchor, iAsn, iCc, iTags] = [
    at("id"),
    at("lat"),
    at("lon"),
    at("status"),
    at("is_anchor"),
    at("asn_v4"),
    at("country_code"),
    at("tags"),
  ];
  const out: MapProbe[] = [];
  for (const r of answer.rows) {
    const id = num(r[iId]);
    if (id === null) continue;
    const tags = iTags >= 0 && Array.isArray(r[iTags]) ? (r[iTags] as unknown[]).filter((t): t is string => typeof t === "string").map((t) => t.toLowerCase()) : [];
    out.push({
      id,
      lat: iLat >= 0 ? num(r[iLat]) : null,
      lon: iLon >= 0 ? num(r[iLon]) : null,
      status: (iStatus >= 0 ? num(r[iStatus]) : null) ?? 0,
      anchor: iAnchor >= 0 && r[iAnchor] === true,
      asn: iAsn >= 0 ? num(r[iAsn]) : null,
      country: iCc >= 0 && typeof r[iCc] === "string" ? (r[iCc] as string).toUpperCase() : "",
      tags,
    });
  }
  return out;
}

/** The filters of the probe map, as the query string holds them. */
export interface ProbeFilters {
  /** Two-letter country code, upper case; "" = any. */
  country: string;
  /** AS number; null = any. */
  asn: number | null;
  /** Tag slugs that must all be present (lower case). */
  tags: string[];
  /** Status id; null = any. */
  status: number | null;
  /** true: anchors only; false: probes that are not anchors; null: both. */
  anchor: boolean | null;
}

/** Parse `AS64500`, `as64500` or `64500`; null if it is not an AS number. */
export function parseAsn(text: string): number | null {
  const t = text.trim().replace(/^as/i, "");
  if (!/^\d{1,10}$/.test(t)) return null;
  const n = Number(t);
  return n <= 4294967295 ? n : null;
}

/** The filters in a query string (`country`, `asn`, `tag`, `status`, `anchor`); bad values are ignored. */
export function readFilters(q: URLSearchParams): ProbeFilters {
  const cc = (q.get("country") ?? "").trim().toUpperCase();
  const status = q.get("status");
  const anchor = q.get("anchor");
  return {
    country: /^[A-Z]{2}$/.test(cc) ? cc : "",
    asn: parseAsn(q.get("asn") ?? ""),
    tags: splitTags(q.get("tag") ?? ""),
    status: status !== null && /^[0-3]$/.test(status) ? Number(status) : null,
    anchor: anchor === "1" || anchor === "true" ? true : anchor === "0" || anchor === "false" ? false : null,
  };
}

/** Comma- or space-separated tag slugs, lower case, without empties. */
export function splitTags(text: string): string[] {
  return text
    .split(/[\s,]+/)
    .map((t) => t.trim().toLowerCase())
    .filter((t) => t !== "");
}

/** The probes that pass every filter. */
export function filterProbes(probes: MapProbe[], f: ProbeFilters): MapProbe[] {
  const { country, asn, tags, status, anchor } = f;
  if (!country && asn === null && tags.length === 0 && status === null && anchor === null) return probes;
  return probes.filter(
    (p) =>
      (!country || p.country === country) &&
      (asn === null || p.asn === asn) &&
      (status === null || p.status === status) &&
      (anchor === null || p.anchor === anchor) &&
      tags.every((t) => p.tags.includes(t)),
  );
}

/** One row of the count per country. */
export interface CountryCount {
  country: string;
  total: number;
  connected: number;
  disconnected: number;
  anchors: number;
}

/** Count probes per country (most probes first, then by code). Probes without a country count under "". */
export function countByCountry(probes: MapProbe[]): CountryCount[] {
  const m = new Map<string, CountryCount>();
  for (const p of probes) {
    let c = m.get(p.country);
    if (!c) {
      c = { country: p.country, total: 0, connected: 0, disconnected: 0, anchors: 0 };
      m.set(p.country, c);
    }
    c.total++;
    if (p.status === 1) c.connected++;
    if (p.status === 2) c.disconnected++;
    if (p.anchor) c.anchors++;
  }
  return [...m.values()].sort((a, b) => b.total - a.total || a.country.localeCompare(b.country));
}

/** Every tag in use with how many probes carry it (most used first). */
export function tagCounts(probes: MapProbe[]): [string, number][] {
  const m = new Map<string, number>();
  for (const p of probes) for (const t of p.tags) m.set(t, (m.get(t) ?? 0) + 1);
  return [...m.entries()].sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]));
}
