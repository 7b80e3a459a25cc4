//! Telling a stalled KV watch from a quiet one.
//!
//! A KV watch is an ordered push consumer that async-nats recreates by itself after a
//! reconnect or missed heartbeats. After the NATS node that held the controller's
//! connection and the bucket's leader was killed, that recreation was seen to hang for
//! minutes (until the node came back) with neither an entry nor an error coming out of
//! the watch: schedule changes and revoked assignments stopped reaching the probes
//! (e2e/cluster/test_probe_failover.py). Restarting the watch from the revision after
//! the last one it delivered (a new consumer) takes effect as soon as the bucket answers.
//!
//! A watch over a whole bucket (`>`) delivers every revision, so it is stalled when the
//! bucket's last revision is past the last one it delivered (a watch over one key: when
//! that key's last revision is), at two checks in a row with
//! nothing delivered in between. A quiet watch (nothing written) is never restarted; one
//! that is merely slow is restarted at worst once per check period, resuming where it
//! was, which loses nothing. A gap a restart cannot fill (the last messages removed from
//! the stream, e.g. a purged bucket) costs one restart per new last revision, not one
//! per check: the check is kept across restarts and does not restart twice for the same
//! place and the same last revision.

use std::time::Duration;

use async_nats::jetstream::kv;
use futures::StreamExt;

/// How often a watch's progress is compared with its bucket's.
pub const CHECK_PERIOD: Duration = Duration::from_secs(3);

/// The progress check of one watch, over a bucket or a key (keep one across its restarts).
#[derive(Debug, Default)]
pub struct StallCheck {
    /// The watch's next revision at the previous check, if the bucket was past it then.
    behind_at: Option<u64>,
    /// (next revision, bucket's last revision) when the watch was last judged stalled.
    restarted_at: Option<(u64, u64)>,
}

impl StallCheck {
    /// Judge one check: `last` is the bucket's last revision (`None`: the bucket did not
    /// answer, which says nothing about the watch), `next` the revision after the last
    /// one the watch delivered. True when the watch is stalled: behind now, and behind
    /// at the same place at the previous check (and not already judged stalled at this
    /// place with this last revision).
    pub fn judge(&mut self, last: Option<u64>, next: u64) -> bool {
        match last {
            Some(last) if last >= next => {
                if self.restarted_at == Some((next, last)) {
                    return false;
                }
                if self.behind_at == Some(next) {
                    self.behind_at = None;
                    self.restarted_at = Some((next, last));
                    return true;
                }
                self.behind_at = Some(next);
                false
            }
            _ => {
                self.behind_at = None;
                false
            }
        }
    }

    /// Ask the bucket for its [`last_revision`] and [`judge`](Self::judge).
    pub async fn check(&mut self, bucket: &kv::Store, next: u64) -> bool {
        self.judge(last_revision(bucket).await.ok(), next)
    }

    /// The same for a watch over one key: ask for that key's [`key_revision`].
    pub async fn check_key(&mut self, bucket: &kv::Store, key: &str, next: u64) -> bool {
        self.judge(key_revision(bucket, key).await, next)
    }
}

/// The last revision of one `key` as the server has it now (a delete or purge marker
/// counts; `Some(0)`: the key never existed; `None`: the bucket did not answer), for the
/// check of a watch over that key alone, which delivers that key's revisions only.
pub async fn key_revision(bucket: &kv::Store, key: &str) -> Option<u64> {
    match bucket.entry(key).await {
        Ok(entry) => Some(entry.map_or(0, |e| e.revision)),
        Err(_) => None,
    }
}

/// What a [`Guarded`] watch gave: an entry, or the reason to restart it.
pub enum Next {
    Entry(kv::Entry),
    Failed(kv::WatcherError),
    Ended,
    /// Behind its bucket (or key) at two checks: [`StallCheck::judge`].
    Stalled,
}

/// A KV watch under a [`StallCheck`]: over the whole bucket (`key` None) or over one key.
/// It keeps the revision after the last one it delivered, where a restart resumes.
pub struct Guarded<'a> {
    watch: kv::Watch,
    bucket: &'a kv::Store,
    key: Option<&'a str>,
    check: tokio::time::Interval,
    next: u64,
}

impl<'a> Guarded<'a> {
    /// `next`: the first revision the watch owes (1 for a watch with history).
    pub fn new(watch: kv::Watch, bucket: &'a kv::Store, key: Option<&'a str>, next: u64) -> Self {
        Self {
            watch,
            bucket,
            key,
            check: tokio::time::interval(CHECK_PERIOD),
            next,
        }
    }

    /// The revision after the last one delivered.
    pub fn next_revision(&self) -> u64 {
        self.next
    }

    /// The next entry, or why the watch must be restarted; `stall` is kept across
    /// restarts.
    pub async fn next(&mut self, stall: &mut StallCheck) -> Next {
        loop {
            tokio::select! {
                item = self.watch.next() => return match item {
                    Some(Ok(entry)) => {
                        self.next = entry.revision + 1;
                        Next::Entry(entry)
                    }
                    Some(Err(e)) => Next::Failed(e),
                    None => Next::Ended,
                },
                _ = self.check.tick() => {
                    let stalled = match self.key {
                        Some(key) => Box::pin(stall.check_key(self.bucket, key, self.next)).await,
                        None => Box::pin(stall.check(self.bucket, self.next)).await,
                    };
                    if stalled {
                        return Next::Stalled;
                    }
                }
            }
        }
    }
}

/// The bucket's last revision as the server has it now (a fresh STREAM.INFO:
/// `kv::Store::status` returns the info cached when the bucket was bound).
pub async fn last_revision(
    bucket: &kv::Store,
) -> Result<u64, async_nats::jetstream::stream::InfoError> {
    Ok(bucket.stream.get_info().await?.state.last_sequence)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_watch_behind_at_the_same_place_twice_is_stalled() {
        let mut c = StallCheck::default();
        // Quiet: the bucket's last revision is the last one delivered (next = last + 1).
        assert!(!c.judge(Some(9), 10));
        assert!(!c.judge(Some(9), 10));
        // A write the watch has not delivered yet: behind once is not stalled...
        assert!(!c.judge(Some(10), 10));
        // ...and it delivered meanwhile, then another write came: still not stalled.
        assert!(!c.judge(Some(11), 11));
        // Nothing delivered since the previous check while behind: stalled.
        assert!(c.judge(Some(12), 11));
        // Judged afresh after the restart, which delivered what it missed.
        assert!(!c.judge(Some(12), 13));
        assert!(!c.judge(Some(14), 13));
        assert!(c.judge(Some(14), 13));
    }

    #[test]
    fn a_gap_a_restart_cannot_fill_restarts_once_per_new_revision() {
        // The bucket says revision 20, but the watch can never deliver past 15 (the
        // messages after it were removed): one restart, then none until a new write.
        let mut c = StallCheck::default();
        assert!(!c.judge(Some(20), 16));
        assert!(c.judge(Some(20), 16));
        for _ in 0..10 {
            assert!(!c.judge(Some(20), 16));
        }
        assert!(!c.judge(Some(21), 16));
        assert!(c.judge(Some(21), 16));
        assert!(!c.judge(Some(21), 16));
    }

    #[test]
    fn a_bucket_that_does_not_answer_proves_nothing() {
        let mut c = StallCheck::default();
        assert!(!c.judge(Some(10), 10));
        assert!(!c.judge(None, 10));
        assert!(
            !c.judge(Some(10), 10),
            "the unanswered check reset the count"
        );
        assert!(c.judge(Some(10), 10));
    }
}
