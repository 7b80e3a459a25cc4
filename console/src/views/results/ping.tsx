// ping: RTT over time (min/avg/max per bucket, aggregated or for one probe), loss, and
// the per-probe columns of the latest results.
import { TimeChart } from "../../chart";
import { parsePing, type RawResult } from "../../ripe";
import { setQuery } from "../../router";
import { Table, fmtTime, type Column } from "../../ui";
import { NumCell, ProbeLink, ProbePicker, field, times, type ResultViewProps } from "./common";

export const pingColumns: Column<RawResult>[] = [
  { key: "sent", label: "Sent", numeric: true, render: (r) => String(parsePing(r).sent) },
  { key: "rcvd", label: "Received", numeric: true, render: (r) => String(parsePing(r).rcvd) },
  {
    key: "loss",
    label: "Loss (%)",
    numeric: true,
    render: (r) => {
      const l = parsePing(r).loss;
      return <NumCell v={l === undefined ? undefined : l * 100} digits={1} />;
    },
  },
  { key: "min", label: "Min (ms)", numeric: true, render: (r) => <NumCell v={parsePing(r).min} testid={`rtt-min-${String(r.prb_id)}`} /> },
  { key: "avg", label: "Avg (ms)", numeric: true, render: (r) => <NumCell v={parsePing(r).avg} testid={`rtt-avg-${String(r.prb_id)}`} /> },
  { key: "max", label: "Max (ms)", numeric: true, render: (r) => <NumCell v={parsePing(r).max} testid={`rtt-max-${String(r.prb_id)}`} /> },
  {
    key: "rtts",
    label: "Replies (ms)",
    render: (r) => {
      const p = parsePing(r);
      return p.errors.length ? p.errors.join("; ") : p.rtts.map((x) => x.toFixed(3)).join(", ");
    },
  },
];

export function PingView(props: ResultViewProps) {
  const s = props.summary;
  const probes = (props.msm.probes ?? []).map((p) => p.id);
  const agg = props.aggregates?.rows ?? [];
  return (
    <>
      <h2>Round-trip time</h2>
      <ProbePicker
        id="ping-probe"
        label="Probe"
        probes={probes}
        value={props.prb}
        all="All probes (aggregated)"
        onChange={(v) => setQuery({ prb_id: v ?? null })}
      />
      <TimeChart
        title={props.prb === undefined ? "RTT over time, all probes (ms)" : `RTT over time, probe ${props.prb} (ms)`}
        x={times(s)}
        yLabel="RTT (ms)"
        yRightLabel="loss (%)"
        testid="chart-rtt"
        series={[
          { label: "min", values: field(s, "rtt_min"), unit: "ms" },
          { label: "avg", values: field(s, "rtt_avg"), unit: "ms" },
          { label: "max", values: field(s, "rtt_max"), unit: "ms" },
          { label: "loss", values: field(s, "loss", 100), unit: "%", right: true },
        ]}
        extra={[{ label: "Results", values: (s?.series ?? []).map((b) => b.n) }]}
      />
      {agg.length ? (
        <details>
          <summary>Per-probe RTT over the whole measurement ({agg.length} probes)</summary>
          <Table
            caption="Per-probe aggregates (all results)"
            rows={agg}
            rowKey={(r) => r.prb_id}
            limit={500}
            columns={[
              { key: "prb", label: "Probe", numeric: true, sort: (r) => r.prb_id, render: (r) => <ProbeLink id={r.prb_id} /> },
              { key: "n", label: "Results", numeric: true, sort: (r) => r.n, render: (r) => String(r.n) },
              { key: "min", label: "Min (ms)", numeric: true, sort: (r) => r.rtt_min ?? Infinity, render: (r) => <NumCell v={r.rtt_min} /> },
              { key: "avg", label: "Avg (ms)", numeric: true, sort: (r) => r.rtt_avg ?? Infinity, render: (r) => <NumCell v={r.rtt_avg} /> },
              { key: "max", label: "Max (ms)", numeric: true, sort: (r) => r.rtt_max ?? Infinity, render: (r) => <NumCell v={r.rtt_max} /> },
              { key: "loss", label: "Loss (%)", numeric: true, sort: (r) => r.loss ?? 0, render: (r) => <NumCell v={r.loss === null || r.loss === undefined ? null : r.loss * 100} digits={1} /> },
              { key: "last", label: "Last result", sort: (r) => r.last, render: (r) => fmtTime(r.last) },
            ]}
          />
        </details>
      ) : null}
    </>
  );
}
