// Locate (`/locate?ip=`): where an address is, from the geolocation engines behind
// `/api/v1/locate/{ip}` (IPmap's shape): the reducer's best city, every candidate on the
// map sized by score and in a table with each engine's share, each engine's own answer
// (`/partials`), the anycast flag and its sites. Batch: many addresses, checked here
// first, located four at a time, shown as a table and downloadable as CSV.
import { useEffect, useMemo, useRef, useState } from "preact/hooks";
import { setQuery, type Route } from "../router";
import { Field, Table, type Column } from "../ui";
import { WorldMap, type MapPoint } from "../map/worldmap";
import { apiMessage, cityLabel, isIp, locationKey, parseAddresses, place, runPool, toCsv } from "./locate-lib";
import "./atlas.css";

/**
 * One candidate location (IPmap's location shape). At `scope: "country"` only the
 * country is known: `id`, `cityName` and `stateAnsiCode` are null, and the coordinates
 * are a point in the country (its most populous city), not a location.
 */
export interface Location {
  id: number | null;
  cityName: string | null;
  stateAnsiCode?: string | null;
  countryCodeAlpha2: string;
  latitude: number;
  longitude: number;
  score: number;
  contributions?: Record<string, { score: number; weight: number }>;
  scope?: "city" | "country";
}


export interface LocateAnswer {
  ip: string;
  anycast: boolean;
  locations: Location[];
}

export interface Partial {
  engine: string;
  weight: number;
  scope?: string;
  error?: string | null;
  locations: Location[];
}

/** Addresses located at once in a batch. */
export const BATCH_CONCURRENCY = 4;

type Outcome<T> = { ok: true; data: T } | { ok: false; status: number; message: string };

/** GET a locate path; an error answer becomes its message (whichever error shape it has). */
async function fetchLocate<T>(path: string, signal?: AbortSignal): Promise<Outcome<T>> {
  let resp: Response;
  try {
    resp = await fetch(path, { headers: { Accept: "application/json" }, signal });
  } catch (e) {
    if ((e as Error).name === "AbortError") throw e;
    return { ok: false, status: 0, message: "the vantage API cannot be reached; try again" };
  }
  const text = await resp.text();
  let body: unknown = text;
  try {
    body = text ? JSON.parse(text) : null;
  } catch {
    // not JSON: keep the text
  }
  if (!resp.ok) return { ok: false, status: resp.status, message: apiMessage(resp.status, body) };
  return { ok: true, data: body as T };
}

const engineCount = (l: Location): string => {
  const k = Object.keys(l.contributions ?? {}).length;
  return `${k} engine${k === 1 ? "" : "s"}`;
};
const score = (n: number): string => (Number.isInteger(n) ? String(n) : n.toFixed(1));

