// The censorship view's pure parts: counts as the aggregation answers them (numbers or
// numeric strings), its days as Unix seconds, and a day's count split into parts that
// add up to it for the stacked bars.

/** One aggregation row (counts may come as numbers or numeric strings). */
export interface AggRow {
  probe_cc?: string;
  measurement_start_day?: string;
  measurement_count: number | string;
  anomaly_count: number | string;
  confirmed_count: number | string;
  failure_count: number | string;
  ok_count: number | string;
}

/** A count from a number or a numeric string; 0 otherwise. */
export const n = (v: unknown): number => {
  const x = typeof v === "string" ? Number(v) : v;
  return typeof x === "number" && Number.isFinite(x) ? x : 0;
};

/** A day of the aggregation (`2024-05-01` or `2024-05-01T00:00:00Z`) as Unix seconds. */
export function dayUnix(day: string): number {
  const t = Date.parse(day.length === 10 ? `${day}T00:00:00Z` : day);
  return Number.isFinite(t) ? Math.floor(t / 1000) : NaN;
}

/**
 * The parts of a day's count that add up to it, for stacking: ok, anomaly, confirmed,
 * and failures not already counted as confirmed (the API counts a confirmed failure in
 * both `confirmed_count` and `failure_count`).
 */
export function stackOf(r: AggRow): { key: string; label: string; n: number }[] {
  const m = n(r.measurement_count);
  const ok = n(r.ok_count);
  const anomaly = n(r.anomaly_count);
  const confirmed = n(r.confirmed_count);
  return [
    { key: "ok_count", label: "OK", n: ok },
    { key: "anomaly_count", label: "Anomalies", n: anomaly },
    { key: "confirmed_count", label: "Confirmed", n: confirmed },
    { key: "failure_count", label: "Failures (not confirmed)", n: Math.max(0, m - ok - anomaly - confirmed) },
  ];
}

