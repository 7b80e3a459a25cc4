// Charts: a small wrapper around uPlot (loaded on first use, so the first paint of a page
// does not wait for it) for time series, always paired with the table of the same data
// (the chart's text alternative). Series differ in dash pattern and lightness as well as
// hue, so a chart reads in grey.
import { useEffect, useRef, useState } from "preact/hooks";
import type uPlot from "uplot";
import { Table, fmtTime, type Column } from "./ui";

export interface ChartSeries {
  label: string;
  /** One value per x; null where there is none. */
  values: (number | null)[];
  /** Unit of the values as shown in the table (e.g. "ms", "%"). */
  unit?: string;
  /** Line colour; the default palette reads in grey. */
  color?: string;
  dash?: number[];
  /** Plot on the right-hand axis (a second unit, e.g. loss next to RTT). */
  right?: boolean;
}

/** Dark-to-light, solid/dashed/dotted: distinguishable without colour. */
export const PALETTE: { color: string; dash?: number[] }[] = [
  { color: "#1e3a8a" },
  { color: "#b45309", dash: [6, 4] },
  { color: "#6b7280", dash: [2, 3] },
  { color: "#9f1239", dash: [10, 3, 2, 3] },
  { color: "#15803d", dash: [1, 2] },
];

/** A number for a table cell: fixed decimals, "—" for none. */
export function fmtNum(v: number | null | undefined, digits = 2): string {
  return v === null || v === undefined || !Number.isFinite(v) ? "—" : v.toFixed(digits);
}

type UPlotCtor = typeof uPlot;
let uplotLoad: Promise<UPlotCtor> | null = null;
function loadUPlot(): Promise<UPlotCtor> {
  uplotLoad ??= import("uplot").then((m) => m.default);
  return uplotLoad;
}

/** The x range shown: at least 10 minutes, centred on the data (one point would otherwise span years). */
export function xRange(min: number | null, max: number | null): [number | null, number | null] {
  if (min === null || max === null || !Number.isFinite(min) || !Number.isFinite(max)) return [min, max];
  const span = max - min;
  return span < 600 ? [min - (600 - span) / 2, max + (600 - span) / 2] : [min, max];
}

/** uPlot does not ask the range function when all x are equal: set the scale then. */
function widen(u: uPlot, x: number[]): void {
  if (x.length === 0) return;
  const [min, max] = xRange(x[0], x[x.length - 1]);
  if (min !== null && max !== null && x[x.length - 1] - x[0] < 600) u.setScale("x", { min, max });
}

interface Row {
  i: number;
}

/**
 * A time-series chart (x = Unix seconds) with its data table in a `<details>` below.
 * `title` is the chart's accessible name and the table's caption.
 */
