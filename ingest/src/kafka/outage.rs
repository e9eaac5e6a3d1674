//! Broker outages as the consumer sees them: whether it reaches a broker now
//! ([`Reachability`], from librdkafka's statistics and its "all brokers down" error), so
//! that time without messages counts as idle only while the broker could have sent some;
//! and [`Throttle`], which keeps the poll errors of an outage (one every reconnection
//! attempt) to a line now and then; and [`GroupHealth`], how long the consumer group has
//! not been settled, so that a member librdkafka never rejoins after a broker restart
//! (it happens: no connection is made again, the coordinator's requests time out one a
//! minute) is replaced rather than waited for forever.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Whether the consumer is connected to a broker, shared with whoever reads it; and
/// whether it is held back by netwait itself (the poll thread waiting for the driver to
/// take a chunk), when the broker may have more that it cannot send.
#[derive(Debug, Default)]
pub struct Reachability {
    reachable: AtomicBool,
    /// How many times it became reachable (the first connection included).
    returns: AtomicU64,
    held_back: AtomicBool,
}

impl Reachability {
    /// Whether the poll thread waits for the driver now (a long window or checkpoint):
    /// time without messages is then not idle.
    pub fn is_held_back(&self) -> bool {
        self.held_back.load(Ordering::Relaxed)
    }

    pub(crate) fn hold_back(&self, held: bool) {
        self.held_back.store(held, Ordering::Relaxed);
    }

    /// Connected to a broker now (as last seen: statistics come every second).
    pub fn is_reachable(&self) -> bool {
        self.reachable.load(Ordering::Relaxed)
    }

    /// How many times the broker became reachable: a change means it came back.
    pub fn returns(&self) -> u64 {
        self.returns.load(Ordering::Relaxed)
    }

    pub(crate) fn set(&self, reachable: bool) {
        // Called for every message: a plain load when nothing changes.
        if self.reachable.load(Ordering::Relaxed) == reachable {
            return;
        }
        let was = self.reachable.swap(reachable, Ordering::Relaxed);
        if reachable && !was {
            let returns = self.returns.fetch_add(1, Ordering::Relaxed);
            if returns > 0 {
                tracing::info!("kafka broker reachable again");
            }
        } else if was && !reachable {
            tracing::warn!("kafka broker unreachable: waiting for it (the client reconnects)");
        }
    }

    /// From a statistics report: reachable when any broker connection is up. `None` when
    /// the report lists no brokers.
    pub(crate) fn from_statistics(stats: &serde_json::Value) -> Option<bool> {
        let brokers = stats.get("brokers")?.as_object()?;
        Some(
            brokers
                .values()
                .any(|b| b.get("state").and_then(serde_json::Value::as_str) == Some("UP")),
        )
    }
}

/// Whether the consumer's group membership is settled (state `up`, join state `steady`,
/// as the statistics say every second), and since when it is not.
#[derive(Debug)]
pub struct GroupHealth {
    unsettled: Mutex<Unsettled>,
}

#[derive(Debug)]
struct Unsettled {
    /// Since when the group is not settled (`None`: it is).
    since: Option<Instant>,
    /// The last state seen, `state/join_state`.
    state: String,
}

