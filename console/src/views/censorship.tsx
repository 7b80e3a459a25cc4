// The censorship view (`/censorship`), OONI Explorer's side: fastpath measurements counted
// by country and by day (`/api/v1/aggregation`: measurements, anomalies, confirmed
// blocking, failures, ok), a chart of the daily counts with its table, and a measurement
// search (`/api/v1/measurements`, paged). Every filter is in the query string.
import { useMemo } from "preact/hooks";
import { useApi } from "../api";
import { setQuery, type Route } from "../router";
import { ErrorBox, Field, Loading, Table, fmtTime, type Column } from "../ui";
import { DebouncedInput } from "./debounced";
import { dayUnix, n, stackOf, type AggRow } from "./censorship-data";
import "./atlas.css";

interface AggAnswer {
  dimension_count: number;
  result: AggRow[] | AggRow;
}

export interface OoniItem {
  measurement_uid: string;
  measurement_start_time: string;
  probe_cc: string;
  probe_asn: string;
  test_name: string;
  input: string | null;
  report_id?: string;
  anomaly: boolean;
  confirmed: boolean;
  failure: boolean;
}

interface ListAnswer {
  metadata: { count: number; offset: number; limit: number; pages?: number; current_page?: number };
  results: OoniItem[];
}

/** Measurements per search page. */
export const SEARCH_PAGE = 50;

/** OONI test names offered as suggestions (any name can be typed). */
const TESTS = [
  "web_connectivity",
  "signal",
  "telegram",
  "whatsapp",
  "facebook_messenger",
  "tor",
  "psiphon",
  "riseupvpn",
  "dnscheck",
  "stunreachability",
  "http_header_field_manipulation",
  "http_invalid_request_line",
  "ndt",
  "dash",
];

const COUNTS = ["measurement_count", "anomaly_count", "confirmed_count", "failure_count", "ok_count"] as const;
type CountKey = (typeof COUNTS)[number];
const COUNT_LABELS: Record<CountKey, string> = {
  measurement_count: "Measurements",
  anomaly_count: "Anomalies",
  confirmed_count: "Confirmed",
  failure_count: "Failures",
  ok_count: "OK",
};

/** A query string of the non-empty values. */
function qs(values: Record<string, string | number | null | undefined>): string {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(values)) if (v !== undefined && v !== null && v !== "") q.set(k, String(v));
  return q.toString();
}

const DATE = /^\d{4}-\d{2}-\d{2}$/;

/** Stacked bars of the day counts (OK, anomaly, confirmed, failure: lightness and pattern differ, so they read in grey), with the table behind them. */
function DayBars(props: { rows: AggRow[] }) {
  const rows = props.rows;
  const max = Math.max(1, ...rows.map((r) => n(r.measurement_count)));
  const day = (r: AggRow) => (r.measurement_start_day ?? "").slice(0, 10);
  const width = `${Math.max(rows.length * 4, 16)}rem`;
  return (
    <figure class="chart-figure" data-testid="agg-days">
      {rows.length === 0 ? (
        <p class="loading">No measurement in this period.</p>
      ) : (
        <>
          <div class="daybar-keys" aria-hidden="true">
            {stackOf(rows[0]).map((s) => (
              <span>
                <span class={`key-swatch seg-${s.key}`} />
                {s.label}
              </span>
            ))}
          </div>
          <div class="daybars" style={{ maxWidth: width }} role="img" aria-label={`Measurements per day, ${rows.length} days; the same counts are in the table below`}>
            {rows.map((r) => {
              const parts = stackOf(r);
              return (
                <div class="day" title={`${day(r)}: ${n(r.measurement_count)} measurements (${parts.map((s) => `${s.n} ${s.label.toLowerCase()}`).join(", ")})`}>
                  {parts.map((s) => (s.n > 0 ? <span class={`seg seg-${s.key}`} style={{ height: `${(100 * s.n) / max}%` }} /> : null))}
                </div>
              );
            })}
          </div>
          <div class="daybar-axis" style={{ maxWidth: width }} aria-hidden="true">
            <span>{day(rows[0])}</span>
            <span>{rows.length > 1 ? day(rows[rows.length - 1]) : ""}</span>
          </div>
        </>
      )}
      <details open={rows.length > 0 && rows.length <= 14}>
        <summary>Data table: measurements per day</summary>
        <Table
          caption="Measurements per day (UTC)"
          columns={[
            { key: "day", label: "Day", sort: (r: AggRow) => day(r), render: (r: AggRow) => day(r) },
            ...COUNTS.map<Column<AggRow>>((k) => ({ key: k, label: COUNT_LABELS[k], numeric: true, sort: (r) => n(r[k]), render: (r) => String(n(r[k])) })),
          ]}
          rows={rows}
          rowKey={(r) => day(r)}
          testid="agg-days-table"
        />
      </details>
    </figure>
  );
}

