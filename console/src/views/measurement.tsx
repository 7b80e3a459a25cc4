// A measurement's page (`/measurements/{id}`): its definition, state and conditions,
// the probes chosen on the map, summary numbers and the per-type charts (aggregates from
// ClickHouse through the summary API, never the whole result set), and the newest result
// of each probe, updated live from the stream while the page is open.
import { useEffect, useMemo, useRef, useState } from "preact/hooks";
import { useApi, type ApiState } from "../api";
import { useLive } from "../live";
import { WorldMap, type MapPoint } from "../map/worldmap";
import { headline, type RawResult } from "../ripe";
import { setQuery, type Route } from "../router";
import { ErrorBox, Link, Loading, NotFound, Table, fmtTime, type Column } from "../ui";
import {
  NumCell,
  ProbeLink,
  resultKey,
  type Measurement,
  type ProbeAggregates,
  type ResultViewProps,
  type Summary,
} from "./results/common";
import { DnsView, dnsColumns } from "./results/dns";
import { HttpView, httpColumns } from "./results/http";
import { NtpView, ntpColumns } from "./results/ntp";
import { PingView, pingColumns } from "./results/ping";
import { SslcertView, sslcertColumns } from "./results/sslcert";
import { TracerouteView, traceColumns } from "./results/traceroute";
import "./measurements.css";

/** Above this many probes, `latest` is asked for the first ones only (aggregates cover all). */
export const LATEST_MAX = 100;
/** Rows of the per-probe table shown before "Show all". */
export const TABLE_ROWS = 200;
/** Time buckets of the charts. */
export const BUCKETS = 120;
/** After a live result, re-read the aggregates at most this often (ms). */
const SUMMARY_REFRESH_MS = 3000;

/** Type-specific fields of the definition, as RIPE Atlas names them. */
const DEFINITION_FIELDS: Record<string, string[]> = {
  ping: ["packets", "size", "packet_interval"],
  traceroute: ["protocol", "packets", "paris", "first_hop", "max_hops", "size", "port", "dont_fragment", "response_timeout"],
  mtr: ["protocol", "packets", "paris", "first_hop", "max_hops", "size", "port", "dont_fragment", "response_timeout"],
  dns: ["query_class", "query_type", "query_argument", "use_probe_resolver", "protocol", "set_rd_bit", "set_do_bit", "set_cd_bit", "set_nsid_bit", "udp_payload_size", "retry", "timeout"],
  http: ["method", "path", "query_string", "port", "version", "header_bytes", "timing_verbosity", "https"],
  sslcert: ["port", "hostname"],
  ntp: ["packets", "timeout"],
};

interface MapAnswer {
  columns: string[];
  rows: unknown[][];
}

function show(v: unknown): string {
  if (v === null || v === undefined || v === "") return "—";
  if (typeof v === "boolean") return v ? "yes" : "no";
  return typeof v === "string" ? v : JSON.stringify(v);
}

export function MeasurementView(props: { route: Route }) {
  const id = props.route.params.id ?? "";
  const valid = /^\d{1,19}$/.test(id);
  const msm = useApi<Measurement>(valid ? `/api/v2/measurements/${id}/` : null);
  // The aggregates are asked for at once, beside the measurement (they do not depend on it).
  const prbParam = props.route.query.get("prb_id");
  const prb = prbParam && /^\d+$/.test(prbParam) ? Number(prbParam) : undefined;
  const summary = useApi<Summary>(valid ? `/api/vantage/v1/measurements/${id}/summary?buckets=${BUCKETS}${prb !== undefined ? `&prb_id=${prb}` : ""}` : null);
  if (!valid || msm.error?.status === 404) {
    return <NotFound what={`No measurement with id ${id}.`} back="/measurements" backLabel="Go to the measurement list" />;
  }
  if (!msm.data) {
    return (
      <section data-view="measurement">
        <h1>Measurement {id}</h1>
        {msm.error ? <ErrorBox error={msm.error} what="The measurement could not be read" /> : <Loading />}
      </section>
    );
  }
  return <MeasurementPage key={id} msm={msm.data} reloadMsm={msm.reload} summary={summary} prb={prb} />;
}

