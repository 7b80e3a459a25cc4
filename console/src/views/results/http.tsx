// http: timings (time to connect, to first byte, total), sizes and status per probe
// and over time, and the status breakdown.
import { Bars, TimeChart, fmtNum } from "../../chart";
import { parseHttp, type RawResult } from "../../ripe";
import type { Column } from "../../ui";
import { Lines, field, times, type ResultViewProps } from "./common";

const each = (r: RawResult, f: (h: ReturnType<typeof parseHttp>[number]) => string) => <Lines lines={parseHttp(r).map(f)} />;

export const httpColumns: Column<RawResult>[] = [
  { key: "status", label: "Status", render: (r) => each(r, (h) => (h.error ? `error: ${h.error}` : `${h.res ?? "?"} (HTTP/${h.ver ?? "?"})`)) },
  { key: "ttc", label: "Connect (ms)", numeric: true, render: (r) => each(r, (h) => fmtNum(h.ttc, 3)) },
  { key: "ttfb", label: "First byte (ms)", numeric: true, render: (r) => each(r, (h) => fmtNum(h.ttfb, 3)) },
  { key: "rt", label: "Total (ms)", numeric: true, render: (r) => each(r, (h) => fmtNum(h.rt, 3)) },
  { key: "hsize", label: "Header (B)", numeric: true, render: (r) => each(r, (h) => fmtNum(h.hsize, 0)) },
  { key: "bsize", label: "Body (B)", numeric: true, render: (r) => each(r, (h) => fmtNum(h.bsize, 0)) },
  {
    key: "header",
    label: "Response header",
    render: (r) => {
      const lines = parseHttp(r).flatMap((h) => h.header);
      return lines.length ? (
        <details>
          <summary>{lines.length} lines</summary>
          <Lines lines={lines} />
        </details>
      ) : (
        "—"
      );
    },
  },
];

export function HttpView(props: ResultViewProps) {
  const s = props.summary;
  return (
    <>
      <h2>Timings</h2>
      <TimeChart
        title="HTTP timings over time (ms)"
        x={times(s)}
        yLabel="ms"
        yRightLabel="errors"
        testid="chart-http"
        series={[
          { label: "connect", values: field(s, "ttc_avg"), unit: "ms" },
          { label: "first byte", values: field(s, "ttfb_avg"), unit: "ms" },
          { label: "total", values: field(s, "rt_avg"), unit: "ms" },
          { label: "errors", values: field(s, "errors"), right: true },
        ]}
        extra={[{ label: "Results", values: (s?.series ?? []).map((b) => b.n) }]}
      />
      <h2>Status codes</h2>
      <Bars title="HTTP status of all results" items={(s?.breakdown.status ?? []).map((r) => ({ label: String(r.status), n: r.n }))} testid="status-breakdown" />
    </>
  );
}
