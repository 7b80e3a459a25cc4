//! Timestamp accuracy: measured RTT minus the configured delay (p50, p99 of the absolute
//! error) for vantage ping and traceroute, next to iputils `ping` and `traceroute`
//! run in the same namespace against the same target.
//!
//! Needs root. The target is 20 ms away: `tc netem` on a veth pair where the kernel has
//! it, otherwise the TUN echo responder (`tests/tun_responder.py`, real-time priority),
//! whose own jitter then counts against every tool alike.
//!
//! ```sh
//! cargo build --release -p vantage-probe
//! cargo run --release -p vantage-probe --example rtt_accuracy -- [samples]
//! ```

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

/// The path delay in ms: the second argument, 20 by default. Below 10 ms iputils prints
/// two decimals instead of one, so its own error shows.
fn delay_ms() -> f64 {
    std::env::args()
        .nth(2)
        .and_then(|a| a.parse().ok())
        .unwrap_or(20.0)
}
const RESPONDER: &str = include_str!("../tests/tun_responder.py");

fn sh(ns: &str, cmd: &str) -> String {
    let out = Command::new("ip")
        .args(["netns", "exec", ns, "sh", "-c", cmd])
        .output()
        .expect("spawn");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        return f64::NAN;
    }
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i]
}

fn report(name: &str, rtts: &[f64]) {
    let mut err: Vec<f64> = rtts.iter().map(|r| (r - delay_ms()).abs()).collect();
    let n = err.len();
    let p50 = percentile(&mut err, 0.5);
    let p99 = percentile(&mut err, 0.99);
    let mut sorted = rtts.to_vec();
    let med = percentile(&mut sorted, 0.5);
    println!("| {name} | {n} | {med:.3} | {p50:.3} | {p99:.3} |");
}

fn main() {
    let samples: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(200);
    let probe =
        std::env::var("VANTAGE_PROBE").unwrap_or_else(|_| "target/release/vantage-probe".into());
    let ns = format!("vtbench{}", std::process::id() % 100_000);
    assert!(
        Command::new("ip")
            .args(["netns", "add", &ns])
            .status()
            .expect("ip")
            .success(),
        "needs root"
    );
    let _ = Command::new("ip")
        .args(["-n", &ns, "link", "set", "lo", "up"])
        .status();
    let mut responder = Command::new("ip")
        .args([
            "netns",
            "exec",
            &ns,
            "chrt",
            "-f",
            "50",
            "python3",
            "-c",
            RESPONDER,
            &delay_ms().to_string(),
            "0",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .expect("responder");
    let mut line = String::new();
    if let Some(out) = responder.stdout.take() {
        let _ = BufReader::new(out).read_line(&mut line);
    }
    let target = "10.201.9.2";
    println!(
        "target {target}: TUN echo responder, {} ms; {samples} samples per tool\n",
        delay_ms()
    );
    println!("| tool | samples | median RTT ms | p50 abs error ms | p99 abs error ms |");
    println!("|---|---|---|---|---|");

    // vantage ping: runs of 16 packets, 50 ms apart.
    let dir = std::env::temp_dir().join(format!("{ns}-defs"));
    let _ = std::fs::create_dir_all(&dir);
    let run = |def: &str| -> serde_json::Value {
        let f = dir.join("def.json");
        std::fs::write(&f, def).expect("write");
        let out = sh(&ns, &format!("{probe} measure --once {}", f.display()));
        serde_json::from_str(&out).unwrap_or(serde_json::Value::Null)
    };
    let mut v_ping = Vec::new();
    while v_ping.len() < samples {
        let r = run(&format!(
            r#"{{"type":"ping","target":"{target}","packets":16,"packet_interval":50}}"#
        ));
        if let Some(a) = r["result"].as_array() {
            v_ping.extend(a.iter().filter_map(|x| x["rtt"].as_f64()));
        } else {
            eprintln!("vantage ping failed: {r}");
            break;
        }
    }
    report("vantage ping", &v_ping);

    // iputils ping.
    let out = sh(&ns, &format!("ping -n -c {samples} -i 0.05 {target}"));
    let i_ping: Vec<f64> = out
        .lines()
        .filter_map(|l| l.split("time=").nth(1))
        .filter_map(|t| t.split_whitespace().next()?.parse().ok())
        .collect();
    report("iputils ping", &i_ping);

    // vantage traceroute (ICMP; the responder is hop 1), 16 packets per run.
    let mut v_tr = Vec::new();
    while v_tr.len() < samples {
        let r = run(&format!(
            r#"{{"type":"traceroute","target":"{target}","protocol":"ICMP","packets":16,"max_hops":1}}"#
        ));
        let before = v_tr.len();
        if let Some(hops) = r["result"].as_array() {
            for h in hops {
                if let Some(ps) = h["result"].as_array() {
                    v_tr.extend(ps.iter().filter_map(|p| p["rtt"].as_f64()));
                }
            }
        }
        if v_tr.len() == before {
            eprintln!("vantage traceroute gave nothing: {r}");
            break;
        }
    }
    report("vantage traceroute -I", &v_tr);

    // traceroute(8), ICMP, if installed.
    if Command::new("sh")
        .args(["-c", "command -v traceroute"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
    {
        let mut t_tr = Vec::new();
        while t_tr.len() < samples {
            let out = sh(&ns, &format!("traceroute -I -n -m 1 -q 10 -N 1 {target}"));
            let before = t_tr.len();
            t_tr.extend(out.lines().skip(1).flat_map(|l| {
                l.split_whitespace()
                    .collect::<Vec<_>>()
                    .windows(2)
                    .filter(|w| w[1] == "ms")
                    .filter_map(|w| w[0].parse::<f64>().ok())
                    .collect::<Vec<_>>()
            }));
            if t_tr.len() == before {
                eprintln!("traceroute gave nothing: {out}");
                break;
            }
        }
        report("traceroute(8) -I", &t_tr);
    } else {
        println!("| traceroute(8) | not installed | | | |");
    }

    let _ = responder.kill();
    let _ = responder.wait();
    let _ = std::fs::remove_dir_all(&dir);
    let _ = Command::new("ip").args(["netns", "del", &ns]).status();
}
