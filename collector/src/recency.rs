//! When each URL was last measured in each country: the order in which the check-in API
//! offers test-list URLs (least recently measured first, never measured before all).
//!
//! The fastpath worker records every scored web_connectivity measurement (probe_cc,
//! input, measurement_start_time, the time clamped to now so that a probe's clock cannot
//! push a URL back for ever). At start the map is seeded from ClickHouse's `fastpath`
//! table. It holds at most `cap` pairs: past that, the oldest tenth is forgotten, and a
//! forgotten URL counts as never measured (it was among the least recent anyway).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use vantage_platform::store::{Store, StoreError};

/// Pairs kept by default (about 150 bytes each).
pub const DEFAULT_CAP: usize = 200_000;

type Key = (String, String);

/// Last measurement time (unix seconds) per (country, URL); cheap to clone.
#[derive(Clone)]
pub struct Recency {
    inner: Arc<Mutex<HashMap<Key, i64>>>,
    cap: usize,
}

impl Default for Recency {
    fn default() -> Self {
        Self::new(DEFAULT_CAP)
    }
}

impl Recency {
    pub fn new(cap: usize) -> Self {
        Self {
            inner: Arc::new(Mutex::new(HashMap::new())),
            cap: cap.max(1),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<Key, i64>> {
        match self.inner.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Record measurements `(cc, url, unix seconds)`; a time after `now` counts as `now`,
    /// and an older time than the one known changes nothing.
    pub fn record<'a>(
        &self,
        measured: impl IntoIterator<Item = (&'a str, &'a str, i64)>,
        now: i64,
    ) {
        let mut map = self.lock();
        for (cc, url, at) in measured {
            if cc.is_empty() || url.is_empty() {
                continue;
            }
            let at = at.min(now);
            let key = (cc.to_ascii_uppercase(), url.to_owned());
            let slot = map.entry(key).or_insert(at);
            *slot = (*slot).max(at);
        }
        if map.len() > self.cap {
            forget_oldest(&mut map, self.cap);
        }
    }

    /// When `url` was last measured in `cc`.
    pub fn last(&self, cc: &str, url: &str) -> Option<i64> {
        self.lock().get(&(cc.to_owned(), url.to_owned())).copied()
    }

    /// Pairs known.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `items` of country `cc`, least recently measured first (never measured first of
    /// all); equal times keep their order in `items` (list order), so the order is
    /// deterministic.
    pub fn order<T>(&self, cc: &str, items: Vec<T>, url_of: impl Fn(&T) -> &str) -> Vec<T> {
        let map = self.lock();
        let mut keyed: Vec<(Option<i64>, T)> = items
            .into_iter()
            .map(|it| {
                let last = map.get(&(cc.to_owned(), url_of(&it).to_owned())).copied();
                (last, it)
            })
            .collect();
        drop(map);
        // Stable: ties keep list order. None (never measured) sorts before any time.
        keyed.sort_by_key(|(last, _)| *last);
        keyed.into_iter().map(|(_, it)| it).collect()
    }

    /// Seed from `fastpath`: the latest web_connectivity measurement of each (country,
    /// input), the `cap` most recent pairs. Returns the pairs read.
    pub async fn seed(&self, store: &Store) -> Result<usize, StoreError> {
        let sql = format!(
            "SELECT probe_cc, input, toUInt32(max(measurement_start_time)) AS last \
             FROM {}.fastpath WHERE test_name = 'web_connectivity' AND input != '' AND probe_cc != '' \
             GROUP BY probe_cc, input ORDER BY last DESC LIMIT {}",
            store.database(),
            self.cap
        );
        let bytes = store.fetch_formatted(&sql, "JSONEachRow").await?;
        let rows: Vec<(String, String, i64)> = bytes
            .split(|b| *b == b'\n')
            .filter_map(|line| serde_json::from_slice::<serde_json::Value>(line).ok())
            .filter_map(|v| {
                let cc = v.get("probe_cc")?.as_str()?.to_owned();
                let input = v.get("input")?.as_str()?.to_owned();
                let last = vantage_platform::store::loose_number(v.get("last")?)?;
                Some((cc, input, last as i64))
            })
            .collect();
        let now = chrono::Utc::now().timestamp();
        self.record(
            rows.iter().map(|(cc, u, t)| (cc.as_str(), u.as_str(), *t)),
            now,
        );
        Ok(rows.len())
    }
}

/// Keep about nine tenths of `cap`: the most recent pairs.
fn forget_oldest(map: &mut HashMap<Key, i64>, cap: usize) {
    let keep = cap - cap / 10;
    let mut times: Vec<i64> = map.values().copied().collect();
    let cut = times.len().saturating_sub(keep);
    if cut == 0 {
        return;
    }
    let (_, threshold, _) = times.select_nth_unstable(cut - 1);
    let threshold = *threshold;
    map.retain(|_, t| *t > threshold);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_measured_first_then_oldest_ties_in_list_order() {
        let r = Recency::new(100);
        r.record(
            [
                ("it", "https://b/", 200),
                ("IT", "https://a/", 100),
                ("IT", "https://c/", 100),
                ("FR", "https://d/", 50),
            ],
            1_000,
        );
        let items = vec![
            "https://a/",
            "https://b/",
            "https://c/",
            "https://d/",
            "https://e/",
        ];
        assert_eq!(
            r.order("IT", items.clone(), |s| s),
            vec![
                "https://d/",
                "https://e/",
                "https://a/",
                "https://c/",
                "https://b/"
            ]
        );
        // Another country's measurements do not count here.
        assert_eq!(r.order("FR", items, |s| s)[4], "https://d/");
    }

    #[test]
    fn later_times_win_and_the_future_is_now() {
        let r = Recency::new(100);
        r.record([("IT", "u", 500)], 1_000);
        r.record([("IT", "u", 300)], 1_000);
        assert_eq!(r.last("IT", "u"), Some(500));
        r.record([("IT", "u", 9_999_999)], 1_000);
        assert_eq!(r.last("IT", "u"), Some(1_000));
        r.record([("", "u", 5), ("IT", "", 5)], 1_000);
        assert_eq!(r.len(), 1);
    }

    #[test]
    fn bounded_forgetting_the_oldest() {
        let r = Recency::new(10);
        let urls: Vec<String> = (0..11).map(|i| format!("u{i}")).collect();
        r.record(
            urls.iter()
                .enumerate()
                .map(|(i, u)| ("IT", u.as_str(), i as i64)),
            1_000,
        );
        assert!(r.len() <= 10, "{}", r.len());
        assert_eq!(r.last("IT", "u0"), None, "the oldest is forgotten");
        assert_eq!(r.last("IT", "u10"), Some(10), "the newest stays");
    }
}
