//! The intake's counters (`vantage_intake_*`).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: String,
}

/// The intake's metrics (`vantage_intake_*`).
#[derive(Clone, Default)]
pub struct IntakeMetrics {
    pub reports_opened: Counter,
    /// Open reports removed after `--report-ttl-hours`.
    pub reports_expired: Counter,
    pub accepted: Counter,
    pub rejected: Family<ReasonLabel, Counter>,
    pub fastpath_rows: Counter,
    pub fastpath_insert_failures: Counter,
    pub archived_measurements: Counter,
    pub archived_objects: Counter,
    pub upload_failures: Counter,
    /// Measurements of a test neither OONI's fastpath scores nor OONI Probe runs.
    pub unknown_tests: Counter,
}

impl IntakeMetrics {
    pub fn register(&self, r: &mut Registry) {
        r.register(
            "reports_opened",
            "Reports opened",
            self.reports_opened.clone(),
        );
        r.register(
            "reports_expired",
            "Open reports removed after their time to live",
            self.reports_expired.clone(),
        );
        r.register("accepted", "Measurements queued", self.accepted.clone());
        r.register(
            "rejected",
            "Requests refused, by reason",
            self.rejected.clone(),
        );
        r.register(
            "fastpath_rows",
            "Fastpath rows stored",
            self.fastpath_rows.clone(),
        );
        r.register(
            "fastpath_insert_failures",
            "Failed fastpath INSERTs (retried)",
            self.fastpath_insert_failures.clone(),
        );
        r.register(
            "archived_measurements",
            "Measurements uploaded to the archive",
            self.archived_measurements.clone(),
        );
        r.register(
            "archived_objects",
            "JSONL objects uploaded",
            self.archived_objects.clone(),
        );
        r.register(
            "upload_failures",
            "Failed upload rounds",
            self.upload_failures.clone(),
        );
        r.register(
            "unknown_tests",
            "Measurements of an unknown test (stored, scored as a failure as OONI does)",
            self.unknown_tests.clone(),
        );
    }
}