export function CensorshipView(props: { route: Route }) {
  const q = props.route.query;
  const ccText = (q.get("probe_cc") ?? "").trim();
  const ccError = ccText && !/^[A-Za-z]{2}$/.test(ccText) ? `"${ccText}" is not a two-letter country code such as IT` : undefined;
  const shared = {
    test_name: (q.get("test_name") ?? "").trim(),
    probe_cc: ccError ? "" : ccText.toUpperCase(),
    since: DATE.test(q.get("since") ?? "") ? q.get("since") : "",
    until: DATE.test(q.get("until") ?? "") ? q.get("until") : "",
  };
  const flag = (k: string) => (q.get(k) === "true" || q.get(k) === "false" ? q.get(k) : "");
  const offset = Math.max(0, Math.floor(n(q.get("offset"))));
  const search = { ...shared, anomaly: flag("anomaly"), confirmed: flag("confirmed"), failure: flag("failure") };

  const byCountry = useApi<AggAnswer>(`/api/v1/aggregation?${qs({ axis_x: "probe_cc", ...shared })}`);
  const byDay = useApi<AggAnswer>(`/api/v1/aggregation?${qs({ axis_x: "measurement_start_day", time_grain: "day", ...shared })}`);
  const list = useApi<ListAnswer>(`/api/v1/measurements?${qs({ ...search, limit: SEARCH_PAGE, offset })}`);

  const countries = useMemo(() => {
    const r = byCountry.data?.result;
    return Array.isArray(r) ? r : [];
  }, [byCountry.data]);
  const totals = useMemo(() => {
    const t = { measurement_count: 0, anomaly_count: 0, confirmed_count: 0, failure_count: 0, ok_count: 0 };
    for (const row of countries) for (const k of COUNTS) t[k] += n(row[k]);
    return t;
  }, [countries]);
  const days = useMemo(() => {
    const r = byDay.data?.result;
    return (Array.isArray(r) ? r : []).filter((d) => d.measurement_start_day && Number.isFinite(dayUnix(d.measurement_start_day)));
  }, [byDay.data]);

  const settled = (s: { data?: unknown; error?: unknown }) => s.data !== undefined || s.error !== undefined;
  const ready = settled(byCountry) && settled(byDay) && settled(list);

  const countryColumns: Column<AggRow>[] = [
    {
      key: "cc",
      label: "Country",
      sort: (r) => r.probe_cc ?? "",
      render: (r) =>
        r.probe_cc ? (
          <button type="button" class="linklike" onClick={() => setQuery({ probe_cc: r.probe_cc, offset: "" })} title={`Show only ${r.probe_cc}`}>
            {r.probe_cc}
          </button>
        ) : (
          "(none)"
        ),
    },
    ...COUNTS.map<Column<AggRow>>((k) => ({
      key: k,
      label: COUNT_LABELS[k],
      numeric: true,
      sort: (r) => n(r[k]),
      render: (r) => <span data-testid={`agg-${r.probe_cc || "none"}-${k}`}>{String(n(r[k]))}</span>,
    })),
  ];
  const listColumns: Column<OoniItem>[] = [
    { key: "uid", label: "Measurement", render: (m) => <code>{m.measurement_uid}</code> },
    { key: "time", label: "Start (UTC)", render: (m) => fmtTime(dayUnix(m.measurement_start_time)) },
    { key: "cc", label: "Country", render: (m) => m.probe_cc },
    { key: "asn", label: "ASN", render: (m) => m.probe_asn },
    { key: "test", label: "Test", render: (m) => m.test_name },
    { key: "input", label: "Input", render: (m) => m.input ?? "—" },
    {
      key: "verdict",
      label: "Verdict",
      render: (m) =>
        m.confirmed ? <span class="flag-yes">confirmed</span> : m.anomaly ? <span class="state-warn">anomaly</span> : m.failure ? <span class="state-bad">failure</span> : <span class="state-ok">ok</span>,
    },
  ];
  const total = list.data?.metadata.count ?? 0;

  return (
    <section data-view="censorship" data-ready={ready ? "1" : "0"}>
      <h1>Censorship measurements</h1>
      <p>OONI measurements from the fastpath: counts by country and by day, and a search over the measurements.</p>
      <form class="filters" role="search" aria-label="Filter measurements" onSubmit={(e) => e.preventDefault()}>
        <Field id="c-test" label="Test name">
          <DebouncedInput id="c-test" value={shared.test_name} onCommit={(v) => setQuery({ test_name: v.trim(), offset: "" })} list="c-tests" placeholder="web_connectivity" />
          <datalist id="c-tests">
            {TESTS.map((t) => (
              <option value={t} />
            ))}
          </datalist>
        </Field>
        <Field id="c-cc" label="Country" error={ccError}>
          <DebouncedInput id="c-cc" value={ccText} onCommit={(v) => setQuery({ probe_cc: v.trim().toUpperCase(), offset: "" })} placeholder="IT" size={4} invalid={!!ccError} />
        </Field>
        <Field id="c-since" label="Since (UTC day)">
          <input id="c-since" type="date" value={shared.since ?? ""} onChange={(e) => setQuery({ since: e.currentTarget.value, offset: "" })} />
        </Field>
        <Field id="c-until" label="Until (exclusive)">
          <input id="c-until" type="date" value={shared.until ?? ""} onChange={(e) => setQuery({ until: e.currentTarget.value, offset: "" })} />
        </Field>
        <button type="button" class="secondary" onClick={() => setQuery({ test_name: "", probe_cc: "", since: "", until: "", anomaly: "", confirmed: "", failure: "", offset: "" })}>
          Clear filters
        </button>
      </form>

      <h2>By country</h2>
      {byCountry.error ? <ErrorBox error={byCountry.error} what="The counts by country could not be read" /> : null}
      {byCountry.loading && !byCountry.data ? <Loading /> : null}
      <p>
        Total: <strong data-testid="agg-total-measurement_count">{totals.measurement_count}</strong> measurements,{" "}
        <span data-testid="agg-total-anomaly_count">{totals.anomaly_count}</span> anomalies, <span data-testid="agg-total-confirmed_count">{totals.confirmed_count}</span>{" "}
        confirmed, <span data-testid="agg-total-failure_count">{totals.failure_count}</span> failures, <span data-testid="agg-total-ok_count">{totals.ok_count}</span> ok.
      </p>
      <Table caption="Measurements per country" columns={countryColumns} rows={countries} rowKey={(r) => r.probe_cc ?? ""} testid="agg-countries" empty="No measurement matches the filters." />

      <h2>By day</h2>
      {byDay.error ? <ErrorBox error={byDay.error} what="The counts by day could not be read" /> : null}
      <DayBars rows={days} />

      <h2>Search</h2>
      <form class="filters" aria-label="Search filters" onSubmit={(e) => e.preventDefault()}>
        {(["anomaly", "confirmed", "failure"] as const).map((k) => (
          <Field id={`c-${k}`} label={k[0].toUpperCase() + k.slice(1)}>
            <select id={`c-${k}`} value={search[k] ?? ""} onChange={(e) => setQuery({ [k]: e.currentTarget.value, offset: "" })}>
              <option value="">Any</option>
              <option value="true">Yes</option>
              <option value="false">No</option>
            </select>
          </Field>
        ))}
      </form>
      {list.error ? <ErrorBox error={list.error} what="The search failed" /> : null}
      {list.loading && !list.data ? <Loading /> : null}
      <p>
        <span data-testid="search-count">{total}</span> measurement{total === 1 ? "" : "s"} match
        {total ? `; ${offset + 1}–${Math.min(total, offset + SEARCH_PAGE)} shown` : ""}.
      </p>
      <Table caption="Measurements, newest first" columns={listColumns} rows={list.data?.results ?? []} rowKey={(m) => m.measurement_uid} testid="search-results" empty="No measurement matches." />
      <nav class="pager" aria-label="Search pages">
        <button type="button" class="secondary" disabled={offset === 0} onClick={() => setQuery({ offset: Math.max(0, offset - SEARCH_PAGE) || "" })}>
          Previous
        </button>
        <span>
          Page {Math.floor(offset / SEARCH_PAGE) + 1} of {Math.max(1, Math.ceil(total / SEARCH_PAGE))}
        </span>
        <button type="button" class="secondary" disabled={offset + SEARCH_PAGE >= total} onClick={() => setQuery({ offset: offset + SEARCH_PAGE })}>
          Next
        </button>
      </nav>
    </section>
  );
}
