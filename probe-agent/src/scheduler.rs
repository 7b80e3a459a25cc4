//! The measurement scheduler, in the manner of RIPE Atlas `eperd`.
//!
//! A periodic task runs once per `interval`, at a uniformly random offset in
//! `[0, min(spread, interval))` into each period; period 0 starts when the task is
//! received (or at `start_time`), and no run starts at or after `stop_time`. A one-off
//! runs once, at once. A new schedule replaces the old one atomically: unchanged tasks
//! keep running undisturbed, changed or removed ones are cancelled.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use vantage_core::definition::Task;

use crate::outbox::Outbox;

/// Default limit on measurements running at once.
pub const DEFAULT_MAX_CONCURRENT: usize = 16;

/// Runs one measurement and returns its result (None: nothing to report).
pub trait Measure: Send + Sync + 'static {
    fn run(&self, task: &Task) -> impl Future<Output = Option<Value>> + Send;
}

/// Counters, shared with the tasks.
#[derive(Debug, Default)]
pub struct SchedulerStats {
    /// Runs that completed.
    pub runs: AtomicU64,
    /// Runs skipped: no concurrency slot free, or the previous run overran its periods.
    pub skipped: AtomicU64,
}

/// What [`Scheduler::apply`] did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Applied {
    pub kept: usize,
    pub started: usize,
    pub cancelled: usize,
}

struct Running {
    task: Task,
    handle: JoinHandle<()>,
}

/// Holds the current schedule and one tokio task per measurement.
pub struct Scheduler<M: Measure> {
    measure: Arc<M>,
    outbox: Arc<Outbox>,
    permits: Arc<Semaphore>,
    stats: Arc<SchedulerStats>,
    running: HashMap<u64, Running>,
}

impl<M: Measure> Scheduler<M> {
    pub fn new(measure: Arc<M>, outbox: Arc<Outbox>, max_concurrent: usize) -> Self {
        Self {
            measure,
            outbox,
            permits: Arc::new(Semaphore::new(max_concurrent.max(1))),
            stats: Arc::default(),
            running: HashMap::new(),
        }
    }

    pub fn stats(&self) -> Arc<SchedulerStats> {
        self.stats.clone()
    }

    /// The msm_ids of the current schedule (finished one-offs included).
    pub fn msm_ids(&self) -> Vec<u64> {
        let mut ids: Vec<u64> = self.running.keys().copied().collect();
        ids.sort_unstable();
        ids
    }

    /// Replace the schedule.
    pub fn apply(&mut self, tasks: Vec<Task>) -> Applied {
        let mut wanted: HashMap<u64, Task> = HashMap::with_capacity(tasks.len());
        for task in tasks {
            if let Some(dup) = wanted.insert(task.msm_id, task) {
                tracing::warn!(
                    msm_id = dup.msm_id,
                    "schedule lists a measurement twice; the last entry wins"
                );
            }
        }
        let mut applied = Applied::default();
        let current = std::mem::take(&mut self.running);
        for (msm_id, running) in current {
            match wanted.get(&msm_id) {
                Some(task) if *task == running.task => {
                    wanted.remove(&msm_id);
                    self.running.insert(msm_id, running);
                    applied.kept += 1;
                }
                _ => {
                    running.handle.abort();
                    applied.cancelled += 1;
                    tracing::info!(msm_id, "measurement cancelled");
                }
            }
        }
        for (msm_id, task) in wanted {
            tracing::info!(msm_id, target = %task.target, interval = task.interval, oneoff = task.is_oneoff, "measurement scheduled");
            let handle = tokio::spawn(task_loop(
                task.clone(),
                self.measure.clone(),
                self.outbox.clone(),
                self.permits.clone(),
                self.stats.clone(),
            ));
            self.running.insert(msm_id, Running { task, handle });
            applied.started += 1;
        }
        applied
    }
}

impl<M: Measure> Drop for Scheduler<M> {
    fn drop(&mut self) {
        for running in self.running.values() {
            running.handle.abort();
        }
    }
}

/// Maps unix seconds onto tokio's clock (so that paused time in tests moves both).
#[derive(Clone, Copy)]
struct Clock {
    instant: Instant,
    unix: f64,
}

impl Clock {
    fn now() -> Self {
        Self {
            instant: Instant::now(),
            unix: crate::unix_now(),
        }
    }

    fn unix_at(&self, at: Instant) -> f64 {
        self.unix + at.saturating_duration_since(self.instant).as_secs_f64()
            - self.instant.saturating_duration_since(at).as_secs_f64()
    }

    fn instant_at(&self, unix: i64) -> Instant {
        let delta = unix as f64 - self.unix;
        if delta > 0.0 {
            self.instant + Duration::from_secs_f64(delta)
        } else {
            self.instant
        }
    }
}

