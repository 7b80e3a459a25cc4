//! The RIPE Atlas definition parser and validator (`vantage_core::definition`): a
//! `POST /api/v2/measurements/` body as JSON (`definitions[]`, `probes[]`, the timing
//! fields), each definition validated into a `Task` and each source validated. A task
//! that validated must travel to a probe unchanged (the `Down` frame round trip).
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde::Deserialize;
use vantage_core::definition::{Definition, ProbeSource, Timing};
use vantage_core::frame::{self, Down};

#[derive(Deserialize)]
struct Body {
    #[serde(default)]
    definitions: Vec<Definition>,
    #[serde(default)]
    probes: Vec<ProbeSource>,
    #[serde(default)]
    start_time: Option<i64>,
    #[serde(default)]
    stop_time: Option<i64>,
    #[serde(default)]
    is_oneoff: bool,
}

fuzz_target!(|data: &[u8]| {
    let Ok(body) = serde_json::from_slice::<Body>(data) else {
        return;
    };
    let timing = Timing {
        start_time: body.start_time,
        stop_time: body.stop_time,
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