impl GroupHealth {
    /// A member that has not joined yet: unsettled from `now`.
    pub fn joining(now: Instant) -> Self {
        Self {
            unsettled: Mutex::new(Unsettled {
                since: Some(now),
                state: "joining".into(),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Unsettled> {
        self.unsettled.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records a statistics report's group state, seen at `now`.
    pub(crate) fn observe(&self, stats: &serde_json::Value, now: Instant) {
        let Some((state, join)) = Self::from_statistics(stats) else {
            return;
        };
        let mut u = self.lock();
        let settled = state == "up" && join == "steady";
        u.since = if settled {
            None
        } else {
            Some(u.since.unwrap_or(now))
        };
        u.state = format!("{state}/{join}");
    }

    /// How long the group has not been settled at `now`, and its last state; `None`
    /// while it is.
    pub fn unsettled_for(&self, now: Instant) -> Option<(Duration, String)> {
        let u = self.lock();
        u.since
            .map(|since| (now.saturating_duration_since(since), u.state.clone()))
    }

    /// The group's `state` and `join_state` in a statistics report.
    fn from_statistics(stats: &serde_json::Value) -> Option<(&str, &str)> {
        let cgrp = stats.get("cgrp")?;
        let field = |name| cgrp.get(name).and_then(serde_json::Value::as_str);
        Some((field("state")?, field("join_state")?))
    }
}

/// How often a repeated error is said while it goes on.
const EVERY: Duration = Duration::from_secs(10);

/// Says an error the first time, then at most once every [`EVERY`] with how many were
/// not said in between.
#[derive(Debug, Default)]
pub struct Throttle {
    last: Option<Instant>,
    quiet: u64,
}

impl Throttle {
    /// Whether to say this one now, and how many were kept quiet before it.
    pub fn admit(&mut self, now: Instant) -> Option<u64> {
        if self.last.is_some_and(|t| now.duration_since(t) < EVERY) {
            self.quiet += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.quiet))
    }

    /// The errors are over: the next one is said at once.
    pub fn reset(&mut self) {
        *self = Self::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reachable_when_a_broker_connection_is_up() {
        let stats = |states: &[&str]| {
            let brokers: serde_json::Map<_, _> = states
                .iter()
                .enumerate()
                .map(|(i, s)| (format!("b{i}"), serde_json::json!({ "state": s })))
                .collect();
            serde_json::json!({ "brokers": brokers })
        };
        assert_eq!(
            Reachability::from_statistics(&stats(&["INIT", "UP"])),
            Some(true)
        );
        assert_eq!(
            Reachability::from_statistics(&stats(&["DOWN", "CONNECT", "TRY_CONNECT"])),
            Some(false)
        );
        assert_eq!(Reachability::from_statistics(&serde_json::json!({})), None);

        let r = Reachability::default();
        assert!(!r.is_reachable());
        r.set(true);
        r.set(true);
        assert_eq!((r.is_reachable(), r.returns()), (true, 1));
        r.set(false);
        assert!(!r.is_reachable());
        r.set(true);
        assert_eq!((r.is_reachable(), r.returns()), (true, 2));
    }

    #[test]
    fn the_group_is_unsettled_from_its_start_until_up_and_steady_and_again_after() {
        let stats = |state: &str, join: &str| serde_json::json!({ "cgrp": { "state": state, "join_state": join } });
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let h = GroupHealth::joining(t0);
        assert_eq!(
            h.unsettled_for(at(5)),
            Some((Duration::from_secs(5), "joining".into()))
        );
        h.observe(&stats("up", "wait-join"), at(6));
        assert_eq!(
            h.unsettled_for(at(7)).map(|u| u.0),
            Some(Duration::from_secs(7))
        );
        h.observe(&stats("up", "steady"), at(8));
        assert_eq!(h.unsettled_for(at(9)), None);
        // A report without the group (a follower's) changes nothing.
        h.observe(&serde_json::json!({ "brokers": {} }), at(10));
        assert_eq!(h.unsettled_for(at(10)), None);
        h.observe(&stats("wait-coord", "init"), at(20));
        h.observe(&stats("query-coord", "init"), at(40));
        assert_eq!(
            h.unsettled_for(at(80)),
            Some((Duration::from_secs(60), "query-coord/init".into()))
        );
    }

    #[test]
    fn a_repeated_error_is_said_once_every_ten_seconds_with_the_count_kept_quiet() {
        let mut t = Throttle::default();
        let t0 = Instant::now();
        assert_eq!(t.admit(t0), Some(0));
        for ms in [100, 5_000, 9_900] {
            assert_eq!(t.admit(t0 + Duration::from_millis(ms)), None);
        }
        assert_eq!(t.admit(t0 + Duration::from_secs(10)), Some(3));
        assert_eq!(t.admit(t0 + Duration::from_secs(11)), None);
        t.reset();
        assert_eq!(t.admit(t0 + Duration::from_secs(12)), Some(0));
    }
}