function Single(props: { ip: string; onReady: (ready: boolean) => void }) {
  const [state, setState] = useState<{ ip: string; answer?: Outcome<LocateAnswer>; partials?: Outcome<{ partials: Partial[] }> }>({ ip: "" });
  const ip = props.ip;
  const wellFormed = ip !== "" && isIp(ip);
  useEffect(() => {
    if (!wellFormed) return;
    const ctl = new AbortController();
    setState({ ip });
    const enc = encodeURIComponent(ip);
    Promise.all([fetchLocate<LocateAnswer>(`/api/v1/locate/${enc}`, ctl.signal), fetchLocate<{ partials: Partial[] }>(`/api/v1/locate/${enc}/partials`, ctl.signal)]).then(
      ([answer, partials]) => setState({ ip, answer, partials }),
      () => undefined,
    );
    return () => ctl.abort();
  }, [ip, wellFormed]);

  const answer = state.ip === ip ? state.answer : undefined;
  const settled = !ip || !wellFormed || answer !== undefined;
  useEffect(() => props.onReady(settled), [settled]);
  const partials = state.ip === ip && state.partials?.ok ? state.partials.data.partials ?? [] : [];
  const locations = answer?.ok ? answer.data.locations ?? [] : [];
  const sites = partials.find((p) => p.engine === "anycast")?.locations ?? [];
  const engines = useMemo(() => [...new Set(locations.flatMap((l) => Object.keys(l.contributions ?? {})))].sort(), [locations]);
  const points = useMemo<MapPoint[]>(() => {
    const max = Math.max(1e-9, ...locations.map((l) => l.score));
    const pts: MapPoint[] = locations.map((l, i) => ({
      id: locationKey(l),
      lat: l.latitude,
      lon: l.longitude,
      cls: i === 0 ? "best" : "candidate",
      r: 3 + 12 * Math.sqrt(Math.max(0, l.score) / max),
      label: `${place(l)} · score ${score(l.score)}`,
    }));
    // Candidates drawn smallest last so a small one is not hidden under a large one; the best on top.
    pts.sort((a, b) => (a.cls === "best" ? 1 : b.cls === "best" ? -1 : (b.r ?? 0) - (a.r ?? 0)));
    for (const s of sites) pts.push({ id: `s${s.id}`, lat: s.latitude, lon: s.longitude, cls: "site", r: 4, label: `Anycast site: ${place(s)}` });
    return pts;
  }, [locations, sites]);

  if (!ip) return null;
  if (!wellFormed)
    return (
      <p class="errorbox" role="alert" data-testid="error">
        "{ip}" is not an IPv4 or IPv6 address. Write one such as 193.0.14.129 or 2001:67c:2e8::2.
      </p>
    );
  if (!answer) return <p class="loading" aria-live="polite">Locating {ip}…</p>;
  if (!answer.ok)
    return (
      <p class="errorbox" role="alert" data-testid="error">
        {answer.status === 503 ? "Geolocation is not available: " : `${ip} could not be located: `}
        {answer.message}
      </p>
    );
  const best = locations[0];
  const columns: Column<Location>[] = [
    { key: "rank", label: "#", numeric: true, render: (l) => String(locations.indexOf(l) + 1) },
    { key: "city", label: "City", sort: (l) => l.cityName ?? "", render: (l) => cityLabel(l) },
    { key: "region", label: "Region", render: (l) => l.stateAnsiCode ?? "" },
    { key: "country", label: "Country", sort: (l) => l.countryCodeAlpha2, render: (l) => l.countryCodeAlpha2 },
    { key: "coords", label: "Lat, lon", render: (l) => `${l.latitude.toFixed(3)}, ${l.longitude.toFixed(3)}` },
    { key: "score", label: "Total score", numeric: true, sort: (l) => l.score, render: (l) => score(l.score) },
    ...engines.map<Column<Location>>((e) => ({
      key: `e-${e}`,
      label: e,
      numeric: true,
      sort: (l) => l.contributions?.[e]?.score ?? -1,
      render: (l) => {
        const c = l.contributions?.[e];
        return c ? `${c.score} × ${score(c.weight)}` : "—";
      },
    })),
  ];
  return (
    <div>
      <h2>
        {ip}: <span data-testid="locate-best">{best ? cityLabel(best) : "no location"}</span>
        {best ? `, ${[best.stateAnsiCode, best.countryCodeAlpha2].filter((x) => x).join(", ")}` : ""}
      </h2>
      <p>
        Anycast:{" "}
        <strong data-testid="locate-anycast" class={answer.data.anycast ? "flag-yes" : undefined}>
          {answer.data.anycast ? "yes" : "no"}
        </strong>
        {answer.data.anycast ? ` — the anycast engine found ${sites.length} site${sites.length === 1 ? "" : "s"} that cannot be one place.` : ""}
        {best ? ` · best score ${score(best.score)}, from ${engineCount(best)}.` : "."}
      </p>
      {points.length ? <WorldMap points={points} title={`Candidate locations of ${ip}, sized by score; the tables below list them`} height={380} fit={40} /> : null}
      <Table caption="Candidate cities, best first (engine columns: score × weight)" columns={columns} rows={locations} rowKey={locationKey} testid="locate-candidates" empty="No engine placed this address." />
      <h2>Each engine's answer</h2>
      {state.partials && !state.partials.ok ? (
        <p class="errorbox" role="alert">
          {state.partials.message}
        </p>
      ) : null}
      <Table
        caption="Partial answers per engine"
        columns={[
          { key: "engine", label: "Engine", render: (p: Partial) => p.engine },
          { key: "weight", label: "Weight", numeric: true, render: (p: Partial) => score(p.weight) },
          { key: "scope", label: "Scope", render: (p: Partial) => p.scope ?? "city" },
          {
            key: "cands",
            label: "Candidates (score)",
            render: (p: Partial) =>
              p.error ? <span class="state-bad">error: {p.error}</span> : p.locations.length ? p.locations.slice(0, 8).map((l) => `${place(l)} (${l.score})`).join("; ") + (p.locations.length > 8 ? ` … +${p.locations.length - 8}` : "") : "no candidate",
          },
        ]}
        rows={partials}
        rowKey={(p) => p.engine}
        testid="locate-partials"
        empty="No engine answered."
      />
      {sites.length ? (
        <Table
          caption="Anycast sites"
          columns={[
            { key: "city", label: "Site", render: (l: Location) => place(l) },
            { key: "coords", label: "Lat, lon", render: (l: Location) => `${l.latitude.toFixed(3)}, ${l.longitude.toFixed(3)}` },
            { key: "score", label: "Score", numeric: true, render: (l: Location) => score(l.score) },
          ]}
          rows={sites}
          rowKey={locationKey}
          testid="locate-sites"
        />
      ) : null}
    </div>
  );
}

