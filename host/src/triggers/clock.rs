//! The scheduler's clock: the current instant and a way to sleep until a
//! later one. [`SystemClock`] is the real one; [`SimClock`] is moved by hand
//! so DST, missed-run and overlap scenarios run in milliseconds.

use chrono::{DateTime, TimeDelta, Utc};
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;

/// A future returned by [`Clock::sleep_until`].
pub type Sleep<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

/// Where the scheduler gets the time from.
pub trait Clock: Send + Sync {
    /// The current instant.
    fn now(&self) -> DateTime<Utc>;
    /// Completes once [`Clock::now`] has reached `deadline` (at once if it has).
    fn sleep_until(&self, deadline: DateTime<Utc>) -> Sleep<'_>;
}

/// The wall clock. Sleeps are measured on tokio's monotonic timer, so a
/// wall-clock step (NTP, suspend) is only noticed at the next wake-up; the
/// scheduler never sleeps longer than its rescan interval (2 s), which
/// bounds how late such a step can make it.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }

    fn sleep_until(&self, deadline: DateTime<Utc>) -> Sleep<'_> {
        Box::pin(async move {
            // Loop: tokio's timer has millisecond resolution, and the wall
            // clock may disagree slightly with the monotonic one.
            loop {
                let left = deadline - Utc::now();
                if left <= TimeDelta::zero() {
                    return;
                }
                let left = left.to_std().unwrap_or_default().max(std::time::Duration::from_micros(100));
                tokio::time::sleep(left).await;
            }
        })
    }
}

/// A simulated clock: time stands still until [`SimClock::set`] or
/// [`SimClock::advance`] moves it; sleepers wake when it passes their deadline.
pub struct SimClock {
    now: Mutex<DateTime<Utc>>,
    tick: tokio::sync::watch::Sender<DateTime<Utc>>,
}

impl SimClock {
    pub fn new(start: DateTime<Utc>) -> SimClock {
        SimClock {
            now: Mutex::new(start),
            tick: tokio::sync::watch::channel(start).0,
        }
    }

    /// Move the clock to `t` (it may go backwards, like a wall clock can).
    pub fn set(&self, t: DateTime<Utc>) {
        if let Ok(mut now) = self.now.lock() {
            *now = t;
        }
        self.tick.send_replace(t);
    }

    /// Move the clock forward by `d`.
    pub fn advance(&self, d: TimeDelta) {
        let t = self.now() + d;
        self.set(t);
    }
}

impl Clock for SimClock {
    fn now(&self) -> DateTime<Utc> {
        self.now.lock().map(|t| *t).unwrap_or(DateTime::<Utc>::MIN_UTC)
    }

    fn sleep_until(&self, deadline: DateTime<Utc>) -> Sleep<'_> {
        let mut rx = self.tick.subscribe();
        Box::pin(async move {
            let _ = rx.wait_for(|now| *now >= deadline).await;
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        s.parse().expect("RFC 3339 instant")
    }

    #[tokio::test]
    async fn sim_clock_wakes_sleepers_when_it_passes_their_deadline() {
        let clock = std::sync::Arc::new(SimClock::new(utc("2026-01-01T00:00:00Z")));
        assert_eq!(clock.now(), utc("2026-01-01T00:00:00Z"));
        // A deadline in the past completes at once.
        clock.sleep_until(utc("2025-12-31T00:00:00Z")).await;
        let c = clock.clone();
        let sleeper = tokio::spawn(async move { c.sleep_until(utc("2026-01-01T00:00:10Z")).await });
        tokio::task::yield_now().await;
        clock.advance(TimeDelta::seconds(5));
        tokio::task::yield_now().await;
        assert!(!sleeper.is_finished());
        clock.advance(TimeDelta::seconds(5));
        tokio::time::timeout(std::time::Duration::from_secs(5), sleeper)
            .await
            .expect("woken")
            .expect("joined");
        assert_eq!(clock.now(), utc("2026-01-01T00:00:10Z"));
    }

    #[tokio::test]
    async fn system_clock_sleeps_until_the_deadline() {
        let clock = SystemClock;
        let deadline = clock.now() + TimeDelta::milliseconds(30);
        clock.sleep_until(deadline).await;
        assert!(clock.now() >= deadline);
    }
}
