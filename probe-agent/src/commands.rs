//! The command channel: newline-delimited JSON [`Down`] frames from the controller.

use vantage_core::frame::{Down, LineBuffer, LineError};

/// Splits the command stream into frames; bad frames are counted, never fatal.
#[derive(Default, Debug)]
pub struct CommandParser {
    lines: LineBuffer,
    /// Frames that were not valid `Down` JSON.
    pub malformed: u64,
    /// Frames over the size limit.
    pub oversized: u64,
}

impl CommandParser {
    /// Feed bytes from the channel; get the complete frames they finish.
    pub fn feed(&mut self, data: &[u8]) -> Vec<Down> {
        let mut out = Vec::new();
        for line in self.lines.push(data) {
            match line {
                Ok(bytes) => match serde_json::from_slice::<Down>(&bytes) {
                    Ok(down) => out.push(down),
                    Err(e) => {
                        self.malformed += 1;
                        tracing::warn!(error = %e, malformed_total = self.malformed, "ignoring malformed command frame");
                    }
                },
                Err(LineError::TooLong) => {
                    self.oversized += 1;
                    tracing::warn!(
                        oversized_total = self.oversized,
                        "ignoring over-long command frame"
                    );
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vantage_core::frame::{encode, MAX_FRAME_BYTES};

    fn schedule(revision: u64) -> Down {
        Down::Schedule {
            v: vantage_core::WIRE_VERSION,
            revision,
            tasks: vec![],
        }
    }

    #[test]
    fn counts_malformed_and_oversized_frames() {
        let mut p = CommandParser::default();
        let mut stream = Vec::new();
        stream.extend(encode(&schedule(1)).expect("encode"));
        stream.extend(b"{not json}\n");
        stream.extend(b"{\"cmd\":\"reboot\"}\n");
        stream.extend(vec![b'x'; MAX_FRAME_BYTES + 10]);
        stream.push(b'\n');
        stream.extend(encode(&schedule(2)).expect("encode"));
        // Deliver in awkward chunk sizes.
        let mut got = Vec::new();
        for chunk in stream.chunks(7_777) {
            got.extend(p.feed(chunk));
        }
        assert_eq!(got, vec![schedule(1), schedule(2)]);
        assert_eq!(p.malformed, 2);
        assert_eq!(p.oversized, 1);
    }

    #[test]
    fn random_bytes_do_not_panic() {
        let mut p = CommandParser::default();
        for round in 0..200 {
            let len = rand::random_range(0..4096);
            let mut data: Vec<u8> = (0..len).map(|_| rand::random()).collect();
            if round % 3 == 0 {
                data.push(b'\n');
            }
            let _ = p.feed(&data);
        }
        // The stream still recovers afterwards.
        let _ = p.feed(b"\n");
        assert_eq!(
            p.feed(&encode(&schedule(9)).expect("encode")),
            vec![schedule(9)]
        );
    }
}
