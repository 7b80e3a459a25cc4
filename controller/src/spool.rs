//! The controller's disk spool: results wait here, in order, while NATS is unreachable.
//!
//! One append-only JSON-lines file. While it holds anything, new results are appended
//! behind it, so JetStream receives results in the order the controller got them. The
//! flusher replays it oldest first; what it could not send is written back atomically.
//! The spool survives a controller restart. Consumers drop duplicates by `result_id`,
//! so a result published just before a crash and replayed after it is stored once.

use std::path::{Path, PathBuf};

use serde_json::Value;
use tokio::io::AsyncWriteExt;
use tokio::sync::Mutex;
use vantage_core::result::Envelope;

use crate::controller::ResultSink;

#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("spool file {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("spool is full ({0} bytes); the result is dropped")]
    Full(u64),
    #[error("cannot encode the result for the spool: {source}")]
    Encode {
        #[source]
        source: serde_json::Error,
    },
    #[error("sink unavailable: {source}")]
    Sink {
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

pub struct Spool {
    path: PathBuf,
    max_bytes: u64,
    /// Bytes in the spool file (0 = empty).
    bytes: Mutex<u64>,
}

impl Spool {
    /// Open (or create) the spool in `dir`, keeping what an earlier run left.
    pub fn open(dir: &Path, max_bytes: u64) -> Result<Self, SpoolError> {
        let io = |source| SpoolError::Io {
            path: dir.display().to_string(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(io)?;
        let path = dir.join("results.spool.jsonl");
        let bytes = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        Ok(Self {
            path,
            max_bytes,
            bytes: Mutex::new(bytes),
        })
    }

    fn io(&self) -> impl Fn(std::io::Error) -> SpoolError + '_ {
        |source| SpoolError::Io {
            path: self.path.display().to_string(),
            source,
        }
    }

    pub async fn is_empty(&self) -> bool {
        *self.bytes.lock().await == 0
    }

    /// Append one result.
    pub async fn push(&self, raw: &Value) -> Result<(), SpoolError> {
        let mut bytes = self.bytes.lock().await;
        let mut line = serde_json::to_vec(raw).map_err(|source| SpoolError::Encode { source })?;
        line.push(b'\n');
        if *bytes + line.len() as u64 > self.max_bytes {
            return Err(SpoolError::Full(*bytes));
        }
        let mut f = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .await
            .map_err(self.io())?;
        f.write_all(&line).await.map_err(self.io())?;
        f.sync_data().await.map_err(self.io())?;
        *bytes += line.len() as u64;
        Ok(())
    }

    /// Send everything spooled, oldest first. Returns how many results went out; on the
    /// first failure, keeps the rest (in order) and returns the error.
    pub async fn flush<S: ResultSink>(&self, sink: &S) -> Result<usize, SpoolError> {
        let mut bytes = self.bytes.lock().await;
        if *bytes == 0 {
            return Ok(0);
        }
        let text = tokio::fs::read(&self.path).await.map_err(self.io())?;
        let lines: Vec<&[u8]> = text
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .collect();
        for (i, line) in lines.iter().enumerate() {
            let Ok(env) = Envelope::parse(line) else {
                continue;
            };
            if let Err(e) = sink.publish(&env).await {
                let rest: Vec<u8> = lines[i..]
                    .iter()
                    .flat_map(|l| l.iter().copied().chain(std::iter::once(b'\n')))
                    .collect();
                let tmp = self.path.with_extension("tmp");
                tokio::fs::write(&tmp, &rest).await.map_err(self.io())?;
                tokio::fs::rename(&tmp, &self.path)
                    .await
                    .map_err(self.io())?;
                *bytes = rest.len() as u64;
                return if i == 0 {
                    Err(SpoolError::Sink {
                        source: Box::new(e),
                    })
                } else {
                    Ok(i)
                };
            }
        }
        tokio::fs::remove_file(&self.path)
            .await
            .map_err(self.io())?;
        *bytes = 0;
        Ok(lines.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Mutex as StdMutex;

    #[derive(Default)]
    struct Flaky {
        down: AtomicBool,
        got: StdMutex<Vec<String>>,
    }
    impl ResultSink for Flaky {
        type Error = std::io::Error;
        async fn publish(&self, env: &Envelope) -> Result<(), std::io::Error> {
            if self.down.load(Ordering::SeqCst) {
                return Err(std::io::Error::other("nats down"));
            }
            self.got
                .lock()
                .expect("lock")
                .push(env.common.result_id.clone());
            Ok(())
        }
    }

    fn result(id: &str) -> Value {
        serde_json::json!({"result_id": id, "fw": 5020, "msm_id": 1, "prb_id": 2, "timestamp": 3, "type": "ping"})
    }

    #[tokio::test]
    async fn replays_in_order_after_an_outage_and_survives_restart() {
        let dir = tempfile::tempdir().expect("dir");
        let sink = Flaky::default();
        {
            let spool = Spool::open(dir.path(), 1 << 20).expect("open");
            for id in ["a", "b", "c"] {
                spool.push(&result(id)).await.expect("push");
            }
            sink.down.store(true, Ordering::SeqCst);
            assert!(matches!(
                spool.flush(&sink).await,
                Err(SpoolError::Sink { .. })
            ));
            assert!(
                !spool.is_empty().await,
                "nothing lost while the sink is down"
            );
        }
        // A restarted controller finds the spool and sends it in order.
        let spool = Spool::open(dir.path(), 1 << 20).expect("reopen");
        sink.down.store(false, Ordering::SeqCst);
        assert_eq!(spool.flush(&sink).await.expect("flush"), 3);
        assert!(spool.is_empty().await);
        assert_eq!(*sink.got.lock().expect("lock"), vec!["a", "b", "c"]);
    }

    #[tokio::test]
    async fn bounded() {
        let dir = tempfile::tempdir().expect("dir");
        let spool = Spool::open(dir.path(), 150).expect("open");
        spool.push(&result("a")).await.expect("first fits");
        assert!(matches!(
            spool.push(&result("b")).await,
            Err(SpoolError::Full(_))
        ));
    }
}