interface BatchRow {
  ip: string;
  state: "waiting" | "done" | "error";
  best?: Location;
  anycast?: boolean;
  candidates?: number;
  error?: string;
}

function Batch() {
  const [text, setText] = useState("");
  const [invalid, setInvalid] = useState<string[]>([]);
  const [rows, setRows] = useState<BatchRow[]>([]);
  const [running, setRunning] = useState(false);
  const [csvUrl, setCsvUrl] = useState<string | null>(null);
  const run = useRef(0);
  useEffect(() => () => void (csvUrl && URL.revokeObjectURL(csvUrl)), [csvUrl]);

  const start = async () => {
    const { valid, invalid: bad } = parseAddresses(text);
    setInvalid(bad);
    if (valid.length === 0) return;
    const me = ++run.current;
    const list: BatchRow[] = valid.map((ip) => ({ ip, state: "waiting" }));
    setRows(list);
    setCsvUrl(null);
    setRunning(true);
    const done = await runPool(
      valid,
      BATCH_CONCURRENCY,
      async (ip): Promise<BatchRow> => {
        const r = await fetchLocate<LocateAnswer>(`/api/v1/locate/${encodeURIComponent(ip)}`);
        if (!r.ok) return { ip, state: "error", error: r.message };
        return { ip, state: "done", best: r.data.locations?.[0], anycast: r.data.anycast, candidates: r.data.locations?.length ?? 0 };
      },
      (i, row) => {
        if (run.current !== me) return;
        list[i] = row;
        setRows([...list]);
      },
    );
    if (run.current !== me) return;
    setRunning(false);
    const csv = toCsv(
      ["ip", "city", "region", "country", "latitude", "longitude", "score", "anycast", "candidates", "error"],
      done.map((r) => [r.ip, r.best?.cityName, r.best?.stateAnsiCode, r.best?.countryCodeAlpha2, r.best?.latitude, r.best?.longitude, r.best?.score, r.anycast, r.candidates, r.error]),
    );
    setCsvUrl(URL.createObjectURL(new Blob([csv], { type: "text/csv;charset=utf-8" })));
  };

  const finished = rows.filter((r) => r.state !== "waiting").length;
  return (
    <div class="batch">
      <h2>Batch</h2>
      <form
        onSubmit={(e) => {
          e.preventDefault();
          void start();
        }}
      >
        <Field id="batch-ips" label="Addresses (one per line, or separated by commas)" error={invalid.length ? `${invalid.length} entr${invalid.length === 1 ? "y is" : "ies are"} not an IP address: ${invalid.slice(0, 20).join(", ")}${invalid.length > 20 ? " …" : ""}` : undefined}>
          <textarea id="batch-ips" rows={6} value={text} onInput={(e) => setText(e.currentTarget.value)} placeholder={"193.0.14.129\n2001:67c:2e8::2"} />
        </Field>
        <p>
          <button type="submit" disabled={running}>
            Locate all
          </button>
        </p>
      </form>
      {invalid.length ? (
        <ul class="errors-list" data-testid="batch-invalid" aria-label="Entries that are not addresses">
          {invalid.map((s) => (
            <li>{s}</li>
          ))}
        </ul>
      ) : null}
      {rows.length ? (
        <>
          <p aria-live="polite">
            <label for="batch-progress">Progress: </label>
            <progress id="batch-progress" class="progress" max={rows.length} value={finished} /> <span data-testid="batch-progress">{`${finished} of ${rows.length}`}</span>
            {csvUrl ? (
              <>
                {" · "}
                <a href={csvUrl} download="vantage-locate.csv" data-testid="batch-csv">
                  Download CSV
                </a>
              </>
            ) : null}
          </p>
          <Table
            caption="Batch results"
            columns={[
              { key: "ip", label: "Address", render: (r: BatchRow) => r.ip },
              { key: "city", label: "Best city", render: (r: BatchRow) => (r.state === "waiting" ? "…" : r.best ? place(r.best) : r.error ? "" : "no location") },
              { key: "score", label: "Score", numeric: true, render: (r: BatchRow) => (r.best ? score(r.best.score) : "") },
              { key: "anycast", label: "Anycast", render: (r: BatchRow) => (r.anycast === undefined ? "" : r.anycast ? "yes" : "no") },
              { key: "error", label: "Error", render: (r: BatchRow) => (r.error ? <span class="state-bad">{r.error}</span> : "") },
            ]}
            rows={rows}
            rowKey={(r) => r.ip}
            testid="batch-table"
          />
        </>
      ) : null}
    </div>
  );
}