function MeasurementPage(props: { msm: Measurement; reloadMsm: () => void; summary: ApiState<Summary>; prb?: number }) {
  const { msm, summary, prb } = props;
  const id = String(msm.id);
  const chosen = useMemo(() => (msm.probes ?? []).map((p) => p.id), [msm]);
  const latestPath =
    chosen.length > LATEST_MAX ? `/api/v2/measurements/${id}/latest/?probe_ids=${chosen.slice(0, LATEST_MAX).join(",")}` : `/api/v2/measurements/${id}/latest/`;
  const latest = useApi<RawResult[]>(latestPath);
  const aggregates = useApi<ProbeAggregates>(`/api/vantage/v1/measurements/${id}/probes?limit=500`);
  const map = useApi<MapAnswer>(chosen.length ? "/api/vantage/v1/probes/map" : null);

  // Live results: the newest per probe, and which rows are new.
  const [liveByProbe, setLiveByProbe] = useState<Map<number, RawResult>>(new Map());
  const [fresh, setFresh] = useState<Set<string>>(new Set());
  const refresh = useRef<{ timer?: number; last: number }>({ last: 0 });
  const live = useLive(
    id,
    (r) => {
      if (String(r.msm_id) !== id) return;
      const p = Number(r.prb_id);
      setLiveByProbe((m) => {
        const old = m.get(p);
        if (old && Number(old.timestamp) > Number(r.timestamp)) return m;
        const next = new Map(m);
        next.set(p, r);
        return next;
      });
      setFresh((f) => new Set(f).add(resultKey(r)));
      // Re-read the aggregates shortly after (the result reaches ClickHouse in batches).
      const st = refresh.current;
      if (st.timer === undefined) {
        const wait = Math.max(1000, SUMMARY_REFRESH_MS - (Date.now() - st.last));
        st.timer = window.setTimeout(() => {
          st.timer = undefined;
          st.last = Date.now();
          summary.reload();
          aggregates.reload();
          // Its status, counts and chosen probes change as results come in.
          props.reloadMsm();
        }, wait);
      }
    },
    // Once subscribed, re-read what may have arrived while the stream was connecting.
    () => latest.reload(),
  );
  useEffect(() => () => window.clearTimeout(refresh.current.timer), []);

  const rows = useMemo(() => {
    const byProbe = new Map<number, RawResult>();
    for (const r of latest.data ?? []) byProbe.set(Number(r.prb_id), r);
    for (const [p, r] of liveByProbe) {
      const old = byProbe.get(p);
      if (!old || Number(old.timestamp) <= Number(r.timestamp)) byProbe.set(p, r);
    }
    return [...byProbe.values()].sort((a, b) => Number(a.prb_id) - Number(b.prb_id));
  }, [latest.data, liveByProbe]);

  const settled = (s: { data?: unknown; error?: unknown; loading: boolean }) => s.data !== undefined || (!s.loading && s.error !== undefined);
  const ready = settled(summary) && settled(latest);
  const marked = useRef(false);
  useEffect(() => {
    if (ready && !marked.current) {
      marked.current = true;
      performance.mark("measurement-ready");
    }
  }, [ready]);

  const points = useMemo<MapPoint[]>(() => {
    const m = map.data;
    if (!m) return [];
    const want = new Set(chosen);
    const at = (c: string) => m.columns.indexOf(c);
    const [iId, iLat, iLon, iCc] = [at("id"), at("lat"), at("lon"), at("country_code")];
    const out: MapPoint[] = [];
    for (const row of m.rows) {
      const pid = Number(row[iId]);
      const lat = row[iLat];
      const lon = row[iLon];
      if (!want.has(pid) || typeof lat !== "number" || typeof lon !== "number") continue;
      out.push({ id: pid, lat, lon, cls: "chosen", r: 4, label: `Probe ${pid}${typeof row[iCc] === "string" ? ` (${String(row[iCc])})` : ""}` });
    }
    return out;
  }, [map.data, chosen]);

  const view: ResultViewProps = {
    msm,
    summary: summary.data,
    latest: rows,
    aggregates: aggregates.data,
    prb,
    fresh,
  };
  const s = summary.data;
  const v = msm.vantage;
  const typeCols = columnsOf(msm.type);
  const resultCols: Column<RawResult>[] = [
    { key: "prb", label: "Probe", numeric: true, render: (r) => <ProbeLink id={Number(r.prb_id)} /> },
    { key: "time", label: "Time (UTC)", render: (r) => fmtTime(Number(r.timestamp)) },
    { key: "dst", label: "Destination", render: (r) => [r.dst_name, r.dst_addr].filter((x) => typeof x === "string" && x).join(" ") || "—" },
    ...typeCols,
  ];
  const target = msm.target || (typeof msm.query_argument === "string" ? msm.query_argument : "");

  return (
    <section data-view="measurement" data-ready={ready ? "1" : undefined} data-msm={id}>
      <p>
        <Link href="/measurements">← Measurements</Link>
      </p>
      <h1>
        Measurement <span data-testid="msm-id">{id}</span>: {msm.type} {target ? `to ${target}` : ""}
      </h1>
      {msm.description ? <p data-testid="msm-description">{msm.description}</p> : null}

      <div class="kv-grid" aria-label="Summary">
        <div class="kv">
          <b data-testid="summary-results">{s ? String(s.results) : "—"}</b>
          <span>results</span>
        </div>
        <div class="kv">
          <b data-testid="summary-probes">{s ? String(s.probes) : "—"}</b>
          <span>probes reported</span>
        </div>
        <div class="kv">
          <b>{String(msm.participant_count ?? chosen.length)}</b>
          <span>probes taking part</span>
        </div>
        <div class="kv">
          <b>{fmtTime(s?.first)}</b>
          <span>first result</span>
        </div>
        <div class="kv">
          <b>{fmtTime(s?.last)}</b>
          <span>last result</span>
        </div>
        <div class={`kv live-status ${live.status}`}>
          <b data-testid="live-count">{String(live.count)}</b>
          <span aria-live="polite" data-testid="live-status">
            results live ({live.status === "live" ? "listening" : live.status === "connecting" ? "connecting…" : "stream unavailable"})
          </span>
        </div>
      </div>
      {summary.error && !summary.error.down ? <ErrorBox error={summary.error} what="The aggregates could not be read" /> : null}

      {prb !== undefined && msm.type !== "ping" ? (
        <p data-testid="probe-filter">
          The charts show probe {prb} only.{" "}
          <button type="button" class="secondary" onClick={() => setQuery({ prb_id: null })}>
            Show all probes
          </button>
        </p>
      ) : null}
      <TypeView type={msm.type} {...view} />
      {msm.type !== "ping" && (aggregates.data?.rows.length ?? 0) > 0 ? (
        <details>
          <summary>Per-probe aggregates over the whole measurement ({aggregates.data?.rows.length} probes)</summary>
          <Table
            caption="Per-probe aggregates (all results)"
            rows={aggregates.data?.rows ?? []}
            rowKey={(r) => r.prb_id}
            limit={500}
            columns={[
              { key: "prb", label: "Probe", numeric: true, sort: (r) => r.prb_id, render: (r) => <ProbeLink id={r.prb_id} /> },
              { key: "n", label: "Results", numeric: true, sort: (r) => r.n, render: (r) => String(r.n) },
              { key: "rt", label: msm.type === "traceroute" || msm.type === "mtr" ? "Last hop RTT (ms)" : "Mean time (ms)", numeric: true, sort: (r) => r.rt_avg ?? Infinity, render: (r) => <NumCell v={msm.type === "ntp" && typeof r.rt_avg === "number" ? r.rt_avg * 1000 : r.rt_avg} /> },
              { key: "last", label: "Last result", sort: (r) => r.last, render: (r) => fmtTime(r.last) },
            ]}
          />
        </details>
      ) : null}

      <h2>Latest result per probe</h2>
      {latest.error && !latest.error.down ? <ErrorBox error={latest.error} what="The latest results could not be read" /> : null}
      {chosen.length > LATEST_MAX ? (
        <p class="muted">
          The newest results of the first {LATEST_MAX} of {chosen.length} probes (and any that arrive live); the per-probe aggregates above cover them all.
        </p>
      ) : null}
      <ResultTable rows={rows} columns={resultCols} fresh={fresh} />
      {rows.length ? (
        <details>
          <summary>Raw JSON of the newest result</summary>
          <pre class="raw">{JSON.stringify(newest(rows), null, 2)}</pre>
        </details>
      ) : null}
      <h2>About this measurement</h2>
      <div class="grid">
        <div class="panel">
          <h3>Definition</h3>
          <dl class="facts" data-testid="definition">
            <dt>Type</dt>
            <dd>{msm.type}</dd>
            <dt>Target</dt>
            <dd>{show(msm.target)}</dd>
            {msm.target_ip && msm.target_ip !== msm.target ? (
              <>
                <dt>Target address</dt>
                <dd>{msm.target_ip}</dd>
              </>
            ) : null}
            <dt>Address family</dt>
            <dd>{msm.af ? `IPv${msm.af}` : "—"}</dd>
            <dt>Schedule</dt>
            <dd>{msm.is_oneoff ? "one-off" : `every ${show(msm.interval)} s, spread ${show(msm.spread)} s`}</dd>
            <dt>Start</dt>
            <dd>{fmtTime(msm.start_time)}</dd>
            <dt>Stop</dt>
            <dd>{fmtTime(msm.stop_time)}</dd>
            <dt>Resolve on probe</dt>
            <dd>{show(msm.resolve_on_probe)}</dd>
            {(DEFINITION_FIELDS[msm.type] ?? []).filter((f) => msm[f] !== undefined && msm[f] !== null).map((f) => (
              <>
                <dt>{f}</dt>
                <dd>{show(msm[f])}</dd>
              </>
            ))}
            <dt>Probe sources</dt>
            <dd>
              {(msm.participation_requests ?? []).length
                ? (msm.participation_requests ?? []).map((p) => `${p.action ?? "add"} ${p.requested ?? "?"} from ${p.type ?? "?"} ${p.value ?? ""}`).join("; ")
                : "—"}
            </dd>
          </dl>
        </div>
        <div class="panel">
          <h3>State</h3>
          <dl class="facts">
            <dt>Status</dt>
            <dd data-testid="msm-status">
              {msm.status?.name ?? "—"}
              {msm.status?.when ? ` since ${fmtTime(msm.status.when)}` : ""}
            </dd>
            <dt>vantage state</dt>
            <dd data-testid="msm-state">{v?.state ?? "—"}</dd>
            <dt>Resource</dt>
            <dd>{v ? `${v.namespace ?? "?"}/${v.name ?? "?"}` : "—"}</dd>
            <dt>Results (counted)</dt>
            <dd>{show(msm.results_count)}</dd>
            <dt>Last result</dt>
            <dd>{fmtTime(msm.last_result)}</dd>
          </dl>
          <Table
            caption="Conditions"
            rows={v?.conditions ?? []}
            rowKey={(c) => c.type}
            empty="No conditions reported."
            columns={[
              { key: "type", label: "Type", render: (c) => c.type },
              { key: "status", label: "Status", render: (c) => <span class={c.status === "True" ? "" : "cond-false"}>{c.status}</span> },
              { key: "reason", label: "Reason", render: (c) => c.reason ?? "" },
              { key: "message", label: "Message", render: (c) => c.message ?? "" },
              { key: "when", label: "Since", render: (c) => c.lastTransitionTime ?? "" },
            ]}
          />
        </div>
      </div>

      <h3>Probes chosen</h3>
      {chosen.length ? (
        <>
          <WorldMap points={points} title={`Map of the ${points.length} located probes of ${chosen.length} taking part`} height={280} onPick={(p) => setQuery({ prb_id: p })} />
          <details>
            <summary>The {chosen.length} probes as a list</summary>
            <p>
              {chosen.slice(0, 1000).map((p, i) => (
                <>
                  {i ? ", " : ""}
                  <ProbeLink id={p} />
                </>
              ))}
              {chosen.length > 1000 ? ` … and ${chosen.length - 1000} more` : ""}
            </p>
          </details>
        </>
      ) : (
        <p class="muted">No probe has been chosen yet.</p>
      )}

    </section>
  );
}

