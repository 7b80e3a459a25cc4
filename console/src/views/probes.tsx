// The probe map (`/`, `/probes`): every probe of `/api/vantage/v1/probes/map` on the world
// map, shaped and coloured by status (anchors as squares), filtered by country, ASN, tag,
// status and anchor from the query string (a filtered view is a link). The answer is
// fetched once; filters run in memory over stable point objects, so 10,000 probes stay
// fluid. The count per country and the probe list are the map's text alternative.
import { useEffect, useMemo, useState } from "preact/hooks";
import { getJSON, useApi, type ApiError } from "../api";
import { navigate, setQuery, type Route } from "../router";
import { ErrorBox, Field, Link, Loading, Table, type Column } from "../ui";
import { WorldMap, type MapPoint } from "../map/worldmap";
import { DebouncedInput } from "./debounced";
import {
  STATUS_NAMES,
  countByCountry,
  filterProbes,
  parseAsn,
  readFilters,
  readMap,
  statusClass,
  tagCounts,
  type CountryCount,
  type MapAnswer,
  type MapProbe,
} from "./probes-data";
import "./atlas.css";

export const MAP_PATH = "/api/vantage/v1/probes/map";
/** Probe rows listed at first; "show more" adds as many. */
const PAGE = 100;

function label(p: MapProbe): string {
  const asn = p.asn !== null ? ` · AS${p.asn}` : "";
  return `Probe ${p.id} · ${p.country || "??"}${asn} · ${STATUS_NAMES[p.status] ?? "?"}${p.anchor ? " · anchor" : ""}`;
}

/**
 * The map answer, asked for as soon as this module is evaluated when the page opened is
 * the map (before the first render and its effects: the biggest request of the page
 * starts earlier). Used once; later visits and failures go through `useApi` (retries).
 */
let early: Promise<MapAnswer> | null = /^\/(probes\/?)?$/.test(location.pathname) ? getJSON<MapAnswer>(MAP_PATH) : null;
early?.catch(() => undefined);

function useProbeMap(): { data?: MapAnswer; error?: ApiError } {
  const [pre, setPre] = useState<MapAnswer | undefined>(undefined);
  const [fallback, setFallback] = useState(early === null);
  useEffect(() => {
    const p = early;
    if (!p) return;
    early = null;
    p.then(setPre, () => setFallback(true));
  }, []);
  const api = useApi<MapAnswer>(fallback ? MAP_PATH : null);
  return { data: pre ?? api.data, error: api.error };
}

let marked = false;
/** Performance marks for the bench: the first drawing with the data (once per page load). */
function markDrawn(n: number, loaded: boolean): void {
  if (marked || !loaded) return;
  marked = true;
  performance.mark("probes-drawn", { detail: { points: n } });
  requestAnimationFrame(() => performance.mark("probes-painted"));
}

