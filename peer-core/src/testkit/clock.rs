//! [`ManualClock`]: monotonic time that moves only when the test says so, with the wall clock
//! following it from [`epoch`](super::epoch).
//!
//! Two ways to move it: [`ManualClock::advance`] by a duration (every sleeper whose deadline has
//! come wakes), or [`ManualClock::advance_to_next_deadline`], which jumps to the earliest pending
//! sleeper's deadline (so a test can run a component from timer to timer with exact backoffs).
//! A clock nobody advances stands still: time 0, the epoch (or the instant given to
//! [`ManualClock::at`]), sleeps that never end.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::sync::oneshot;

use crate::env::{BoxFuture, Clock, Instant};

/// See the module doc.
pub struct ManualClock {
    state: Mutex<State>,
}

struct State {
    /// Monotonic now, nanoseconds since the clock was made.
    now: u64,
    /// The wall clock at monotonic time 0.
    wall_start: SystemTime,
    /// Pending sleeps: deadline and how to wake the sleeper.
    sleepers: Vec<(u64, oneshot::Sender<()>)>,
}

impl Default for ManualClock {
    fn default() -> ManualClock {
        ManualClock { state: Mutex::new(State { now: 0, wall_start: super::epoch(), sleepers: Vec::new() }) }
    }
}

impl ManualClock {
    /// A clock at monotonic time 0 and wall time [`epoch`](super::epoch).
    pub fn new() -> Arc<ManualClock> {
        Arc::new(ManualClock::default())
    }

    /// A clock at monotonic time 0 and wall time `wall` (left alone, a clock stopped there).
    pub fn at(wall: SystemTime) -> Arc<ManualClock> {
        let clock = ManualClock::default();
        clock.set_wall_clock(wall);
        Arc::new(clock)
    }

    /// Moves time forward by `by` and wakes every sleeper whose deadline has come.
    pub fn advance(&self, by: Duration) {
        let mut state = self.state.lock().unwrap();
        state.now += u64::try_from(by.as_nanos()).unwrap();
        Self::wake_due(state);
    }

    /// Jumps to the earliest pending sleeper's deadline (never backwards) and wakes everyone
    /// due. False, and time does not move, if nobody sleeps.
    pub fn advance_to_next_deadline(&self) -> bool {
        let mut state = self.state.lock().unwrap();
        state.sleepers.retain(|(_, wake)| !wake.is_closed());
        let Some(next) = state.sleepers.iter().map(|(deadline, _)| *deadline).min() else { return false };
        state.now = state.now.max(next);
        Self::wake_due(state);
        true
    }

    /// Monotonic time since the clock was made.
    pub fn elapsed(&self) -> Duration {
        Duration::from_nanos(self.state.lock().unwrap().now)
    }

    /// Sets the wall clock (as an operator or NTP would): monotonic time does not move and no
    /// sleeper wakes; from here the wall clock follows monotonic time again.
    pub fn set_wall_clock(&self, at: SystemTime) {
        let mut state = self.state.lock().unwrap();
        state.wall_start = at - Duration::from_nanos(state.now);
    }

    fn wake_due(mut state: std::sync::MutexGuard<'_, State>) {
        let now = state.now;
        let (due, pending): (Vec<_>, Vec<_>) = std::mem::take(&mut state.sleepers).into_iter().partition(|(deadline, _)| *deadline <= now);
        state.sleepers = pending;
        drop(state);
        for (_, wake) in due {
            let _ = wake.send(());
        }
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        Instant(self.state.lock().unwrap().now)
    }
    fn wall_clock(&self) -> SystemTime {
        let state = self.state.lock().unwrap();
        state.wall_start + Duration::from_nanos(state.now)
    }
    fn sleep_until(&self, deadline: Instant) -> BoxFuture<'static, ()> {
        let mut state = self.state.lock().unwrap();
        if deadline.0 <= state.now {
            return Box::pin(std::future::ready(()));
        }
        // Sleeps given up on (their futures dropped) are forgotten here, so a clock that is never
        // advanced does not collect them.
        state.sleepers.retain(|(_, wake)| !wake.is_closed());
        let (wake, woken) = oneshot::channel();
        state.sleepers.push((deadline.0, wake));
        Box::pin(async move {
            // Woken by the clock; a clock that is gone never reaches the deadline.
            if woken.await.is_err() {
                std::future::pending::<()>().await;
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::task::{Context, Poll, Waker};

    fn ready(future: &mut BoxFuture<'static, ()>) -> bool {
        matches!(future.as_mut().poll(&mut Context::from_waker(Waker::noop())), Poll::Ready(()))
    }

    #[test]
    fn advancing_wakes_sleepers_whose_deadline_has_come() {
        let clock = ManualClock::new();
        assert_eq!(clock.wall_clock(), crate::testkit::epoch());
        let mut short = clock.sleep(Duration::from_secs(1));
        let mut long = clock.sleep(Duration::from_secs(3));
        assert!(!ready(&mut short) && !ready(&mut long));
        clock.advance(Duration::from_millis(1500));
        assert!(ready(&mut short) && !ready(&mut long));
        assert_eq!(clock.wall_clock(), crate::testkit::epoch() + Duration::from_millis(1500));
        assert!(clock.advance_to_next_deadline());
        assert_eq!(clock.elapsed(), Duration::from_secs(3));
        assert!(ready(&mut long));
        assert!(!clock.advance_to_next_deadline());
        assert_eq!(clock.elapsed(), Duration::from_secs(3));
        let mut past = clock.sleep_until(Instant(1));
        assert!(ready(&mut past));
    }

    #[test]
    fn setting_the_wall_clock_leaves_monotonic_time_alone() {
        let clock = ManualClock::new();
        let mut sleep = clock.sleep(Duration::from_secs(1));
        let later = crate::testkit::epoch() + Duration::from_secs(86_400);
        clock.set_wall_clock(later);
        assert_eq!(clock.wall_clock(), later);
        assert_eq!(clock.now(), Instant(0));
        assert!(!ready(&mut sleep));
        clock.advance(Duration::from_secs(1));
        assert_eq!(clock.wall_clock(), later + Duration::from_secs(1));
        assert!(ready(&mut sleep));
    }
}