function newest(rows: RawResult[]): RawResult | undefined {
  return rows.reduce<RawResult | undefined>((a, r) => (!a || Number(r.timestamp) > Number(a.timestamp) ? r : a), undefined);
}

function columnsOf(type: string): Column<RawResult>[] {
  switch (type) {
    case "ping":
      return pingColumns;
    case "traceroute":
    case "mtr":
      return traceColumns;
    case "dns":
      return dnsColumns;
    case "http":
      return httpColumns;
    case "sslcert":
      return sslcertColumns;
    case "ntp":
      return ntpColumns;
    default:
      return [{ key: "summary", label: "Summary", render: (r) => headline(r).text }, { key: "v", label: "Value", numeric: true, render: (r) => <NumCell v={headline(r).value} /> }];
  }
}

function TypeView(props: ResultViewProps & { type: string }) {
  switch (props.type) {
    case "ping":
      return <PingView {...props} />;
    case "traceroute":
    case "mtr":
      return <TracerouteView {...props} />;
    case "dns":
      return <DnsView {...props} />;
    case "http":
      return <HttpView {...props} />;
    case "sslcert":
      return <SslcertView {...props} />;
    case "ntp":
      return <NtpView {...props} />;
    default:
      return <p class="muted">No view for type {props.type}.</p>;
  }
}

