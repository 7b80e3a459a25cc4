//! The RIPE Atlas definition parser and validator: a `POST /api/v2/measurements/` body
//! read as the API reads it (`vantage_api::ripe::CreateRequest`, `specs_of`: refused
//! bodies are 400s), then each definition validated into a `Task`
//! (`vantage_core::definition`) and each source validated. A task that validated must
//! travel to a probe unchanged (the `Down` frame round trip).
#![no_main]

use libfuzzer_sys::fuzz_target;
use vantage_api::ripe::{specs_of, CreateRequest};
use vantage_core::definition::Timing;
use vantage_core::frame::{self, Down};

/// A fixed "now" for the API's time checks, so that a run is repeatable.
const NOW: i64 = 1_780_000_000;

fuzz_target!(|data: &[u8]| {
    // The API's own body type and its whole validation, as `POST /api/v2/measurements/`
    // runs them.
    let Ok(body) = serde_json::from_slice::<CreateRequest>(data) else {
        return;
    };
    if let Err(e) = specs_of(&body, NOW) {
        assert_eq!(e.status.as_u16(), 400, "a refused body is a 400: {e:?}");
    }
    let timing = Timing {
        start_time: body.start_time.as_ref().and_then(|v| v.as_i64()),
        stop_time: body.stop_time.as_ref().and_then(|v| v.as_i64()),
        is_oneoff: body.is_oneoff,
    };
    let mut tasks = Vec::new();
    for (i, d) in body.definitions.iter().enumerate() {
        match d.validate(1_000_001 + i as u64, timing) {
            Ok(task) => {
                assert!(task.af == 4 || task.af == 6, "af {}", task.af);
                assert_eq!(
                    task.kind.type_name(),
                    d.kind,
                    "the task's type is the definition's"
                );
                tasks.push(task);
            }
            Err(e) => assert!(e.field.starts_with("spec."), "field path {:?}", e.field),
        }
    }
    for (i, p) in body.probes.iter().enumerate() {
        if let Ok(source) = p.validate(i) {
            assert!(source.requested >= 1);
        }
    }
    let down = Down::Schedule {
        v: vantage_core::WIRE_VERSION,
        revision: 1,
        tasks,
    };
    let line = frame::encode(&down).expect("a schedule encodes");
    let back: Down = serde_json::from_slice(&line).expect("an encoded schedule decodes");
    assert_eq!(back, down, "a validated task changed on the wire");
});
