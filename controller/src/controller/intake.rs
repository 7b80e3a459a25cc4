//! The result intake: results that come up a probe's local forward are checked (a
//! result must name the probe that sent it) and published to JetStream
//! (`vantage.results.<type>.<msm>`, `Nats-Msg-Id` = result id), or spooled to disk in
//! order while publishing fails.

use std::sync::Arc;
use std::time::Duration;

use russh::server::Msg;
use russh::{Channel, ChannelMsg};
use vantage_core::frame::{LineBuffer, Up};
use vantage_core::nats as names;
use vantage_core::result::Envelope;

use super::metrics::ControllerMetrics;
use super::server::Shared;
use crate::spool::Spool;

/// Publishes results. The JetStream implementation is [`JetStreamResults`].
pub trait ResultSink: Send + Sync + 'static {
    /// Why a result could not be published (the intake spools it and retries).
    type Error: std::error::Error + Send + Sync + 'static;

    fn publish(
        &self,
        env: &Envelope,
    ) -> impl std::future::Future<Output = Result<(), Self::Error>> + Send;
}

/// Why JetStream did not take a result.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("cannot encode result {result_id} as JSON: {source}")]
    Encode {
        result_id: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("JetStream did not take result {result_id} on {subject}: {source}; is NATS up and the RESULTS stream declared?")]
    Publish {
        result_id: String,
        subject: String,
        #[source]
        source: async_nats::jetstream::context::PublishError,
    },
}

/// Publishes to JetStream and waits for the stream's ack.
pub struct JetStreamResults(pub async_nats::jetstream::Context);

impl ResultSink for JetStreamResults {
    type Error = PublishError;

    async fn publish(&self, env: &Envelope) -> Result<(), PublishError> {
        let result_id = &env.common.result_id;
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", result_id.as_str());
        let subject = names::result_subject(&env.common.kind, env.common.msm_id);
        let payload = serde_json::to_vec(&env.raw).map_err(|source| PublishError::Encode {
            result_id: result_id.clone(),
            source,
        })?;
        let failed = |source| PublishError::Publish {
            result_id: result_id.clone(),
            subject: subject.clone(),
            source,
        };
        self.0
            .publish_with_headers(subject.clone(), headers, payload.into())
            .await
            .map_err(failed)?
            .await
            .map(|_| ())
            .map_err(failed)
    }
}

/// Read `Up` frames from the intake channel; publish results.
pub(super) async fn intake<S: ResultSink>(
    shared: Arc<Shared<S>>,
    probe: u32,
    mut channel: Channel<Msg>,
) {
    let mut lines = LineBuffer::default();
    while let Some(msg) = channel.wait().await {
        let data = match msg {
            ChannelMsg::Data { data } => data,
            ChannelMsg::Eof | ChannelMsg::Close => break,
            _ => continue,
        };
        for line in lines.push(&data) {
            let Ok(line) = line else {
                shared.metrics.drop_one("too_long");
                tracing::warn!(probe, "dropped an over-long frame");
                continue;
            };
            Box::pin(Intake::of(&shared).frame(probe, &line)).await;
        }
    }
}

/// The result intake's logic, apart from the SSH channel and NATS, so that it can be
/// tested (and fuzzed) alone.
pub struct Intake<'a, S> {
    pub sink: &'a S,
    pub spool: &'a Spool,
    pub metrics: &'a ControllerMetrics,
}

impl<'a, S: ResultSink> Intake<'a, S> {
    fn of(shared: &'a Shared<S>) -> Self {
        Self {
            sink: &shared.sink,
            spool: &shared.spool,
            metrics: &shared.metrics,
        }
    }

    /// One frame from a probe: a malformed one is counted and dropped; the session stays.
    pub async fn frame(&self, probe: u32, line: &[u8]) {
        let frame = match serde_json::from_slice::<Up>(line) {
            Ok(f) => f,
            Err(e) => {
                self.metrics.drop_one("malformed");
                tracing::warn!(probe, error = %e, "dropped a malformed frame");
                return;
            }
        };
        match frame {
            Up::Hello { fw, uptime_s, .. } => tracing::info!(probe, fw, uptime_s, "probe hello"),
            Up::ScheduleAck { revision, .. } => {
                tracing::debug!(probe, revision, "schedule applied")
            }
            Up::Result { result, .. } => {
                let env = match Envelope::from_value(result) {
                    Ok(env) => env,
                    Err(e) => {
                        self.metrics.drop_one("malformed");
                        tracing::warn!(probe, error = %e, "dropped a malformed result");
                        return;
                    }
                };
                if env.common.prb_id != probe {
                    self.metrics.drop_one("wrong_probe");
                    tracing::warn!(
                        probe,
                        claimed = env.common.prb_id,
                        "dropped a result claiming another probe id"
                    );
                    return;
                }
                self.deliver(env).await;
                self.metrics.results.inc();
            }
        }
    }

