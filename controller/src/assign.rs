//! Choosing a controller for a probe (pure).

use vantage_core::nats::Heartbeat;

/// What registration knows of a probe when it chooses.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ProbeInfo {
    pub id: u32,
    pub enabled: bool,
    pub country: Option<String>,
}

/// The decision and why, for the log.
#[derive(Clone, Debug, PartialEq)]
pub struct Choice {
    pub controller: Heartbeat,
    pub reason: String,
}

/// A heartbeat older than this is a controller that is down: three missed beats
/// (controllers beat every 2 s). Longer kept handing a killed controller to probes
/// whose reconnect backoff then grew past the failover time (an e2e flake at 10 s).
pub const HEARTBEAT_STALE_MS: i64 = 6_000;

/// Pick a controller: never a draining, full or silent one; prefer one whose regions
/// include the probe's country; then the lowest load (connected / capacity); then name.
pub fn choose(probe: &ProbeInfo, controllers: &[Heartbeat], now_ms: i64) -> Option<Choice> {
    let load = |h: &Heartbeat| f64::from(h.connected) / f64::from(h.capacity.max(1));
    let in_region = |h: &Heartbeat| {
        probe
            .country
            .as_ref()
            .is_some_and(|cc| h.regions.iter().any(|r| r.eq_ignore_ascii_case(cc)))
    };
    let live: Vec<&Heartbeat> = controllers
        .iter()
        .filter(|h| {
            !h.draining && now_ms - h.at_ms <= HEARTBEAT_STALE_MS && h.connected < h.capacity
        })
        .collect();
    let best = live.iter().min_by(|a, b| {
        (!in_region(a), load(a), &a.controller)
            .partial_cmp(&(!in_region(b), load(b), &b.controller))
            .unwrap_or(std::cmp::Ordering::Equal)
    })?;
    let reason = format!(
        "{} of {} live controllers; {}; load {}/{}",
        best.controller,
        live.len(),
        if in_region(best) {
            "serves the probe's country"
        } else {
            "no controller serves the probe's country"
        },
        best.connected,
        best.capacity
    );
    Some(Choice {
        controller: (*best).clone(),
        reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use vantage_core::WIRE_VERSION;

    fn hb(
        name: &str,
        connected: u32,
        capacity: u32,
        regions: &[&str],
        draining: bool,
        at_ms: i64,
    ) -> Heartbeat {
        Heartbeat {
            v: WIRE_VERSION,
            controller: name.into(),
            ssh_addr: format!("{name}:443"),
            host_key: String::new(),
            connected,
            capacity,
            draining,
            regions: regions.iter().map(|s| s.to_string()).collect(),
            at_ms,
        }
    }

    #[test]
    fn region_then_load_never_draining_or_stale() {
        let nl = ProbeInfo {
            id: 1,
            enabled: true,
            country: Some("NL".into()),
        };
        let now = 100_000;
        let all = vec![
            hb("eu-busy", 90, 100, &["NL", "DE"], false, now),
            hb("eu-idle", 10, 100, &["NL"], false, now),
            hb("us", 0, 100, &["US"], false, now),
            hb("eu-draining", 0, 100, &["NL"], true, now),
            hb("eu-dead", 0, 100, &["NL"], false, now - 60_000),
        ];
        let c = choose(&nl, &all, now).expect("choice");
        assert_eq!(c.controller.controller, "eu-idle");
        assert!(
            c.reason.contains("serves the probe's country"),
            "{}",
            c.reason
        );
        let jp = ProbeInfo {
            country: Some("JP".into()),
            ..nl.clone()
        };
        assert_eq!(
            choose(&jp, &all, now)
                .expect("choice")
                .controller
                .controller,
            "us",
            "least loaded"
        );
        let full = vec![hb("x", 5, 5, &[], false, now)];
        assert!(choose(&nl, &full, now).is_none());
        assert!(
            choose(&nl, &all[3..], now).is_none(),
            "draining and dead are never chosen"
        );
    }
}
