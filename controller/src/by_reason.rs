//! Counters labelled by reason: refused logins and requests, dropped input.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

#[derive(Clone, Default)]
pub struct ByReason(pub Family<Vec<(String, String)>, Counter>);

impl ByReason {
    pub fn count(&self, reason: &str) {
        self.0
            .get_or_create(&vec![("reason".to_owned(), reason.to_owned())])
            .inc();
    }

    pub fn get(&self, reason: &str) -> u64 {
        self.0
            .get_or_create(&vec![("reason".to_owned(), reason.to_owned())])
            .get()
    }
}
