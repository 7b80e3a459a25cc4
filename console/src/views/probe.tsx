// The probe page (`/probes/{id}`): the probe's spec and status (RIPE probe JSON from
// `/api/v2/probes/{id}/`) with user and system tags apart, its place on a small map, its
// connection history, the measurements it takes part in and its recent results (one line
// each). An unknown or malformed id is the not-found page.
import { useMemo } from "preact/hooks";
import { useApi } from "../api";
import type { Route } from "../router";
import { ErrorBox, Link, Loading, NotFound, Table, fmtTime, type Column } from "../ui";
import { WorldMap, type MapPoint } from "../map/worldmap";
import { statusClass } from "./probes-data";
import { resultLine } from "./resultline";
import "./atlas.css";

/** RIPE Atlas probe JSON, the fields this page shows. */
export interface RipeProbe {
  id: number;
  description?: string | null;
  country_code?: string | null;
  asn_v4?: number | null;
  asn_v6?: number | null;
  prefix_v4?: string | null;
  prefix_v6?: string | null;
  address_v4?: string | null;
  address_v6?: string | null;
  is_anchor?: boolean;
  firmware_version?: number | string | null;
  controller?: string | null;
  first_connected?: number | null;
  last_connected?: number | null;
  geometry?: { type: string; coordinates: [number, number] } | null;
  status?: { id: number; name: string; since?: number | null };
  tags?: { name: string; slug: string }[];
}

interface Connection {
  event: string;
  timestamp: number;
  controller?: string | null;
  address?: string | null;
}

interface RipeMeasurement {
  id: number;
  type?: string;
  target?: string | null;
  description?: string | null;
  status?: { id: number; name: string };
  af?: number;
  start_time?: number | null;
  is_oneoff?: boolean;
}

type RawResult = Record<string, unknown> & { timestamp?: number; msm_id?: number; type?: string };

/** A system tag: set by the operator (RIPE Atlas' `system-` prefix). */
export const isSystemTag = (slug: string): boolean => slug.startsWith("system-");

function Tags(props: { tags: { name: string; slug: string }[]; testid: string; system?: boolean }) {
  if (props.tags.length === 0) return <span data-testid={props.testid}>none</span>;
  return (
    <ul class={props.system ? "tags system" : "tags"} data-testid={props.testid}>
      {props.tags.map((t) => (
        <li title={t.name}>{t.slug}</li>
      ))}
    </ul>
  );
}

/** A stable key per result object (two results of a probe can share every field a key could use). */
const keys = new WeakMap<object, number>();
let nextKey = 0;
function keyOf(r: object): number {
  let k = keys.get(r);
  if (k === undefined) {
    k = nextKey++;
    keys.set(r, k);
  }
  return k;
}

const dash = (v: unknown): string => (v === null || v === undefined || v === "" ? "—" : String(v));

/** The page, mounted afresh for each probe id (no state carries over from another probe). */
export function ProbeView(props: { route: Route }) {
  const raw = props.route.params.id ?? "";
  return <ProbePage key={raw} raw={raw} />;
}

