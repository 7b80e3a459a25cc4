// sslcert: the certificate chain (subject, issuer, validity) per probe, validity over
// time and the valid/invalid breakdown.
import { Bars, TimeChart, fmtNum } from "../../chart";
import { parseSslcert, type RawResult } from "../../ripe";
import { fmtTime, type Column } from "../../ui";
import { Lines, field, times, type ResultViewProps } from "./common";

export const sslcertColumns: Column<RawResult>[] = [
  {
    key: "valid",
    label: "Valid",
    render: (r) => {
      const s = parseSslcert(r);
      return s.error ? `error: ${s.error}` : s.valid === undefined ? "—" : s.valid ? "valid" : "NOT valid";
    },
  },
  { key: "ver", label: "TLS", render: (r) => parseSslcert(r).ver ?? "—" },
  { key: "rt", label: "Time (ms)", numeric: true, render: (r) => fmtNum(parseSslcert(r).rt, 3) },
  {
    key: "chain",
    label: "Chain (subject ← issuer, valid until)",
    render: (r) => (
      <Lines
        lines={parseSslcert(r).chain.map((c) => (c.error ? c.error : `${c.subject} ← ${c.issuer}; ${fmtTime(c.notBefore)} to ${fmtTime(c.notAfter)}`))}
        empty="no certificate"
      />
    ),
  },
];

export function SslcertView(props: ResultViewProps) {
  const s = props.summary;
  const b = s?.breakdown;
  return (
    <>
      <h2>Validity</h2>
      <Bars
        title="Certificates of all results"
        items={b && (b.valid !== undefined || b.invalid !== undefined) ? [{ label: "valid", n: b.valid ?? 0 }, { label: "not valid", n: b.invalid ?? 0 }] : []}
        testid="valid-breakdown"
      />
      <TimeChart
        title="TLS handshake time and share of valid certificates over time"
        x={times(s)}
        yLabel="ms"
        yRightLabel="valid (%)"
        testid="chart-sslcert"
        series={[
          { label: "time", values: field(s, "rt_avg"), unit: "ms" },
          { label: "valid", values: field(s, "valid", 100), unit: "%", right: true },
        ]}
        extra={[{ label: "Results", values: (s?.series ?? []).map((x) => x.n) }]}
      />
    </>
  );
}