async fn run_once<M: Measure>(
    task: &Task,
    measure: &M,
    outbox: &Outbox,
    permits: &Arc<Semaphore>,
    stats: &SchedulerStats,
) {
    let Ok(permit) = permits.clone().try_acquire_owned() else {
        let skipped = stats.skipped.fetch_add(1, Ordering::Relaxed) + 1;
        tracing::warn!(
            msm_id = task.msm_id,
            skipped_total = skipped,
            "too many measurements running; run skipped"
        );
        return;
    };
    // Boxed: the run's future (the largest of the measurement types') is allocated only
    // while it runs, so a task waiting for its next period holds a few hundred bytes.
    let result = Box::pin(measure.run(task)).await;
    drop(permit);
    stats.runs.fetch_add(1, Ordering::Relaxed);
    if let Some(result) = result {
        outbox.push(result);
    }
}

async fn task_loop<M: Measure>(
    task: Task,
    measure: Arc<M>,
    outbox: Arc<Outbox>,
    permits: Arc<Semaphore>,
    stats: Arc<SchedulerStats>,
) {
    let clock = Clock::now();
    let stopped = |at: Instant| {
        task.stop_time
            .is_some_and(|stop| clock.unix_at(at) >= stop as f64)
    };
    if task.is_oneoff {
        if stopped(clock.instant) {
            tracing::info!(
                msm_id = task.msm_id,
                "one-off is past its stop_time; not run"
            );
        } else {
            run_once(&task, measure.as_ref(), &outbox, &permits, &stats).await;
        }
        return;
    }
    let interval = Duration::from_secs(u64::from(task.interval.max(1)));
    let spread = f64::from(task.spread.min(task.interval));
    let base = task
        .start_time
        .map_or(clock.instant, |t| clock.instant_at(t));
    let mut period: u32 = 0;
    loop {
        let offset = if spread > 0.0 {
            rand::random_range(0.0..spread)
        } else {
            0.0
        };
        let at = base + interval * period + Duration::from_secs_f64(offset);
        if stopped(at) {
            tracing::info!(msm_id = task.msm_id, "measurement reached its stop_time");
            return;
        }
        tokio::time::sleep_until(at).await;
        run_once(&task, measure.as_ref(), &outbox, &permits, &stats).await;
        period = period.saturating_add(1);
        // If the run overran whole periods, skip them rather than bunch runs up.
        let current = (Instant::now().saturating_duration_since(base).as_secs_f64()
            / interval.as_secs_f64()) as u32;
        if current > period {
            stats
                .skipped
                .fetch_add(u64::from(current - period), Ordering::Relaxed);
            tracing::warn!(
                msm_id = task.msm_id,
                skipped = current - period,
                "run overran its interval; periods skipped"
            );
            period = current;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use vantage_core::definition::{PingOptions, TaskKind};

    /// Records (msm_id, time since test start) of each run.
    struct Recorder {
        start: Instant,
        runs: Mutex<Vec<(u64, Duration)>>,
        busy: Duration,
    }

    impl Recorder {
        fn new(busy: Duration) -> Arc<Self> {
            Arc::new(Self {
                start: Instant::now(),
                runs: Mutex::new(Vec::new()),
                busy,
            })
        }
        fn runs_of(&self, msm_id: u64) -> Vec<Duration> {
            self.runs
                .lock()
                .expect("lock")
                .iter()
                .filter(|r| r.0 == msm_id)
                .map(|r| r.1)
                .collect()
        }
    }

    impl Measure for Recorder {
        async fn run(&self, task: &Task) -> Option<Value> {
            self.runs
                .lock()
                .expect("lock")
                .push((task.msm_id, self.start.elapsed()));
            tokio::time::sleep(self.busy).await;
            Some(serde_json::json!({"msm_id": task.msm_id}))
        }
    }

    fn task(msm_id: u64, interval: u32, spread: u32) -> Task {
        Task {
            msm_id,
            af: 4,
            target: "127.0.0.1".into(),
            interval,
            spread,
            start_time: None,
            stop_time: None,
            is_oneoff: false,
            kind: TaskKind::Ping(PingOptions {
                packets: 3,
                size: 48,
                packet_interval_ms: 1000,
            }),
        }
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[tokio::test(start_paused = true)]
    async fn periodic_runs_at_once_then_every_interval() {
        let rec = Recorder::new(Duration::ZERO);
        let outbox = Arc::new(Outbox::new(100));
        let mut s = Scheduler::new(rec.clone(), outbox.clone(), 16);
        s.apply(vec![task(1, 60, 0)]);
        tokio::time::sleep(secs(185)).await;
        assert_eq!(
            rec.runs_of(1),
            vec![secs(0), secs(60), secs(120), secs(180)]
        );
        assert_eq!(outbox.len(), 4);
        assert_eq!(s.stats().runs.load(Ordering::Relaxed), 4);
    }

    #[tokio::test(start_paused = true)]
    async fn replacing_keeps_unchanged_and_cancels_removed_or_changed() {
        let rec = Recorder::new(Duration::ZERO);
        let mut s = Scheduler::new(rec.clone(), Arc::new(Outbox::new(100)), 16);
        assert_eq!(
            s.apply(vec![task(1, 60, 0), task(2, 60, 0), task(3, 60, 0)])
                .started,
            3
        );
        tokio::time::sleep(secs(30)).await;
        let mut changed = task(3, 100, 0);
        changed.target = "127.0.0.2".into();
        let applied = s.apply(vec![task(1, 60, 0), changed]);
        assert_eq!(
            applied,
            Applied {
                kept: 1,
                started: 1,
                cancelled: 2
            }
        );
        assert_eq!(s.msm_ids(), vec![1, 3]);
        tokio::time::sleep(secs(101)).await; // t = 131
                                             // Kept: its timing was not reset by the new schedule.
        assert_eq!(rec.runs_of(1), vec![secs(0), secs(60), secs(120)]);
        // Removed: no run after the replacement.
        assert_eq!(rec.runs_of(2), vec![secs(0)]);
        // Changed: restarted at replacement time with the new interval.
        assert_eq!(rec.runs_of(3), vec![secs(0), secs(30), secs(130)]);
        // An empty schedule cancels everything.
        assert_eq!(s.apply(vec![]).cancelled, 2);
        tokio::time::sleep(secs(600)).await;
        assert_eq!(rec.runs_of(1).len(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn respects_start_and_stop_time() {
        let rec = Recorder::new(Duration::ZERO);
        let mut s = Scheduler::new(rec.clone(), Arc::new(Outbox::new(100)), 16);
        let now = crate::unix_now().ceil() as i64;
        let mut t = task(1, 60, 0);
        t.start_time = Some(now + 100);
        t.stop_time = Some(now + 100 + 150);
        let mut past = task(2, 60, 0);
        past.stop_time = Some(now - 10);
        let mut oneoff = task(3, 60, 0);
        oneoff.is_oneoff = true;
        s.apply(vec![t, past, oneoff.clone()]);
        tokio::time::sleep(secs(1000)).await;
        let runs = rec.runs_of(1);
        assert_eq!(runs.len(), 3, "{runs:?}");
        let first = runs[0].as_secs_f64();
        assert!((99.0..=101.0).contains(&first), "{runs:?}");
        assert!(rec.runs_of(2).is_empty());
        assert_eq!(rec.runs_of(3), vec![secs(0)]);
        // Re-sending an unchanged one-off does not run it again.
        s.apply(vec![oneoff]);
        tokio::time::sleep(secs(10)).await;
        assert_eq!(rec.runs_of(3).len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn spread_offsets_stay_within_each_period() {
        let rec = Recorder::new(Duration::ZERO);
        let mut s = Scheduler::new(rec.clone(), Arc::new(Outbox::new(1000)), 16);
        // Spread wider than the interval is bounded by the interval.
        s.apply(vec![task(1, 60, 20), task(2, 10, 1000)]);
        tokio::time::sleep(secs(60 * 20)).await;
        let runs = rec.runs_of(1);
        assert_eq!(runs.len(), 20);
        for (k, at) in runs.iter().enumerate() {
            let offset = at.as_secs_f64() - 60.0 * k as f64;
            assert!((0.0..20.0).contains(&offset), "run {k} at {at:?}");
        }
        let runs = rec.runs_of(2);
        assert!((119..=120).contains(&runs.len()), "{}", runs.len());
        for (k, at) in runs.iter().enumerate() {
            let offset = at.as_secs_f64() - 10.0 * k as f64;
            assert!((0.0..10.0).contains(&offset), "run {k} at {at:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn concurrency_is_bounded_and_skips_are_counted() {
        let rec = Recorder::new(secs(30));
        let mut s = Scheduler::new(rec.clone(), Arc::new(Outbox::new(100)), 2);
        s.apply(vec![task(1, 60, 0), task(2, 60, 0), task(3, 60, 0)]);
        tokio::time::sleep(secs(1)).await;
        assert_eq!(rec.runs.lock().expect("lock").len(), 2);
        assert_eq!(s.stats().skipped.load(Ordering::Relaxed), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn overrunning_runs_skip_periods() {
        let rec = Recorder::new(secs(150));
        let mut s = Scheduler::new(rec.clone(), Arc::new(Outbox::new(100)), 16);
        s.apply(vec![task(1, 60, 0)]);
        tokio::time::sleep(secs(400)).await;
        // Runs at 0 (ends 150, in period 2), at 150 (ends 300, period 5), at 300.
        assert_eq!(rec.runs_of(1), vec![secs(0), secs(150), secs(300)]);
        assert_eq!(s.stats().skipped.load(Ordering::Relaxed), 3);
    }
}