function ProbePage(props: { raw: string }) {
  const raw = props.raw;
  const valid = /^\d{1,10}$/.test(raw);
  const id = valid ? Number(raw) : NaN;
  const probe = useApi<RipeProbe>(valid ? `/api/v2/probes/${id}/` : null);
  const ok = probe.data !== undefined && probe.data.id === id;
  const conns = useApi<{ connections: Connection[] }>(ok ? `/api/vantage/v1/probes/${id}/connections?limit=100` : null);
  const msms = useApi<{ results: RipeMeasurement[] }>(ok ? `/api/vantage/v1/probes/${id}/measurements` : null);
  const results = useApi<RawResult[]>(ok ? `/api/vantage/v1/probes/${id}/results?limit=50` : null);
  const p = ok ? probe.data : undefined;

  const point = useMemo<MapPoint[]>(() => {
    const c = p?.geometry?.coordinates;
    if (!p || !c || c.length < 2) return [];
    return [{ id: p.id, lon: c[0], lat: c[1], cls: statusClass(p.status?.id ?? 0, p.is_anchor === true), r: 6, label: `Probe ${p.id}` }];
  }, [p]);

  if (!valid || (probe.error?.status === 404 && !probe.loading)) {
    return <NotFound what={`No probe with id ${raw}.`} back="/probes" backLabel="Go to the probe map" />;
  }
  if (!p) {
    return (
      <section data-view="probe" data-ready={probe.error ? "1" : "0"}>
        <h1>Probe {raw}</h1>
        {probe.error ? <ErrorBox error={probe.error} what="The probe could not be read" /> : <Loading />}
      </section>
    );
  }
  const tags = p.tags ?? [];
  const userTags = tags.filter((t) => !isSystemTag(t.slug));
  const systemTags = tags.filter((t) => isSystemTag(t.slug));
  const status = p.status ?? { id: 0, name: "Never Connected" };
  // Ready once each part has its answer (data or error), not merely "not loading": the
  // parts' requests start in the render after the probe arrives.
  const settled = (s: { data?: unknown; error?: unknown }) => s.data !== undefined || s.error !== undefined;
  const subReady = settled(conns) && settled(msms) && settled(results);

  const connColumns: Column<Connection>[] = [
    { key: "timestamp", label: "Time", sort: (c) => c.timestamp, render: (c) => fmtTime(c.timestamp) },
    { key: "event", label: "Event", render: (c) => c.event },
    { key: "controller", label: "Controller", render: (c) => dash(c.controller) },
    { key: "address", label: "Address", render: (c) => dash(c.address) },
  ];
  const msmColumns: Column<RipeMeasurement>[] = [
    { key: "id", label: "Measurement", numeric: true, sort: (m) => m.id, render: (m) => <Link href={`/measurements/${m.id}`}>{String(m.id)}</Link> },
    { key: "type", label: "Type", sort: (m) => m.type ?? "", render: (m) => dash(m.type) },
    { key: "target", label: "Target", render: (m) => dash(m.target) },
    { key: "status", label: "Status", render: (m) => dash(m.status?.name) },
    { key: "start", label: "Start", sort: (m) => m.start_time ?? 0, render: (m) => fmtTime(m.start_time) },
    { key: "description", label: "Description", render: (m) => dash(m.description) },
  ];
  const resultColumns: Column<RawResult>[] = [
    { key: "timestamp", label: "Time", sort: (r) => Number(r.timestamp ?? 0), render: (r) => fmtTime(typeof r.timestamp === "number" ? r.timestamp : null) },
    {
      key: "msm",
      label: "Measurement",
      numeric: true,
      render: (r) => (typeof r.msm_id === "number" ? <Link href={`/measurements/${r.msm_id}`}>{String(r.msm_id)}</Link> : "—"),
    },
    { key: "type", label: "Type", render: (r) => dash(r.type) },
    { key: "target", label: "Target", render: (r) => dash(r.dst_name ?? r.dst_addr) },
    { key: "summary", label: "Result", render: (r) => resultLine(r) },
  ];

  return (
    <section data-view="probe" data-ready={subReady ? "1" : "0"}>
      <div class="probe-head">
        <h1>
          Probe <span data-testid="probe-id">{String(p.id)}</span>
        </h1>
        <span class={`badge st st-${statusClass(status.id, false)}`} data-testid="probe-status">
          {status.name}
        </span>
        {p.is_anchor ? <span class="badge">Anchor</span> : null}
      </div>
      <div class="grid">
        <div class="panel">
          <h2>Spec and status</h2>
          <dl class="facts">
            <dt>Description</dt>
            <dd data-testid="probe-description">{dash(p.description)}</dd>
            <dt>Status</dt>
            <dd>
              {status.name}
              {status.since ? ` since ${fmtTime(status.since)}` : ""}
            </dd>
            <dt>Country</dt>
            <dd data-testid="probe-country">{dash(p.country_code)}</dd>
            <dt>ASN (IPv4)</dt>
            <dd data-testid="probe-asn-v4">{p.asn_v4 ? `AS${p.asn_v4}` : "—"}</dd>
            <dt>ASN (IPv6)</dt>
            <dd data-testid="probe-asn-v6">{p.asn_v6 ? `AS${p.asn_v6}` : "—"}</dd>
            <dt>Prefix (IPv4)</dt>
            <dd data-testid="probe-prefix-v4">{dash(p.prefix_v4)}</dd>
            <dt>Prefix (IPv6)</dt>
            <dd data-testid="probe-prefix-v6">{dash(p.prefix_v6)}</dd>
            <dt>Address (IPv4)</dt>
            <dd data-testid="probe-address-v4">{dash(p.address_v4)}</dd>
            <dt>Address (IPv6)</dt>
            <dd data-testid="probe-address-v6">{dash(p.address_v6)}</dd>
            <dt>Anchor</dt>
            <dd data-testid="probe-anchor">{p.is_anchor ? "yes" : "no"}</dd>
            <dt>Firmware</dt>
            <dd data-testid="probe-firmware">{dash(p.firmware_version)}</dd>
            <dt>Controller</dt>
            <dd data-testid="probe-controller">{dash(p.controller)}</dd>
            <dt>First connected</dt>
            <dd>{fmtTime(p.first_connected)}</dd>
            <dt>Last connected</dt>
            <dd>{fmtTime(p.last_connected)}</dd>
            <dt>Location</dt>
            <dd data-testid="probe-location">
              {p.geometry?.coordinates ? `${p.geometry.coordinates[1]}, ${p.geometry.coordinates[0]}` : "not known"}
            </dd>
            <dt>User tags</dt>
            <dd>
              <Tags tags={userTags} testid="probe-tags-user" />
            </dd>
            <dt>System tags</dt>
            <dd>
              <Tags tags={systemTags} testid="probe-tags-system" system />
            </dd>
          </dl>
        </div>
        <div>
          {point.length ? <WorldMap points={point} title={`Location of probe ${p.id}`} height={280} fit={50} /> : <p>The probe has no location.</p>}
        </div>
      </div>

      <h2>Connection history</h2>
      {conns.error ? <ErrorBox error={conns.error} what="The connection history could not be read" /> : null}
      {conns.loading && !conns.data ? <Loading /> : null}
      {conns.data ? (
        <Table
          caption="Connections and disconnections, newest first"
          columns={connColumns}
          rows={conns.data.connections ?? []}
          rowKey={(c) => `${c.timestamp}-${c.event}-${c.address ?? ""}`}
          testid="connections"
          empty="No connection recorded."
        />
      ) : null}

      <h2>Measurements</h2>
      {msms.error ? <ErrorBox error={msms.error} what="The measurements could not be read" /> : null}
      {msms.loading && !msms.data ? <Loading /> : null}
      {msms.data ? (
        <Table
          caption="Measurements this probe takes part in"
          columns={msmColumns}
          rows={msms.data.results ?? []}
          rowKey={(m) => m.id}
          testid="probe-measurements"
          empty="This probe takes part in no measurement."
        />
      ) : null}

      <h2>Recent results</h2>
      {results.error ? <ErrorBox error={results.error} what="The results could not be read" /> : null}
      {results.loading && !results.data ? <Loading /> : null}
      {results.data ? (
        <Table
          caption="The probe's latest results (50 at most), newest first"
          columns={resultColumns}
          rows={Array.isArray(results.data) ? results.data : []}
          rowKey={(r) => keyOf(r)}
          testid="probe-results"
          empty="No result yet."
        />
      ) : null}
    </section>
  );
}
