// traceroute and mtr: a hop table (hop, responders, RTTs, loss; mtr's best/avg/worst/
// stdev) for one probe's latest result, and a path view: the latest paths of several
// probes as a vertical chain of nodes, shared hops merged (SVG with text labels, and the
// same nodes as a table).
import { useState } from "preact/hooks";
import { TimeChart, fmtNum } from "../../chart";
import { mergePaths, parseHops, reached, str, type Hop, type PathGraph, type RawResult } from "../../ripe";
import { Table, type Column } from "../../ui";
import { Lines, ProbeLink, ProbePicker, field, times, type ResultViewProps } from "./common";

/** Paths drawn at most (the newest results of the first probes). */
export const MAX_PATHS = 25;

export const traceColumns: Column<RawResult>[] = [
  {
    key: "hops",
    label: "Hops",
    numeric: true,
    render: (r) => String(parseHops(r).length),
  },
  { key: "reached", label: "Reached", render: (r) => (reached(r, parseHops(r)) ? "yes" : "no") },
  {
    key: "last",
    label: "Last hop",
    render: (r) => {
      const h = parseHops(r);
      const last = h[h.length - 1];
      return last ? last.responders.map((x) => x.from).join(", ") : "—";
    },
  },
  {
    key: "rtt",
    label: "Last hop RTT (ms)",
    numeric: true,
    render: (r) => {
      const h = parseHops(r);
      return fmtNum(h[h.length - 1]?.avg, 3);
    },
  },
];

function HopTable(props: { hops: Hop[]; mtr: boolean; prb: number }) {
  const cols: Column<Hop>[] = [
    { key: "hop", label: "Hop", numeric: true, sort: (h) => h.hop, render: (h) => String(h.hop) },
    { key: "from", label: "Responders", render: (h) => <Lines lines={h.responders.map((r) => r.from)} /> },
    ...(props.mtr
      ? []
      : [
          {
            key: "rtts",
            label: "RTTs (ms)",
            render: (h: Hop) => <Lines lines={h.responders.filter((r) => r.rtts.length).map((r) => r.rtts.map((x) => x.toFixed(3)).join(", "))} empty="*" />,
          },
        ]),
    { key: "loss", label: "Loss (%)", numeric: true, sort: (h) => h.loss, render: (h) => `${(h.loss * 100).toFixed(0)} % (${h.lost}/${h.sent})` },
    { key: "best", label: "Best (ms)", numeric: true, render: (h) => fmtNum(h.best, 3) },
    { key: "avg", label: "Avg (ms)", numeric: true, render: (h) => fmtNum(h.avg, 3) },
    { key: "worst", label: "Worst (ms)", numeric: true, render: (h) => fmtNum(h.worst, 3) },
    ...(props.mtr ? [{ key: "stdev", label: "StDev (ms)", numeric: true, render: (h: Hop) => fmtNum(h.stdev, 3) }] : []),
    { key: "notes", label: "Notes", render: (h) => h.notes.join("; ") },
  ];
  return <Table caption={`Hops of probe ${props.prb}'s latest result`} columns={cols} rows={props.hops} rowKey={(h) => h.hop} testid="hop-table" />;
}

const NODE_W = 150;
const NODE_H = 24;
const ROW_H = 46;

