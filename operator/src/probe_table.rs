//! Probe metadata into ClickHouse's `probes` table, for joins such as the dashboards'
//! RTT by country: a row per Probe resource whenever its country or ASN changes (and
//! once at start); the newest row of a probe wins (ReplacingMergeTree on `updated_at`).

use std::collections::HashMap;
use std::time::Duration;

use kube::runtime::reflector;
use vantage_crd::Probe;
use vantage_platform::store::unix_now;
use vantage_platform::store::{ProbeRow, Store};

/// What was last written per probe id.
pub type Written = HashMap<u32, (String, u32)>;

/// The rows to write: probes that are new or changed since `written`.
pub fn changed_rows<'a>(
    probes: impl IntoIterator<Item = &'a Probe>,
    written: &Written,
    now: u32,
) -> Vec<ProbeRow> {
    probes
        .into_iter()
        .filter_map(|p| {
            let cc = p
                .spec
                .country_code
                .clone()
                .unwrap_or_default()
                .to_ascii_uppercase();
            let asn = p.spec.asn_v4.unwrap_or(0);
            let same = written
                .get(&p.spec.id)
                .is_some_and(|(c, a)| *c == cc && *a == asn);
            (!same).then_some(ProbeRow {
                prb_id: p.spec.id,
                country_code: cc,
                asn_v4: asn,
                updated_at: now,
            })
        })
        .collect()
}

/// Write changed probes every `period`; a failed INSERT is retried at the next tick.
pub async fn sync_loop(store: Store, probes: reflector::Store<Probe>, period: Duration) {
    let mut written = Written::new();
    let mut tick = tokio::time::interval(period);
    loop {
        tick.tick().await;
        let state = probes.state();
        let rows = changed_rows(state.iter().map(AsRef::as_ref), &written, unix_now());
        if rows.is_empty() {
            continue;
        }
        match store.insert_probes(&rows).await {
            Ok(()) => {
                tracing::debug!(rows = rows.len(), "probes table updated");
                for r in rows {
                    written.insert(r.prb_id, (r.country_code, r.asn_v4));
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot write the probes table; retrying"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(yaml: &str) -> Probe {
        serde_yaml::from_str(yaml).expect("probe")
    }

    #[test]
    fn only_new_or_changed_probes_are_written() {
        let a = probe("apiVersion: vantage.dev/v1alpha1\nkind: Probe\nmetadata: {name: a}\nspec: {id: 1, public_key: k, country_code: nl, asn_v4: 64500}");
        let b = probe("apiVersion: vantage.dev/v1alpha1\nkind: Probe\nmetadata: {name: b}\nspec: {id: 2, public_key: k}");
        let rows = changed_rows([&a, &b], &Written::new(), 9);
        assert_eq!(rows.len(), 2);
        assert_eq!(
            (
                rows[0].country_code.as_str(),
                rows[0].asn_v4,
                rows[0].updated_at
            ),
            ("NL", 64500, 9)
        );
        assert_eq!((rows[1].country_code.as_str(), rows[1].asn_v4), ("", 0));
        let written: Written = rows
            .into_iter()
            .map(|r| (r.prb_id, (r.country_code, r.asn_v4)))
            .collect();
        assert!(changed_rows([&a, &b], &written, 10).is_empty());
        let moved = probe("apiVersion: vantage.dev/v1alpha1\nkind: Probe\nmetadata: {name: a}\nspec: {id: 1, public_key: k, country_code: DE, asn_v4: 64500}");
        let rows = changed_rows([&moved, &b], &written, 11);
        assert_eq!(rows.len(), 1);
        assert_eq!((rows[0].prb_id, rows[0].country_code.as_str()), (1, "DE"));
    }
}
