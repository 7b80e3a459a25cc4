// ntp: clock offset over time and per probe (with RTT, stratum, reference).
import { TimeChart, fmtNum } from "../../chart";
import { parseNtp, type RawResult } from "../../ripe";
import type { Column } from "../../ui";
import { field, times, type ResultViewProps } from "./common";

export const ntpColumns: Column<RawResult>[] = [
  { key: "offset", label: "Offset (ms)", numeric: true, render: (r) => fmtNum((parseNtp(r).offsetAvg ?? NaN) * 1000, 3) },
  { key: "rtt", label: "RTT (ms)", numeric: true, render: (r) => fmtNum((parseNtp(r).rttAvg ?? NaN) * 1000, 3) },
  { key: "stratum", label: "Stratum", numeric: true, render: (r) => fmtNum(parseNtp(r).stratum, 0) },
  { key: "ref", label: "Reference", render: (r) => parseNtp(r).refId ?? "—" },
  {
    key: "lost",
    label: "Lost / error",
    render: (r) => {
      const n = parseNtp(r);
      return n.error ?? String(n.lost);
    },
  },
];

export function NtpView(props: ResultViewProps) {
  const s = props.summary;
  return (
    <>
      <h2>Offset</h2>
      <TimeChart
        title="NTP offset and RTT over time (ms)"
        x={times(s)}
        yLabel="offset (ms)"
        yRightLabel="RTT (ms)"
        testid="chart-ntp"
        series={[
          { label: "offset", values: field(s, "offset_avg", 1000), unit: "ms" },
          { label: "RTT", values: field(s, "rtt_avg", 1000), unit: "ms", right: true },
        ]}
        extra={[{ label: "Results", values: (s?.series ?? []).map((b) => b.n) }]}
      />
    </>
  );
}
