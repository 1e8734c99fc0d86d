//! A manual clock for tests: monotonic time moves only when the test advances it, and the wall
//! clock follows it from `june_2025()`.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use peer_core::env::{BoxFuture, Clock, Instant};
use tokio::sync::watch;

use crate::node::june_2025;

pub struct ManualClock {
    now: watch::Sender<u64>,
}

impl ManualClock {
    pub fn new() -> Arc<ManualClock> {
        Arc::new(ManualClock { now: watch::Sender::new(0) })
    }

    pub fn advance(&self, by: Duration) {
        self.now.send_modify(|now| *now += u64::try_from(by.as_nanos()).unwrap());
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        Instant(*self.now.borrow())
    }
    fn wall_clock(&self) -> SystemTime {
        june_2025() + Duration::from_nanos(*self.now.borrow())
    }
    fn sleep_until(&self, deadline: Instant) -> BoxFuture<'static, ()> {
        let mut now = self.now.subscribe();
        Box::pin(async move {
            while *now.borrow_and_update() < deadline.0 {
                if now.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
        })
    }
}