/** The merged paths as an SVG: one row per hop, probes at the top. */
export function PathView(props: { graph: PathGraph; dst?: string }) {
  const rows = [...new Set(props.graph.nodes.map((n) => n.hop))].sort((a, b) => a - b);
  const rowOf = new Map(rows.map((h, i) => [h, i]));
  const byRow = new Map<number, string[]>();
  for (const n of props.graph.nodes) {
    const r = rowOf.get(n.hop) ?? 0;
    byRow.set(r, [...(byRow.get(r) ?? []), n.id]);
  }
  const widest = Math.max(1, ...[...byRow.values()].map((l) => l.length));
  const width = Math.max(600, widest * (NODE_W + 10) + 60);
  const height = rows.length * ROW_H + 10;
  const pos = new Map<string, { x: number; y: number }>();
  for (const [r, ids] of byRow) {
    const step = (width - 60) / ids.length;
    ids.forEach((id, i) => pos.set(id, { x: 50 + step * (i + 0.5), y: 5 + r * ROW_H }));
  }
  const short = (s: string) => (s.length > 22 ? `${s.slice(0, 21)}…` : s);
  return (
    <svg viewBox={`0 0 ${width} ${height}`} width={width} role="img" aria-label={`Paths of ${props.graph.nodes.filter((n) => n.hop === 0).length} probes, ${props.graph.nodes.length} nodes; the same nodes are in the table below`} data-testid="path-view">
      {rows.map((h, i) => (
        <text x={4} y={5 + i * ROW_H + NODE_H / 2 + 4}>
          {h === 0 ? "" : String(h)}
        </text>
      ))}
      {props.graph.edges.map((e) => {
        const a = pos.get(e.from);
        const b = pos.get(e.to);
        if (!a || !b) return null;
        return <path class="edge" d={`M${a.x},${a.y + NODE_H} C${a.x},${a.y + NODE_H + 14} ${b.x},${b.y - 14} ${b.x},${b.y}`} stroke-width={Math.min(5, 1 + e.probes.length / 2)} />;
      })}
      {props.graph.nodes.map((n) => {
        const p = pos.get(n.id);
        if (!p) return null;
        const cls = n.hop === 0 ? "node probe" : n.label === "*" ? "node silent" : n.id === props.dst ? "node dst" : "node";
        return (
          <g class={cls}>
            <title>{`${n.label} — hop ${n.hop}, probes ${n.probes.join(", ")}`}</title>
            <rect x={p.x - NODE_W / 2} y={p.y} width={NODE_W} height={NODE_H} rx={4} />
            <text x={p.x} y={p.y + NODE_H / 2 + 4} text-anchor="middle">
              {short(n.label)}
            </text>
          </g>
        );
      })}
    </svg>
  );
}

export function TracerouteView(props: ResultViewProps) {
  const s = props.summary;
  const mtr = props.msm.type === "mtr";
  const withResult = props.latest.filter((r) => Array.isArray(r.result));
  const probes = withResult.map((r) => Number(r.prb_id)).sort((a, b) => a - b);
  const [picked, setPicked] = useState<number | undefined>(undefined);
  const prb = picked !== undefined && probes.includes(picked) ? picked : probes[0];
  const chosen = withResult.find((r) => Number(r.prb_id) === prb);
  const drawn = [...withResult].sort((a, b) => Number(a.prb_id) - Number(b.prb_id)).slice(0, MAX_PATHS);
  const graph = mergePaths(drawn.map((r) => ({ prb_id: Number(r.prb_id), hops: parseHops(r) })));
  const dst = chosen ? str(chosen.dst_addr) : undefined;
  return (
    <>
      <h2>{mtr ? "mtr: hops" : "Hops"}</h2>
      {probes.length ? (
        <>
          <ProbePicker id="hop-probe" label="Probe" probes={probes} value={prb} onChange={(v) => setPicked(v)} />
          {chosen ? (
            <p>
              Probe <ProbeLink id={Number(chosen.prb_id)} /> to {str(chosen.dst_name) ?? ""} {dst ? `(${dst})` : ""}
              {mtr && chosen.rounds !== undefined ? `, ${String(chosen.rounds)} rounds` : ""}, protocol {str(chosen.proto) ?? "?"}
            </p>
          ) : null}
          {chosen ? <HopTable hops={parseHops(chosen)} mtr={mtr} prb={prb} /> : null}
          <h2>Paths</h2>
          <p>
            The latest path of {drawn.length} of {withResult.length} probes; hops that several probes share are drawn once.
          </p>
          <div class="paths table-wrap">
            <PathView graph={graph} dst={dst} />
          </div>
          <details>
            <summary>Path nodes as a table</summary>
            <Table
              caption="Path nodes"
              rows={graph.nodes.filter((n) => n.hop > 0)}
              rowKey={(n) => n.id}
              limit={1000}
              columns={[
                { key: "hop", label: "Hop", numeric: true, sort: (n) => n.hop, render: (n) => String(n.hop) },
                { key: "addr", label: "Address", sort: (n) => n.label, render: (n) => n.label },
                { key: "probes", label: "Probes through it", render: (n) => n.probes.join(", ") },
              ]}
            />
          </details>
        </>
      ) : (
        <p class="muted">No path yet.</p>
      )}
      <h2>Over time</h2>
      <TimeChart
        title="Last hop RTT and share of paths that reached the target"
        x={times(s)}
        yLabel="RTT (ms)"
        yRightLabel="reached (%)"
        testid="chart-trace"
        series={[
          { label: "last hop RTT", values: field(s, "rtt_avg"), unit: "ms" },
          { label: "reached", values: field(s, "reached", 100), unit: "%", right: true },
        ]}
        extra={[{ label: "Results", values: (s?.series ?? []).map((b) => b.n) }]}
      />
    </>
  );
}