export function ProbesView(props: { route: Route }) {
  const map = useProbeMap();
  const probes = useMemo(() => {
    if (!map.data) return [];
    if (!marked) performance.mark("probes-data");
    return readMap(map.data);
  }, [map.data]);
  // One point object per probe for the life of the answer: the map caches projections per object.
  const pointOf = useMemo(() => {
    const m = new Map<number, MapPoint>();
    for (const p of probes) {
      if (p.lat === null || p.lon === null) continue;
      m.set(p.id, { id: p.id, lat: p.lat, lon: p.lon, cls: statusClass(p.status, p.anchor), r: p.anchor ? 3.5 : 3, label: label(p) });
    }
    return m;
  }, [probes]);
  const qs = props.route.query.toString();
  const filters = useMemo(() => readFilters(props.route.query), [qs]);
  const filtered = useMemo(() => filterProbes(probes, filters), [probes, filters]);
  const points = useMemo(() => {
    const out: MapPoint[] = [];
    for (const p of filtered) {
      const pt = pointOf.get(p.id);
      if (pt) out.push(pt);
    }
    return out;
  }, [filtered, pointOf]);
  const allCountries = useMemo(() => countByCountry(probes), [probes]);
  const countries = useMemo(() => countByCountry(filtered), [filtered]);
  const tags = useMemo(() => tagCounts(probes), [probes]);
  const [limit, setLimit] = useState({ qs, n: PAGE });
  const shownLimit = limit.qs === qs ? limit.n : PAGE;

  const q = props.route.query;
  const asnText = q.get("asn") ?? "";
  const asnError = asnText.trim() !== "" && parseAsn(asnText) === null ? `"${asnText}" is not an AS number; write 64500 or AS64500` : undefined;
  const loaded = map.data !== undefined;

  const countryColumns: Column<CountryCount>[] = [
    {
      key: "country",
      label: "Country",
      sort: (r) => r.country,
      render: (r) =>
        r.country ? (
          <button type="button" class="linklike" onClick={() => setQuery({ country: r.country })} title={`Show only ${r.country}`}>
            {r.country}
          </button>
        ) : (
          "(none)"
        ),
    },
    { key: "total", label: "Probes", numeric: true, sort: (r) => r.total, render: (r) => <span data-testid={`country-count-${r.country || "none"}`}>{r.total}</span> },
    { key: "connected", label: "Connected", numeric: true, sort: (r) => r.connected, render: (r) => String(r.connected) },
    { key: "disconnected", label: "Disconnected", numeric: true, sort: (r) => r.disconnected, render: (r) => String(r.disconnected) },
    { key: "anchors", label: "Anchors", numeric: true, sort: (r) => r.anchors, render: (r) => String(r.anchors) },
  ];
  const probeColumns: Column<MapProbe>[] = [
    { key: "id", label: "Probe", numeric: true, sort: (p) => p.id, render: (p) => <Link href={`/probes/${p.id}`}>{String(p.id)}</Link> },
    { key: "country", label: "Country", sort: (p) => p.country, render: (p) => p.country },
    { key: "asn", label: "ASN (IPv4)", numeric: true, sort: (p) => p.asn ?? -1, render: (p) => (p.asn !== null ? `AS${p.asn}` : "—") },
    { key: "status", label: "Status", sort: (p) => p.status, render: (p) => <span class={`st st-${statusClass(p.status, false)}`}>{STATUS_NAMES[p.status] ?? String(p.status)}</span> },
    { key: "anchor", label: "Anchor", sort: (p) => (p.anchor ? 1 : 0), render: (p) => (p.anchor ? "yes" : "") },
    { key: "location", label: "Location", render: (p) => (p.lat !== null && p.lon !== null ? `${p.lat.toFixed(2)}, ${p.lon.toFixed(2)}` : "not known") },
    { key: "tags", label: "Tags", render: (p) => p.tags.join(", ") },
  ];

  return (
    <section data-view="probes" data-ready={loaded || map.error ? "1" : "0"}>
      <h1>Probes</h1>
      <form class="filters" role="search" aria-label="Filter probes" onSubmit={(e) => e.preventDefault()}>
        <Field id="f-country" label="Country">
          <select id="f-country" value={filters.country} onChange={(e) => setQuery({ country: e.currentTarget.value })}>
            <option value="">Any country</option>
            {allCountries
              .filter((c) => c.country)
              .map((c) => (
                <option value={c.country}>
                  {c.country} ({c.total})
                </option>
              ))}
            {filters.country && !allCountries.some((c) => c.country === filters.country) ? <option value={filters.country}>{filters.country} (0)</option> : null}
          </select>
        </Field>
        <Field id="f-asn" label="ASN" error={asnError}>
          <DebouncedInput id="f-asn" value={asnText} onCommit={(v) => setQuery({ asn: v.trim() })} placeholder="AS64500" size={10} invalid={!!asnError} describedBy={asnError ? "f-asn-error" : undefined} />
        </Field>
        <Field id="f-tag" label="Tags (user or system; all must match)">
          <DebouncedInput id="f-tag" value={q.get("tag") ?? ""} onCommit={(v) => setQuery({ tag: v.trim() })} list="tag-list" placeholder="system-ipv4-works" />
          <datalist id="tag-list">
            {tags.slice(0, 200).map(([t]) => (
              <option value={t} />
            ))}
          </datalist>
        </Field>
        <Field id="f-status" label="Status">
          <select id="f-status" value={filters.status === null ? "" : String(filters.status)} onChange={(e) => setQuery({ status: e.currentTarget.value })}>
            <option value="">Any status</option>
            {[1, 2, 0, 3].map((s) => (
              <option value={String(s)}>{STATUS_NAMES[s]}</option>
            ))}
          </select>
        </Field>
        <Field id="f-anchor" label="Anchors">
          <select id="f-anchor" value={filters.anchor === null ? "" : filters.anchor ? "1" : "0"} onChange={(e) => setQuery({ anchor: e.currentTarget.value })}>
            <option value="">Anchors and probes</option>
            <option value="1">Anchors only</option>
            <option value="0">No anchors</option>
          </select>
        </Field>
        <button type="button" class="secondary" onClick={() => setQuery({ country: "", asn: "", tag: "", status: "", anchor: "" })}>
          Clear filters
        </button>
      </form>

      {map.error && !loaded ? <ErrorBox error={map.error} what="The probe list could not be read" /> : null}
      {!loaded && !map.error ? <Loading /> : null}

      <p class="count" aria-live="polite">
        Showing <strong data-testid="probe-count">{filtered.length}</strong> of <span data-testid="probe-total">{probes.length}</span> probes
        {filtered.length !== points.length ? ` (${filtered.length - points.length} without a location are not on the map)` : ""}.
      </p>

      <WorldMap
        points={points}
        title={`Map of ${points.length} probes; the tables below list them`}
        onPick={(id) => navigate(`/probes/${id}`)}
        onDrawn={(n) => markDrawn(n, loaded)}
        maxHeight={560}
      />

      <div class="split">
        <Table caption="Probes per country" columns={countryColumns} rows={countries} rowKey={(r) => r.country} testid="country-table" empty="No probe matches the filters." />
        <div>
          <Table
            caption="Probes"
            columns={probeColumns}
            rows={filtered}
            rowKey={(p) => p.id}
            limit={shownLimit}
            testid="probe-table"
            empty="No probe matches the filters."
          />
          {filtered.length > shownLimit ? (
            <button type="button" class="secondary" onClick={() => setLimit({ qs, n: shownLimit + PAGE })}>
              Show {Math.min(PAGE, filtered.length - shownLimit)} more
            </button>
          ) : null}
        </div>
      </div>
    </section>
  );
}
