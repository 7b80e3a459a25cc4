// The measurement list (`/measurements`): RIPE Atlas's list with its filters (type,
// status, target, owner namespace, sort) and pages, all in the query string so a
// filtered page is a link.
import { useEffect, useState } from "preact/hooks";
import { useApi } from "../api";
import type { Route } from "../router";
import { setQuery } from "../router";
import { ErrorBox, Field, Link, Loading, Table, fmtTime, type Column } from "../ui";
import { STATUSES, TYPES, type Measurement, type MeasurementList } from "./results/common";
import "./measurements.css";

/** The query parameters the list passes to the API (and keeps in its URL). */
export const LIST_PARAMS = ["type", "status", "target__icontains", "namespace", "sort", "page", "page_size"] as const;

/** The API path of a list query (pure: only known, non-empty parameters). */
export function listPath(query: URLSearchParams): string {
  const q = new URLSearchParams();
  for (const k of LIST_PARAMS) {
    const v = query.get(k)?.trim();
    if (v) q.set(k, v);
  }
  if (!q.has("sort")) q.set("sort", "-id");
  if (!q.has("page_size")) q.set("page_size", "50");
  return `/api/v2/measurements/?${q.toString()}`;
}

/** The console URL of the same filters on another page. */
function pageHref(query: URLSearchParams, page: number): string {
  const q = new URLSearchParams(query);
  if (page <= 1) q.delete("page");
  else q.set("page", String(page));
  const s = q.toString();
  return `/measurements${s ? `?${s}` : ""}`;
}

function interval(m: Measurement): string {
  if (m.is_oneoff) return "one-off";
  return typeof m.interval === "number" ? `every ${m.interval} s` : "—";
}

const COLUMNS: Column<Measurement>[] = [
  {
    key: "id",
    label: "Id",
    numeric: true,
    sort: (m) => m.id,
    render: (m) => (
      <Link href={`/measurements/${m.id}`} data-testid="msm-link">
        {String(m.id)}
      </Link>
    ),
  },
  { key: "type", label: "Type", sort: (m) => m.type, render: (m) => m.type },
  { key: "target", label: "Target", sort: (m) => m.target ?? "", render: (m) => m.target || (typeof m.query_argument === "string" ? m.query_argument : "") },
  { key: "description", label: "Description", render: (m) => m.description ?? "" },
  { key: "status", label: "Status", sort: (m) => m.status?.id ?? -1, render: (m) => m.status?.name ?? "—" },
  { key: "ns", label: "Namespace", sort: (m) => m.vantage?.namespace ?? "", render: (m) => m.vantage?.namespace ?? "—" },
  {
    key: "probes",
    label: "Probes",
    numeric: true,
    sort: (m) => m.participant_count ?? 0,
    render: (m) => `${m.participant_count ?? 0}${m.probes_requested ? ` / ${m.probes_requested}` : ""}`,
  },
  { key: "results", label: "Results", numeric: true, sort: (m) => m.results_count ?? 0, render: (m) => String(m.results_count ?? 0) },
  { key: "start", label: "Start", sort: (m) => m.start_time ?? 0, render: (m) => fmtTime(m.start_time) },
  { key: "stop", label: "Stop", sort: (m) => m.stop_time ?? Infinity, render: (m) => fmtTime(m.stop_time) },
  { key: "interval", label: "Interval", render: interval },
];

export function MeasurementsView(props: { route: Route }) {
  const query = props.route.query;
  const path = listPath(query);
  const list = useApi<MeasurementList>(path);
  const page = Math.max(1, Number(query.get("page") ?? "1") || 1);
  const pageSize = Number(query.get("page_size") ?? "50") || 50;
  // Text filters apply on submit; selects apply at once.
  const [target, setTarget] = useState(query.get("target__icontains") ?? "");
  const [ns, setNs] = useState(query.get("namespace") ?? "");
  useEffect(() => {
    setTarget(query.get("target__icontains") ?? "");
    setNs(query.get("namespace") ?? "");
  }, [query.toString()]);
  const pick = (k: string) => (e: Event) => setQuery({ [k]: (e.currentTarget as HTMLSelectElement).value, page: null });
  const data = list.data;
  const pages = data ? Math.max(1, Math.ceil(data.count / pageSize)) : 1;
  const ready = !list.loading && (data !== undefined || list.error !== undefined);
  return (
    <section data-view="measurements" data-ready={ready ? "1" : undefined}>
      <h1>Measurements</h1>
      <p>
        <Link href="/measurements/new">Create a measurement</Link>
      </p>
      <form
        class="filters"
        aria-label="Filter measurements"
        onSubmit={(e) => {
          e.preventDefault();
          setQuery({ target__icontains: target.trim(), namespace: ns.trim(), page: null });
        }}
      >
        <Field id="f-type" label="Type">
          <select id="f-type" value={query.get("type") ?? ""} onChange={pick("type")}>
            <option value="">Any type</option>
            {TYPES.map((t) => (
              <option value={t}>{t}</option>
            ))}
          </select>
        </Field>
        <Field id="f-status" label="Status">
          <select id="f-status" value={query.get("status") ?? ""} onChange={pick("status")}>
            <option value="">Any status</option>
            {STATUSES.map(([id, name]) => (
              <option value={String(id)}>{name}</option>
            ))}
          </select>
        </Field>
        <Field id="f-target" label="Target contains">
          <input id="f-target" type="search" value={target} onInput={(e) => setTarget((e.currentTarget as HTMLInputElement).value)} />
        </Field>
        <Field id="f-ns" label="Owner namespace">
          <input id="f-ns" type="search" value={ns} onInput={(e) => setNs((e.currentTarget as HTMLInputElement).value)} />
        </Field>
        <Field id="f-sort" label="Order">
          <select id="f-sort" value={query.get("sort") ?? "-id"} onChange={pick("sort")}>
            <option value="-id">Newest first</option>
            <option value="id">Oldest first</option>
          </select>
        </Field>
        <Field id="f-size" label="Per page">
          <select id="f-size" value={String(pageSize)} onChange={pick("page_size")}>
            {[25, 50, 100, 200].map((n) => (
              <option value={String(n)}>{n}</option>
            ))}
          </select>
        </Field>
        <button type="submit">Apply</button>
        <button type="button" class="secondary" onClick={() => setQuery(Object.fromEntries(LIST_PARAMS.map((k) => [k, null])))}>
          Clear
        </button>
      </form>
      {list.error && !list.error.down ? <ErrorBox error={list.error} what="The list could not be read" /> : null}
      {data === undefined && list.loading ? <Loading /> : null}
      {data ? (
        <>
          <p aria-live="polite">
            <span data-testid="msm-count">{data.count}</span> measurements; page {page} of {pages}.
          </p>
          <Table caption="Measurements" columns={COLUMNS} rows={data.results} rowKey={(m) => m.id} testid="msm-table" empty="No measurement matches these filters." />
          <nav class="pager" aria-label="Pages">
            {data.previous && page > 1 ? <Link href={pageHref(query, page - 1)}>← Previous page</Link> : <span class="muted">← Previous page</span>}
            <span>
              Page {page} of {pages}
            </span>
            {data.next ? <Link href={pageHref(query, page + 1)}>Next page →</Link> : <span class="muted">Next page →</span>}
          </nav>
        </>
      ) : null}
    </section>
  );
}
