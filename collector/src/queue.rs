//! The disk queue: one file per measurement, written to `tmp/` and renamed into
//! `incoming/` (atomic on one file system), so `incoming/` only ever holds whole files.
//! Open reports live in `reports/`, one small JSON file each, so they survive a restart;
//! [`Queue::expire_reports`] removes those older than the intake's `--report-ttl-hours`.
//!
//! ```text
//! <root>/tmp/<uid>.tmp          being written (removed at start: never complete)
//! <root>/incoming/<uid>.json    one measurement, one line of JSON, waiting for the archive
//! <root>/reports/<report_id>.json
//! ```

use std::io;
use std::path::{Path, PathBuf};

use crate::uid::is_safe_id;

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| io::Error::other(e.to_string()))?
}

#[derive(Clone, Debug)]
pub struct Queue {
    root: PathBuf,
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, format!("not a valid {what}"))
}

impl Queue {
    /// Open (create) the queue under `root` and remove leftover `.tmp` files.
    pub async fn open(root: impl Into<PathBuf>) -> io::Result<Self> {
        let root = root.into();
        for dir in ["tmp", "incoming", "reports"] {
            tokio::fs::create_dir_all(root.join(dir)).await?;
        }
        let mut tmp = tokio::fs::read_dir(root.join("tmp")).await?;
        while let Some(entry) = tmp.next_entry().await? {
            if entry.path().extension().is_some_and(|e| e == "tmp") {
                tokio::fs::remove_file(entry.path()).await?;
            }
        }
        Ok(Self { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn incoming_path(&self, uid: &str) -> io::Result<PathBuf> {
        if !is_safe_id(uid) {
            return Err(invalid("measurement uid"));
        }
        Ok(self.root.join("incoming").join(format!("{uid}.json")))
    }

    fn report_path(&self, report_id: &str) -> io::Result<PathBuf> {
        if !is_safe_id(report_id) {
            return Err(invalid("report id"));
        }
        Ok(self.root.join("reports").join(format!("{report_id}.json")))
    }

    /// Write `bytes` under `dir/<name>`: `.tmp` first, fsync, then an atomic rename.
    async fn write_atomic(&self, target: PathBuf, name: &str, bytes: &[u8]) -> io::Result<()> {
        use tokio::io::AsyncWriteExt;
        let tmp = self.root.join("tmp").join(format!("{name}.tmp"));
        let mut f = tokio::fs::File::create(&tmp).await?;
        f.write_all(bytes).await?;
        f.sync_all().await?;
        drop(f);
        tokio::fs::rename(&tmp, &target).await
    }

    /// Queue one measurement (one line of JSON, no newline inside).
    pub async fn push(&self, uid: &str, line: &[u8]) -> io::Result<()> {
        let target = self.incoming_path(uid)?;
        self.write_atomic(target, uid, line).await
    }

    /// A queued measurement, or `None` when it is not (or no longer) queued.
    pub async fn get(&self, uid: &str) -> io::Result<Option<Vec<u8>>> {
        let path = self.incoming_path(uid)?;
        match tokio::fs::read(path).await {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Every queued uid, in uid order.
    pub async fn list(&self) -> io::Result<Vec<String>> {
        let dir = self.root.join("incoming");
        blocking(move || {
            let mut out = Vec::new();
            for entry in std::fs::read_dir(dir)? {
                let name = entry?.file_name();
                if let Some(uid) = name.to_str().and_then(|n| n.strip_suffix(".json")) {
                    out.push(uid.to_owned());
                }
            }
            out.sort();
            Ok(out)
        })
        .await
    }

    /// Read many queued measurements in one blocking task; missing ones are `None`.
    pub async fn get_many(&self, uids: Vec<String>) -> io::Result<Vec<(String, Option<Vec<u8>>)>> {
        let q = self.clone();
        blocking(move || {
            uids.into_iter()
                .map(|uid| {
                    let path = q.incoming_path(&uid)?;
                    match std::fs::read(path) {
                        Ok(b) => Ok((uid, Some(b))),
                        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok((uid, None)),
                        Err(e) => Err(e),
                    }
                })
                .collect()
        })
        .await
    }

    /// Remove many archived measurements in one blocking task (missing is fine).
    pub async fn remove_many(&self, uids: Vec<String>) -> io::Result<()> {
        let q = self.clone();
        blocking(move || {
            for uid in uids {
                match std::fs::remove_file(q.incoming_path(&uid)?) {
                    Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                    _ => {}
                }
            }
            Ok(())
        })
        .await
    }

    /// Remove an archived measurement (missing is fine).
    pub async fn remove(&self, uid: &str) -> io::Result<()> {
        match tokio::fs::remove_file(self.incoming_path(uid)?).await {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Record an open report.
    pub async fn put_report(&self, report_id: &str, meta: &[u8]) -> io::Result<()> {
        let target = self.report_path(report_id)?;
        self.write_atomic(target, report_id, meta).await
    }

    /// Remove the reports opened more than `max_age` ago (by file time); a probe that
    /// submits to one afterwards gets 404 and opens a new report. Returns how many went.
    pub async fn expire_reports(&self, max_age: std::time::Duration) -> io::Result<usize> {
        let dir = self.root.join("reports");
        blocking(move || {
            let now = std::time::SystemTime::now();
            let mut removed = 0;
            for entry in std::fs::read_dir(&dir)? {
                let entry = entry?;
                let old = entry
                    .metadata()
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| now.duration_since(t).ok())
                    .is_some_and(|age| age > max_age);
                if old {
                    match std::fs::remove_file(entry.path()) {
                        Ok(()) => removed += 1,
                        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                        Err(e) => return Err(e),
                    }
                }
            }
            Ok(removed)
        })
        .await
    }

    /// An open report's metadata, or `None` when unknown (or the id is not valid).
    pub async fn get_report(&self, report_id: &str) -> io::Result<Option<Vec<u8>>> {
        let Ok(path) = self.report_path(report_id) else {
            return Ok(None);
        };
        match tokio::fs::read(path).await {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn push_list_get_remove() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("tmp")).expect("mkdir");
        std::fs::write(dir.path().join("tmp/stale.tmp"), b"half").expect("write");
        let q = Queue::open(dir.path()).await.expect("open");
        assert!(!dir.path().join("tmp/stale.tmp").exists());
        q.push("b_1", b"{\"b\":1}").await.expect("push");
        q.push("a_1", b"{\"a\":1}").await.expect("push");
        assert_eq!(q.list().await.expect("list"), vec!["a_1", "b_1"]);
        assert_eq!(
            q.get("a_1").await.expect("get").as_deref(),
            Some(&b"{\"a\":1}"[..])
        );
        q.remove("a_1").await.expect("remove");
        q.remove("a_1").await.expect("remove twice");
        assert_eq!(q.get("a_1").await.expect("get"), None);
        assert!(q.push("../x", b"{}").await.is_err());
        let many = q
            .get_many(vec!["b_1".into(), "a_1".into()])
            .await
            .expect("get_many");
        assert_eq!(
            many,
            vec![
                ("b_1".to_owned(), Some(b"{\"b\":1}".to_vec())),
                ("a_1".to_owned(), None)
            ]
        );
        q.remove_many(vec!["b_1".into(), "gone".into()])
            .await
            .expect("remove_many");
        assert!(q.list().await.expect("list").is_empty());
        assert_eq!(q.get_report("../../etc/passwd").await.expect("get"), None);
        // Reports past their age are expired; younger ones stay.
        q.put_report("r_old", b"{}").await.expect("put");
        q.put_report("r_new", b"{}").await.expect("put");
        let old = std::fs::File::options()
            .write(true)
            .open(dir.path().join("reports/r_old.json"))
            .expect("open");
        old.set_modified(std::time::SystemTime::now() - std::time::Duration::from_secs(3 * 86_400))
            .expect("set mtime");
        let n = q
            .expire_reports(std::time::Duration::from_secs(2 * 86_400))
            .await
            .expect("expire");
        assert_eq!(n, 1);
        assert_eq!(q.get_report("r_old").await.expect("get"), None);
        assert!(q.get_report("r_new").await.expect("get").is_some());
        let tmp_left: Vec<_> = std::fs::read_dir(dir.path().join("tmp"))
            .expect("ls")
            .collect();
        assert!(tmp_left.is_empty());
    }
}