export function TimeChart(props: {
  title: string;
  x: number[];
  series: ChartSeries[];
  /** Axis labels: left (and right, when a series is on the right). */
  yLabel: string;
  yRightLabel?: string;
  height?: number;
  testid?: string;
  /** Show the table open (e.g. when there are only a few points). */
  tableOpen?: boolean;
  /** Extra columns of the table (e.g. the count of results in each bucket). */
  extra?: { label: string; values: (number | null)[]; digits?: number }[];
}) {
  const box = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | null>(null);
  const [width, setWidth] = useState(0);
  const height = props.height ?? 240;
  const shape = props.series.map((s) => `${s.label}:${s.right ? "r" : "l"}`).join("|");
  const data = useRef<uPlot.AlignedData>([[]]);
  data.current = [props.x, ...props.series.map((s) => s.values)] as uPlot.AlignedData;

  useEffect(() => {
    const el = box.current;
    if (!el) return;
    setWidth(el.clientWidth);
    const ro = new ResizeObserver(() => setWidth(el.clientWidth));
    ro.observe(el);
    return () => ro.disconnect();
  }, []);

  // (Re)build the plot when the series change shape; destroy it on unmount.
  useEffect(() => {
    let cancelled = false;
    const el = box.current;
    if (!el || !width) return;
    void loadUPlot().then((UPlot) => {
      if (cancelled || !box.current) return;
      plot.current?.destroy();
      const opts: uPlot.Options = {
        width,
        height,
        legend: { show: true, live: true },
        // Times in UTC, as everywhere in the console.
        tzDate: (ts: number) => UPlot.tzDate(new Date(ts * 1000), "Etc/UTC"),
        // A right-hand axis in % (loss, reached, valid) always spans 0-100.
        scales: {
          // One point (or a few close ones) would make uPlot span years: show at least 10 minutes.
          x: { time: true, range: (_u: uPlot, min: number, max: number) => xRange(min, max) },
          y: {}, r: props.yRightLabel?.includes("%") ? { range: [0, 100] } : {} },
        axes: [
          { stroke: "#374151", grid: { stroke: "#e5e7eb" } },
          { label: props.yLabel, stroke: "#374151", grid: { stroke: "#e5e7eb" }, scale: "y" },
          ...(props.series.some((s) => s.right) ? [{ label: props.yRightLabel ?? "", side: 1 as const, scale: "r", stroke: "#374151", grid: { show: false } }] : []),
        ],
        series: [
          { label: "time", value: (_u: uPlot, v: number | null) => (v === null ? "—" : fmtTime(v)) },
          ...props.series.map((s, i) => ({
            label: s.unit ? `${s.label} (${s.unit})` : s.label,
            stroke: s.color ?? PALETTE[i % PALETTE.length].color,
            dash: s.dash ?? PALETTE[i % PALETTE.length].dash,
            width: 1.5,
            scale: s.right ? "r" : "y",
            spanGaps: false,
            points: { show: props.x.length < 60 },
          })),
        ],
      };
      // The data as it is now (it may have changed while uPlot was loading).
      const d = data.current;
      plot.current = new UPlot(opts, d, box.current);
      widen(plot.current, d[0] as number[]);
      // What the plot holds (tests compare it with the table).
      box.current.dataset.points = String(d[0].length);
    });
    return () => {
      cancelled = true;
    };
  }, [width, height, shape]);

  // New data: update in place.
  useEffect(() => {
    const p = plot.current;
    if (!p) return;
    p.setData(data.current);
    widen(p, props.x);
    if (box.current) box.current.dataset.points = String(props.x.length);
  }, [props.x, props.series]);

  useEffect(() => () => plot.current?.destroy(), []);

  const rows: Row[] = props.x.map((_, i) => ({ i }));
  const columns: Column<Row>[] = [
    { key: "t", label: "Time (UTC)", render: (r) => fmtTime(props.x[r.i]), sort: (r) => props.x[r.i] },
    ...(props.extra ?? []).map((e, k) => ({
      key: `e${k}`,
      label: e.label,
      numeric: true,
      render: (r: Row) => fmtNum(e.values[r.i], e.digits ?? 0),
      sort: (r: Row) => e.values[r.i] ?? -Infinity,
    })),
    ...props.series.map((s, k) => ({
      key: `s${k}`,
      label: s.unit ? `${s.label} (${s.unit})` : s.label,
      numeric: true,
      render: (r: Row) => fmtNum(s.values[r.i]),
      sort: (r: Row) => s.values[r.i] ?? -Infinity,
    })),
  ];
  return (
    <figure class="chart-figure" data-testid={props.testid}>
      <div class="chart" ref={box} role="img" aria-label={`${props.title}: chart of ${props.x.length} points; the same data is in the table below`} />
      {props.x.length === 0 ? <p class="loading">No data for this chart yet.</p> : null}
      <details open={props.tableOpen}>
        <summary>Data table: {props.title}</summary>
        <Table caption={props.title} columns={columns} rows={rows} rowKey={(r) => r.i} limit={500} />
      </details>
    </figure>
  );
}

/** A horizontal bar chart as plain HTML (bars are a picture of the counts beside them). */
export function Bars(props: { title: string; items: { label: string; n: number }[]; testid?: string }) {
  const max = Math.max(1, ...props.items.map((i) => i.n));
  const total = props.items.reduce((a, b) => a + b.n, 0);
  return (
    <table class="bars" data-testid={props.testid}>
      <caption>{props.title}</caption>
      <thead>
        <tr>
          <th scope="col">Value</th>
          <th scope="col" class="num">
            Results
          </th>
          <th scope="col" class="num">
            Share
          </th>
          <th scope="col">
            <span class="sr-only">Bar</span>
          </th>
        </tr>
      </thead>
      <tbody>
        {props.items.length === 0 ? (
          <tr>
            <td colSpan={4} class="empty">
              Nothing yet.
            </td>
          </tr>
        ) : (
          props.items.map((i) => (
            <tr>
              <th scope="row">{i.label}</th>
              <td class="num">{i.n}</td>
              <td class="num">{total ? `${((100 * i.n) / total).toFixed(1)} %` : "—"}</td>
              <td class="bar-cell" aria-hidden="true">
                <span class="bar" style={{ width: `${(100 * i.n) / max}%` }} />
              </td>
            </tr>
          ))
        )}
      </tbody>
    </table>
  );
}
