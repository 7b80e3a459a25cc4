// What the measurement views share: the API shapes they read (RIPE Atlas measurement
// JSON with its `vantage` object, the summary and per-probe aggregates), the type and
// status names, and small cells used by every per-type renderer.
import type { ComponentChildren } from "preact";
import { fmtNum } from "../../chart";
import type { RawResult } from "../../ripe";
import { Link } from "../../ui";

/** The measurement types vantage runs (the six RIPE Atlas types and mtr). */
export const TYPES = ["ping", "traceroute", "dns", "http", "sslcert", "ntp", "mtr"] as const;
export type MsmType = (typeof TYPES)[number];

/** RIPE Atlas measurement status ids and names. */
export const STATUSES: [number, string][] = [
  [0, "Specified"],
  [1, "Scheduled"],
  [2, "Ongoing"],
  [4, "Stopped"],
  [5, "Forced to stop"],
  [6, "No suitable probes"],
  [7, "Failed"],
  [8, "Denied"],
];

export interface Condition {
  type: string;
  status: string;
  reason?: string;
  message?: string;
  lastTransitionTime?: string;
}

/** `GET /api/v2/measurements/{id}/` (the fields the views read; the rest are the definition's). */
export interface Measurement {
  id: number;
  type: string;
  af?: number | null;
  target?: string;
  target_ip?: string | null;
  description?: string;
  interval?: number | null;
  spread?: number | null;
  is_oneoff?: boolean;
  resolve_on_probe?: boolean;
  creation_time?: number | null;
  start_time?: number | null;
  stop_time?: number | null;
  status?: { id: number; name: string; when?: number | null };
  participant_count?: number | null;
  probes_requested?: number | null;
  probes?: { id: number }[];
  participation_requests?: { type?: string; value?: string; requested?: number; action?: string }[];
  results_count?: number | null;
  last_result?: number | null;
  vantage?: { namespace?: string; name?: string; state?: string; conditions?: Condition[]; probes_reported?: number };
  [field: string]: unknown;
}

export interface MeasurementList {
  count: number;
  next: string | null;
  previous: string | null;
  results: Measurement[];
}

/** One time bucket of the summary: `t`, `n` and the type's fields. */
export type Bucket = { t: number; n: number } & Record<string, number | null>;

/** `GET /api/vantage/v1/measurements/{id}/summary`. */
export interface Summary {
  msm_id: number;
  type: string;
  results: number;
  probes: number;
  first: number | null;
  last: number | null;
  bucket_seconds: number;
  series: Bucket[];
  breakdown: {
    rcodes?: { rcode: string; n: number }[];
    status?: { status: number | string; n: number }[];
    valid?: number;
    invalid?: number;
  };
}

/** `GET /api/vantage/v1/measurements/{id}/probes`. */
export interface ProbeAggregates {
  rows: ({ prb_id: number; n: number; last: number } & Record<string, number | null>)[];
}

/** What a per-type renderer gets. */
export interface ResultViewProps {
  msm: Measurement;
  summary?: Summary;
  /** Newest result per probe (latest, then live results), newest first. */
  latest: RawResult[];
  aggregates?: ProbeAggregates;
  /** The probe the charts are narrowed to (`?prb_id=`), if any. */
  prb?: number;
  /** Ids live results arrived for recently (rows highlighted). */
  fresh: Set<string>;
}

/** The series of a summary field, as chart values. */
export function field(summary: Summary | undefined, name: string, scale = 1): (number | null)[] {
  return (summary?.series ?? []).map((b) => {
    const v = b[name];
    return typeof v === "number" && Number.isFinite(v) ? v * scale : null;
  });
}

export function times(summary: Summary | undefined): number[] {
  return (summary?.series ?? []).map((b) => b.t);
}

/** A cell holding a number, with its raw value in `data-value` (tests compare it with the API). */
export function NumCell(props: { v: number | null | undefined; digits?: number; testid?: string }) {
  return (
    <span data-testid={props.testid} data-value={props.v ?? ""}>
      {fmtNum(props.v, props.digits ?? 3)}
    </span>
  );
}

/** A link to a probe's page. */
export function ProbeLink(props: { id: number }) {
  return <Link href={`/probes/${props.id}`}>{String(props.id)}</Link>;
}

/** A stable key for a result (vantage adds `result_id`; otherwise probe and time). */
export function resultKey(r: RawResult): string {
  return typeof r.result_id === "string" ? r.result_id : `${String(r.prb_id)}-${String(r.timestamp)}`;
}

/** Lines of text as separate block elements (each escaped as text). */
export function Lines(props: { lines: string[]; empty?: string }): ComponentChildren {
  if (props.lines.length === 0) return <span class="muted">{props.empty ?? "—"}</span>;
  return (
    <ul class="lines">
      {props.lines.map((l) => (
        <li>{l}</li>
      ))}
    </ul>
  );
}

/** A `<select>` of probes to narrow a chart or pick a path: "" means all. */
export function ProbePicker(props: { id: string; label: string; probes: number[]; value?: number; onChange: (v: number | undefined) => void; all?: string }) {
  return (
    <div class="field inline">
      <label for={props.id}>{props.label}</label>
      <select
        id={props.id}
        value={props.value === undefined ? "" : String(props.value)}
        onChange={(e) => {
          const v = (e.currentTarget as HTMLSelectElement).value;
          props.onChange(v === "" ? undefined : Number(v));
        }}
      >
        {props.all !== undefined ? <option value="">{props.all}</option> : null}
        {props.probes.map((p) => (
          <option value={String(p)}>Probe {p}</option>
        ))}
      </select>
    </div>
  );
}
