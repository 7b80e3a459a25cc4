//! The mtr measurement: traceroute rounds over one flow, summarised per hop the way
//! mtr(8) and Globalping report them.
//!
//! RIPE Atlas has no mtr type; the result keeps the RIPE Atlas header (`fw`,
//! `prb_id`, `msm_id`, `timestamp`, `dst_addr`, ...) with `type: "mtr"`, and each
//! `result[]` entry is `{hop, from, stats, timings}`: `stats` has Globalping's names
//! (`min`, `avg`, `max`, `stDev`, `jMin`, `jAvg`, `jMax` in ms; `total`, `rcv`,
//! `drop`; `loss` in percent) and `timings` one `{rtt}` per round (`rtt` null when the
//! probe was lost).
//!
//! A round probes every TTL from `first_hop` up, one probe at a time, and ends at the
//! destination, at an error or after [`GAP_LIMIT`] silent hops; the later rounds stop
//! at the hop where the first reached the destination.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde_json::{json, Map, Value};
use vantage_core::definition::{Task, TracerouteOptions};

use crate::common::{self, ms};
use crate::ping::{round3, RunContext};
use crate::traceroute::{
    resolve_into, unreachable_err, Flow, ProbeReply, ReplyKind, TraceProber, GAP_LIMIT,
};

/// What one hop saw over the rounds.
#[derive(Default, Debug)]
struct Hop {
    /// Replies per responding address, to name the hop by the most frequent one.
    from: BTreeMap<IpAddr, u32>,
    /// One entry per round: the RTT in ms, or None when lost.
    rtts: Vec<Option<f64>>,
    /// What the hop reported besides replies: `err` (an ICMP error, in RIPE Atlas
    /// letters) or `mtu` (too big), as in a traceroute result.
    note: Option<(&'static str, Value)>,
}

/// Summary statistics of one hop's RTTs, with Globalping's field names.
pub fn stats(rtts: &[Option<f64>]) -> Value {
    let got: Vec<f64> = rtts.iter().flatten().copied().collect();
    let total = rtts.len();
    let rcv = got.len();
    let loss = if total == 0 {
        0.0
    } else {
        round3(100.0 * (total - rcv) as f64 / total as f64)
    };
    let mut s = json!({"total": total, "rcv": rcv, "drop": total - rcv, "loss": loss});
    if rcv == 0 {
        return s;
    }
    let n = rcv as f64;
    let avg = got.iter().sum::<f64>() / n;
    let var = got.iter().map(|r| (r - avg).powi(2)).sum::<f64>() / n;
    let min = got.iter().copied().fold(f64::INFINITY, f64::min);
    let max = got.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    s["min"] = json!(round3(min));
    s["avg"] = json!(round3(avg));
    s["max"] = json!(round3(max));
    s["stDev"] = json!(round3(var.sqrt()));
    // Jitter: the difference between consecutive received RTTs.
    let jitter: Vec<f64> = got.windows(2).map(|w| (w[1] - w[0]).abs()).collect();
    if !jitter.is_empty() {
        s["jMin"] = json!(round3(jitter.iter().copied().fold(f64::INFINITY, f64::min)));
        s["jAvg"] = json!(round3(jitter.iter().sum::<f64>() / jitter.len() as f64));
        s["jMax"] = json!(round3(
            jitter.iter().copied().fold(f64::NEG_INFINITY, f64::max)
        ));
    }
    s
}

/// Run one mtr measurement (`opts.packets` rounds).
pub async fn run_mtr<P: TraceProber>(
    prober: &P,
    task: &Task,
    opts: &TracerouteOptions,
    ctx: RunContext,
) -> Value {
    let mut m: Map<String, Value> = common::header(task, ctx, "mtr");
    m.insert("proto".into(), json!(opts.protocol.as_str()));
    m.insert("paris_id".into(), json!(opts.paris));
    m.insert("size".into(), json!(opts.size));
    m.insert("rounds".into(), json!(opts.packets));
    let Some(dst) = resolve_into(task, &mut m).await else {
        return Value::Object(m);
    };
    let flow = Flow::new(dst, opts);
    let mut hops: BTreeMap<u32, Hop> = BTreeMap::new();
    let mut last = opts.max_hops;
    let mut seq: u16 = 0;
    let mut error = None;
    'rounds: for round in 0..opts.packets {
        let mut gap = 0;
        for ttl in opts.first_hop..=last {
            seq = seq.wrapping_add(1);
            let reply = prober.probe(&flow.spec(opts, ttl, seq)).await;
            let hop = hops.entry(ttl).or_default();
            // A hop first seen in a later round lost the earlier rounds' probes.
            hop.rtts.resize(round as usize, None);
            match reply {
                ProbeReply::Reply {
                    from, rtt, kind, ..
                } => {
                    *hop.from.entry(from).or_default() += 1;
                    hop.rtts.push(Some(ms(rtt)));
                    gap = 0;
                    if kind != ReplyKind::TimeExceeded {
                        hop.note = match kind {
                            ReplyKind::Unreachable(code) => Some(("err", unreachable_err(code))),
                            ReplyKind::FragNeeded(mtu) => Some(("mtu", json!(mtu))),
                            ReplyKind::TimeExceeded | ReplyKind::Reached => None,
                        };
                        last = ttl;
                        break;
                    }
                }
                ProbeReply::Timeout => {
                    hop.rtts.push(None);
                    gap += 1;
                    if gap >= GAP_LIMIT && round == 0 {
                        last = ttl;
                        break;
                    }
                }
                ProbeReply::Error(e) => {
                    error = Some((ttl, e));
                    break 'rounds;
                }
            }
        }
    }
    let mut result: Vec<Value> = hops
        .into_iter()
        .filter(|(ttl, _)| *ttl <= last)
        .map(|(ttl, mut hop)| {
            hop.rtts.resize(opts.packets as usize, None);
            let from = hop
                .from
                .iter()
                .max_by_key(|(addr, n)| (**n, std::cmp::Reverse(**addr)))
                .map(|(addr, _)| addr.to_string());
            let mut e = json!({
                "hop": ttl,
                "from": from.map_or(Value::String("*".into()), Value::String),
                "stats": stats(&hop.rtts),
                "timings": hop.rtts.iter().map(|r| json!({"rtt": r})).collect::<Vec<_>>(),
            });
            if hop.from.len() > 1 {
                e["from_all"] = json!(hop.from.keys().map(|a| a.to_string()).collect::<Vec<_>>());
            }
            if let Some((key, value)) = hop.note {
                e[key] = value;
            }
            e
        })
        .collect();
    if let Some((ttl, e)) = error {
        result.push(json!({"hop": ttl, "error": e.to_string()}));
    }
    m.insert("result".into(), Value::Array(result));
    m.insert("endtime".into(), json!(crate::unix_now() as i64));
    Value::Object(m)
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::Duration;

