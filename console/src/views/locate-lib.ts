// The locate view's pure parts: address checks, the batch's address list, the CSV it
// downloads (quoted, and safe to open in a spreadsheet), a bounded-concurrency runner,
// and the message of an API error in either error shape the locate path can answer with.

const V4 = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;

/** Whether `s` is an IPv4 or IPv6 address (no prefix length, no zone). */
export function isIp(s: string): boolean {
  if (V4.test(s)) return true;
  if (!s.includes(":") || !/^[0-9a-fA-F:.]+$/.test(s)) return false;
  try {
    // The URL parser implements the IPv6 address grammar (and refuses what it is not).
    new URL(`http://[${s}]/`);
    return true;
  } catch {
    return false;
  }
}

/** The addresses of a pasted list (one per line, or separated by commas, spaces or semicolons), in order, without repeats; the entries that are not addresses apart. */
export function parseAddresses(text: string): { valid: string[]; invalid: string[] } {
  const valid: string[] = [];
  const invalid: string[] = [];
  const seen = new Set<string>();
  for (const raw of text.split(/[\s,;]+/)) {
    const s = raw.trim();
    if (!s || seen.has(s)) continue;
    seen.add(s);
    (isIp(s) ? valid : invalid).push(s);
  }
  return { valid, invalid };
}

/**
 * One CSV field: quoted, quotes doubled, and text starting with = + - @ (or tab/CR)
 * prefixed with ' so a spreadsheet does not run it as a formula. Numbers (coordinates,
 * scores: ours, not text from elsewhere) stay numbers, so a western longitude keeps its sign.
 */
export function csvField(v: string | number | boolean | null | undefined): string {
  let s = v === null || v === undefined ? "" : String(v);
  if (typeof v === "string" && /^[=+\-@\t\r]/.test(s)) s = `'${s}`;
  return `"${s.replace(/"/g, '""')}"`;
}

/** A CSV document (CRLF line ends, RFC 4180) of a header and rows. */
export function toCsv(header: string[], rows: (string | number | boolean | null | undefined)[][]): string {
  return [header, ...rows].map((r) => r.map(csvField).join(",")).join("\r\n") + "\r\n";
}

/** Run `task` over `items` with at most `limit` at once; `onDone` after each. Results keep the items' order. */
export async function runPool<T, R>(items: T[], limit: number, task: (item: T, i: number) => Promise<R>, onDone?: (i: number, r: R) => void): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await task(items[i], i);
      onDone?.(i, out[i]);
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, worker));
  return out;
}

/**
 * The message of an error answer: the engines' `{"error": reason, "message": text}`, the
 * API's `{"error": {"detail": text}}` or a plain text body; `HTTP <status>` otherwise.
 */
export function apiMessage(status: number, body: unknown): string {
  if (body && typeof body === "object") {
    const b = body as { error?: unknown; message?: unknown; detail?: unknown };
    if (typeof b.message === "string" && b.message) return b.message;
    if (b.error && typeof b.error === "object") {
      const e = b.error as { detail?: unknown; title?: unknown; message?: unknown };
      for (const v of [e.detail, e.message, e.title]) if (typeof v === "string" && v) return v;
    }
    if (typeof b.detail === "string" && b.detail) return b.detail;
    if (typeof b.error === "string" && b.error) return b.error;
  }
  if (typeof body === "string" && body.trim()) return body.trim().slice(0, 300);
  return `HTTP ${status}`;
}

/** What the helpers below read of a location (the API's; null names at country scope). */
export interface Named {
  id: number | null;
  cityName: string | null;
  stateAnsiCode?: string | null;
  countryCodeAlpha2: string;
  scope?: "city" | "country";
}

const countryOnly = (l: Named): boolean => l.scope === "country" || l.id === null || l.cityName === null;

/** A location's key among an answer's: its city, or its country at country scope (a country appears once). */
export const locationKey = (l: Named): string => (countryOnly(l) ? `cc-${l.countryCodeAlpha2}` : `c${l.id}`);

/** The city a location names; at country scope, that only the country is known. */
export const cityLabel = (l: Named): string => (countryOnly(l) ? `(somewhere in ${l.countryCodeAlpha2})` : (l.cityName ?? ""));

/** "City, region, country", or "NL (country only)" at country scope. */
export const place = (l: Named): string =>
  countryOnly(l) ? `${l.countryCodeAlpha2} (country only)` : [l.cityName, l.stateAnsiCode, l.countryCodeAlpha2].filter((x) => x).join(", ");