/** The per-probe result table: one row per probe (`result-row`), new live rows marked. */
function ResultTable(props: { rows: RawResult[]; columns: Column<RawResult>[]; fresh: Set<string> }) {
  const [all, setAll] = useState(false);
  // Rows that arrived live first (newest first), then the others by probe id; bounded.
  const live = props.rows.filter((r) => props.fresh.has(resultKey(r))).sort((a, b) => Number(b.timestamp) - Number(a.timestamp));
  const rest = props.rows.filter((r) => !props.fresh.has(resultKey(r)));
  const ordered = [...live, ...rest];
  const shown = all ? ordered : ordered.slice(0, TABLE_ROWS);
  return (
    <div class="table-wrap">
      <table data-testid="results-table">
        <caption>
          Newest result of each probe ({props.rows.length}){props.fresh.size ? "; rows marked ● arrived live" : ""}
        </caption>
        <thead>
          <tr>
            {props.columns.map((c) => (
              <th scope="col" class={c.numeric ? "num" : undefined}>
                {c.label}
              </th>
            ))}
          </tr>
        </thead>
        <tbody>
          {props.rows.length === 0 ? (
            <tr>
              <td colSpan={props.columns.length} class="empty">
                No result yet. New results appear here as they arrive.
              </td>
            </tr>
          ) : (
            shown.map((r) => {
              const isFresh = props.fresh.has(resultKey(r));
              return (
                <tr key={String(r.prb_id)} data-testid="result-row" data-prb={String(r.prb_id)} class={isFresh ? "fresh" : undefined} data-live={isFresh ? "1" : undefined}>
                  {props.columns.map((c, i) => (
                    <td class={c.numeric ? "num" : undefined}>
                      {i === 0 && isFresh ? <span aria-label="arrived live">● </span> : null}
                      {c.render ? c.render(r) : ""}
                    </td>
                  ))}
                </tr>
              );
            })
          )}
        </tbody>
      </table>
      {ordered.length > shown.length ? (
        <p>
          Showing {shown.length} of {ordered.length} probes.{" "}
          <button type="button" class="secondary" onClick={() => setAll(true)}>
            Show all {ordered.length}
          </button>
        </p>
      ) : null}
    </div>
  );
}
