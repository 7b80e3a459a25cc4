//! The OONI-style intake process for software probes: the submission API, the disk
//! queue, the fastpath worker, the archive uploader, the fingerprint reloader and
//! metrics.
//!
//! * `checkin` — the check-in and test-list routes: what probes should measure.
//! * `http` — the submission API: routes, body limits, zstd, the `{"error": …}` answers.
//! * `worker` — the fastpath worker: scores measurements in uid order, INSERTs in batches.
//! * `wiring` — configuration, start-up and the handles of a running intake.
//! * `metrics` — the intake's counters.

mod checkin;
mod http;
mod metrics;
mod openapi;
mod wiring;
mod worker;

pub use checkin::{
    parse_check_in, parse_probe_asn, parse_test_helper, parse_test_list_query, CheckInMetrics,
    CheckInRequest, CheckInState, RunType, TestListQuery,
};
pub use http::{
    decode_zstd, open_report_body, read_body, submission_content, ApiError, Limits, BACKEND_VERSION,
};
pub use metrics::{IntakeMetrics, ReasonLabel};
pub use wiring::{serve_intake, start_intake, Intake, IntakeConfig, IntakeError};
pub use worker::{fastpath_worker, Reorder};