    use super::*;
    use crate::traceroute::ProbeSpec;
    use vantage_core::definition::{Definition, TaskKind, Timing};

    /// Two routers then the destination; router 2 drops every other probe, and its
    /// RTT grows by 1 ms per probe.
    struct Lossy {
        calls: AtomicU32,
    }

    impl TraceProber for Lossy {
        async fn probe(&self, spec: &ProbeSpec) -> ProbeReply {
            let n = self.calls.fetch_add(1, Ordering::Relaxed);
            let reply = |last: u8, kind| ProbeReply::Reply {
                from: IpAddr::V4(Ipv4Addr::new(10, 0, 0, last)),
                rtt: Duration::from_micros(1000 * u64::from(spec.ttl) + u64::from(n) * 1000),
                size: 56,
                ttl: Some(60),
                kind,
                flags: None,
            };
            match spec.ttl {
                1 => reply(1, ReplyKind::TimeExceeded),
                2 if spec.seq.is_multiple_of(2) => ProbeReply::Timeout,
                2 => reply(2, ReplyKind::TimeExceeded),
                _ => reply(9, ReplyKind::Reached),
            }
        }
    }

    fn task() -> (Task, TracerouteOptions) {
        let d = Definition {
            kind: "mtr".into(),
            target: Some("10.0.0.9".into()),
            packets: Some(4),
            ..Default::default()
        };
        let t = d.validate(9, Timing::default()).expect("valid");
        let TaskKind::Mtr(o) = t.kind.clone() else {
            panic!("{t:?}")
        };
        (t, o)
    }

    #[tokio::test]
    async fn hops_get_loss_and_rtt_statistics_over_the_rounds() {
        let (t, o) = task();
        let p = Lossy {
            calls: AtomicU32::new(0),
        };
        let v = run_mtr(&p, &t, &o, RunContext { prb_id: 3 }).await;
        assert_eq!(v["type"], "mtr");
        assert_eq!(v["proto"], "ICMP");
        let hops = v["result"].as_array().expect("hops");
        assert_eq!(hops.len(), 3, "{v}");
        assert_eq!(hops[0]["from"], "10.0.0.1");
        assert_eq!(hops[0]["stats"]["loss"], 0.0);
        assert_eq!(hops[0]["stats"]["total"], 4);
        assert_eq!(hops[1]["from"], "10.0.0.2");
        // Sequence numbers 2, 5, 8, 11 go to hop 2: the even ones are lost.
        assert_eq!(hops[1]["stats"]["rcv"], 2);
        assert_eq!(hops[1]["stats"]["loss"], 50.0);
        assert_eq!(hops[1]["timings"].as_array().expect("timings").len(), 4);
        assert_eq!(hops[2]["from"], "10.0.0.9");
        assert_eq!(p.calls.load(Ordering::Relaxed), 12, "3 hops x 4 rounds");
    }

    #[test]
    fn statistics_follow_mtr_definitions() {
        let s = stats(&[Some(1.0), None, Some(3.0), Some(2.0)]);
        assert_eq!(s["total"], 4);
        assert_eq!(s["rcv"], 3);
        assert_eq!(s["drop"], 1);
        assert_eq!(s["loss"], 25.0);
        assert_eq!(s["min"], 1.0);
        assert_eq!(s["max"], 3.0);
        assert_eq!(s["avg"], 2.0);
        assert_eq!(s["stDev"], 0.816);
        assert_eq!(s["jMin"], 1.0);
        assert_eq!(s["jMax"], 2.0);
        assert_eq!(s["jAvg"], 1.5);
        let none = stats(&[None, None]);
        assert_eq!(none["loss"], 100.0);
        assert!(none.get("avg").is_none());
    }
}
