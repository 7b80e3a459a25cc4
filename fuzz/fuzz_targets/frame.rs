//! The probe ↔ controller frame decoder (`vantage_core::frame`): the line splitter, then
//! each line as an `Up` frame (what a controller reads from a probe, results checked by
//! `result::Envelope` as the controller's intake does) and as a `Down` frame (what a
//! probe reads from a controller), and the registration command.
//!
//! Input: one selector byte, then the stream. The selector's low bits cut the stream
//! into chunks (splitting must not change the lines); a selector of 0xf0 and up repeats
//! the stream so that lines can pass `MAX_FRAME_BYTES` (libFuzzer's inputs are smaller).
#![no_main]

use libfuzzer_sys::fuzz_target;
use vantage_core::frame::{self, Down, LineBuffer, LineError, Up, MAX_FRAME_BYTES};
use vantage_core::result::Envelope;

fn lines(stream: &[u8], chunk: usize) -> Vec<Result<Vec<u8>, LineError>> {
    let mut lb = LineBuffer::default();
    let mut out = Vec::new();
    for part in stream.chunks(chunk.max(1)) {
        out.extend(lb.push(part));
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    // One input in sixteen is repeated past MAX_FRAME_BYTES (the over-long line path).
    let repeat = if sel >= 0xf0 { 128 } else { 1 };
    let stream = rest.repeat(repeat);
    let whole = lines(&stream, stream.len());
    let chunked = lines(&stream, usize::from(sel & 0x1f) + 1);
    assert_eq!(whole, chunked, "chunking changed the lines");
    for line in whole.iter().flatten() {
        assert!(line.len() <= MAX_FRAME_BYTES, "a line over the limit");
        assert!(!line.contains(&b'\n'));
        if let Ok(up) = serde_json::from_slice::<Up>(line) {
            if let Up::Result { result, .. } = &up {
                if let Ok(env) = Envelope::from_value(result.clone()) {
                    assert!(!env.common.result_id.is_empty() && env.common.result_id.len() <= 64);
                }
            }
            let again = frame::encode(&up).expect("an Up frame encodes");
            assert_eq!(again.last(), Some(&b'\n'));
        }
        if let Ok(down) = serde_json::from_slice::<Down>(line) {
            let again = frame::encode(&down).expect("a Down frame encodes");
            let back: Down = serde_json::from_slice(&again).expect("an encoded Down frame decodes");
            assert_eq!(back, down, "Down frame round trip");
        }
        if let Ok(text) = std::str::from_utf8(line) {
            let _ = frame::parse_register(text);
        }
    }
});