    /// Publish a result, or spool it to disk while the sink fails. Once anything is spooled,
    /// later results queue behind it, so results reach JetStream in the order they came.
    async fn deliver(&self, env: Envelope) {
        if self.spool.is_empty().await {
            match self.sink.publish(&env).await {
                Ok(()) => return,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot publish result; spooling to disk until NATS is back")
                }
            }
        }
        if let Err(e) = self.spool.push(&env.raw).await {
            self.metrics.drop_one("spool_failed");
            tracing::error!(error = %e, result_id = %env.common.result_id, "cannot spool result; dropped");
        }
    }
}

/// Replay the spool, oldest first, whenever the sink works again.
pub(super) async fn flush_spool<S: ResultSink>(shared: Arc<Shared<S>>) {
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        match shared.spool.flush(&shared.sink).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(results = n, "flushed spooled results"),
            Err(e) => tracing::debug!(error = %e, "spool flush paused"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering;
    use std::sync::Mutex;
    use vantage_core::frame::encode;
    use vantage_core::WIRE_VERSION;

    #[derive(Default)]
    struct Collect(Mutex<Vec<String>>);
    impl ResultSink for Collect {
        type Error = std::io::Error;
        async fn publish(&self, env: &Envelope) -> Result<(), std::io::Error> {
            self.0
                .lock()
                .expect("lock")
                .push(env.common.result_id.clone());
            Ok(())
        }
    }

    fn result_frame(id: &str, probe: u32) -> Vec<u8> {
        encode(&Up::Result {
            v: WIRE_VERSION,
            result: serde_json::json!({"result_id": id, "fw": 5020, "msm_id": 7, "prb_id": probe, "timestamp": 1, "type": "ping"}),
        })
        .expect("encode")
    }

    #[tokio::test]
    async fn malformed_frames_are_counted_not_fatal() {
        let dir = tempfile::tempdir().expect("dir");
        let spool = Spool::open(dir.path(), 1 << 20).expect("spool");
        let sink = Collect::default();
        let metrics = ControllerMetrics::default();
        let intake = Intake {
            sink: &sink,
            spool: &spool,
            metrics: &metrics,
        };

        // Deterministic pseudo-random junk, plus hand-picked hostile frames.
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut junk = Vec::new();
        for _ in 0..2000 {
            let len = (seed % 300) as usize;
            let frame: Vec<u8> = (0..len)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    (seed & 0xff) as u8
                })
                .collect();
            junk.push(frame);
        }
        junk.push(br#"{"kind":"result","v":1,"result":"not an object"}"#.to_vec());
        junk.push(br#"{"kind":"result","v":1,"result":{"result_id":""}}"#.to_vec());
        junk.push(br#"{"kind":"shell","cmd":"rm -rf /"}"#.to_vec());
        junk.push(
            br#"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["#
                .to_vec(),
        );
        for frame in &junk {
            intake.frame(42, frame).await;
        }
        intake.frame(42, &result_frame("spoofed", 41)).await;
        intake.frame(42, &result_frame("good", 42)).await;

        assert_eq!(*sink.0.lock().expect("lock"), vec!["good".to_string()]);
        assert!(
            metrics.dropped.get("malformed") >= 2000,
            "{}",
            metrics.dropped.get("malformed")
        );
        assert_eq!(metrics.dropped.get("wrong_probe"), 1);
        assert_eq!(metrics.results.get(), 1);
    }

    #[tokio::test]
    async fn results_queue_behind_the_spool_in_order() {
        #[derive(Default)]
        struct Down(Mutex<Vec<String>>, std::sync::atomic::AtomicBool);
        impl ResultSink for Down {
            type Error = std::io::Error;
            async fn publish(&self, env: &Envelope) -> Result<(), std::io::Error> {
                if self.1.load(Ordering::SeqCst) {
                    return Err(std::io::Error::other("down"));
                }
                self.0
                    .lock()
                    .expect("lock")
                    .push(env.common.result_id.clone());
                Ok(())
            }
        }
        let dir = tempfile::tempdir().expect("dir");
        let spool = Spool::open(dir.path(), 1 << 20).expect("spool");
        let sink = Down::default();
        let metrics = ControllerMetrics::default();
        let intake = Intake {
            sink: &sink,
            spool: &spool,
            metrics: &metrics,
        };
        sink.1.store(true, Ordering::SeqCst);
        intake.frame(1, &result_frame("a", 1)).await;
        sink.1.store(false, Ordering::SeqCst);
        // NATS is back, but "a" is still spooled: "b" must queue behind it.
        intake.frame(1, &result_frame("b", 1)).await;
        assert!(sink.0.lock().expect("lock").is_empty());
        spool.flush(&sink).await.expect("flush");
        assert_eq!(
            *sink.0.lock().expect("lock"),
            vec!["a".to_string(), "b".to_string()]
        );
    }
}
