// dns: answers and rcode per probe (decoded from each result's abuf), the rcode
// breakdown of all results, and response time over time.
import { Bars, TimeChart, fmtNum } from "../../chart";
import { parseDns, type RawResult } from "../../ripe";
import type { Column } from "../../ui";
import { Lines, field, times, type ResultViewProps } from "./common";

export const dnsColumns: Column<RawResult>[] = [
  { key: "rcode", label: "Rcode", render: (r) => [...new Set(parseDns(r).map((x) => x.rcode ?? (x.error ? "error" : "—")))].join(", ") },
  {
    key: "answers",
    label: "Server, time and answers",
    render: (r) => (
      <ul class="exchanges">
        {parseDns(r).map((x) => (
          <li>
            <span class="muted">
              {x.dst_addr ?? "probe's resolver"}: {x.rcode ?? "no answer"}
              {x.rt !== undefined ? `, ${fmtNum(x.rt, 3)} ms` : ""}
            </span>
            <Lines lines={[...x.answers.map((a) => `${a.name} ${a.ttl} ${a.type} ${a.data}`), ...(x.error ? [x.error] : [])]} empty="no answer records" />
          </li>
        ))}
      </ul>
    ),
  },
];

export function DnsView(props: ResultViewProps) {
  const s = props.summary;
  return (
    <>
      <h2>Response codes</h2>
      <Bars title="Rcodes of all results" items={(s?.breakdown.rcodes ?? []).map((r) => ({ label: r.rcode || "(no answer)", n: r.n }))} testid="rcode-breakdown" />
      <h2>Response time</h2>
      <TimeChart
        title="DNS response time over time (ms)"
        x={times(s)}
        yLabel="time (ms)"
        yRightLabel="errors"
        testid="chart-dns"
        series={[
          { label: "response time", values: field(s, "rt_avg"), unit: "ms" },
          { label: "errors", values: field(s, "errors"), right: true },
        ]}
        extra={[{ label: "Results", values: (s?.series ?? []).map((b) => b.n) }]}
      />
    </>
  );
}