export function LocateView(props: { route: Route }) {
  const ip = (props.route.query.get("ip") ?? "").trim();
  const [text, setText] = useState(ip);
  useEffect(() => setText(ip), [ip]);
  const [error, setError] = useState<string | undefined>(undefined);
  // Ready when the answer (or its error) for the current address is on the page.
  const [ready, setReady] = useState(false);
  return (
    <section data-view="locate" data-ready={ready ? "1" : "0"}>
      <h1>Locate an address</h1>
      <form
        class="filters"
        role="search"
        aria-label="Locate an address"
        onSubmit={(e) => {
          e.preventDefault();
          const v = text.trim();
          if (!isIp(v)) {
            setError(`"${v}" is not an IPv4 or IPv6 address; write one such as 193.0.14.129 or 2001:67c:2e8::2`);
            return;
          }
          setError(undefined);
          setQuery({ ip: v });
        }}
      >
        <Field id="locate-ip" label="IP address" error={error}>
          <input id="locate-ip" type="text" value={text} onInput={(e) => setText(e.currentTarget.value)} autoComplete="off" spellcheck={false} placeholder="193.0.14.129" aria-invalid={error ? "true" : undefined} />
        </Field>
        <button type="submit">Locate</button>
      </form>
      <Single ip={ip} onReady={setReady} />
      <Batch />
    </section>
  );
}
