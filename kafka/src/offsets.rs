//! At-least-once offset management.
//!
//! A record is *begun* when it is read and *finished* when its work is durable (the router's
//! output acknowledged, a sink's delivery accepted or dead-lettered). The position committed for a
//! partition is the lowest offset still in flight, or one past the highest finished offset when
//! nothing is in flight. Completions may arrive in any order; the position never passes an
//! unfinished record, so a crash can only cause redelivery, never loss.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rdkafka::config::FromClientConfigAndContext;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::error::{KafkaError as RdKafkaError, KafkaResult};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use crate::{KafkaConfig, KafkaError, Prefetch};

#[derive(Debug, Default)]
struct PartitionState {
    /// Offsets begun and not yet passed by the position, ascending, each with whether it is
    /// finished. Finished offsets at the front are dropped at once, so the front, when there is
    /// one, is the lowest unfinished offset. Records are begun in offset order, so `begin` is a
    /// push at the back and `finish` usually hits the front: no allocation per record once the
    /// window has grown to the number in flight (a `BTreeSet` allocated a node per record).
    window: VecDeque<(i64, bool)>,
    /// Entries of `window` not finished.
    unfinished: usize,
    /// One past the highest offset begun.
    next: Option<i64>,
    /// Last position the broker confirmed as committed.
    committed: Option<i64>,
}

impl PartitionState {
    fn begin(&mut self, offset: i64) {
        match self.window.back() {
            Some(&(last, _)) if offset <= last => {
                // Rare: the same or an earlier offset again (a seek). Keep the window sorted and
                // each offset once, as a set would.
                match self.window.binary_search_by_key(&offset, |&(o, _)| o) {
                    Ok(at) => {
                        if std::mem::replace(&mut self.window[at].1, false) {
                            self.unfinished += 1;
                        }
                    }
                    Err(at) => {
                        self.window.insert(at, (offset, false));
                        self.unfinished += 1;
                    }
                }
            }
            _ => {
                self.window.push_back((offset, false));
                self.unfinished += 1;
            }
        }
        self.next = self.next.max(Some(offset + 1));
    }

    fn finish(&mut self, offset: i64) {
        let at = match self.window.front() {
            Some(&(first, _)) if first == offset => 0,
            _ => match self.window.binary_search_by_key(&offset, |&(o, _)| o) {
                Ok(at) => at,
                // Not in flight here (finished already, or begun before a revocation).
                Err(_) => return,
            },
        };
        if !std::mem::replace(&mut self.window[at].1, true) {
            self.unfinished -= 1;
        }
        while self.window.front().is_some_and(|&(_, finished)| finished) {
            self.window.pop_front();
        }
    }

    fn position(&self) -> Option<i64> {
        self.window.front().map(|&(offset, _)| offset).or(self.next)
    }

    fn uncommitted_position(&self) -> Option<i64> {
        self.position()
            .filter(|&position| Some(position) > self.committed)
    }
}

/// Per-partition record of work in flight; see the module docs.
#[derive(Debug, Default)]
pub struct OffsetTracker {
    topics: HashMap<String, HashMap<i32, PartitionState>>,
}

impl OffsetTracker {
    fn state(&mut self, topic: &str, partition: i32) -> &mut PartitionState {
        // Look up by &str first so the hot path allocates nothing.
        if !self.topics.contains_key(topic) {
            self.topics.insert(topic.to_owned(), HashMap::new());
        }
        self.topics
            .get_mut(topic)
            .expect("inserted above")
            .entry(partition)
            .or_default()
    }

    /// Registers a record as read and not yet finished.
    pub fn begin(&mut self, topic: &str, partition: i32, offset: i64) {
        self.state(topic, partition).begin(offset);
    }

    /// Marks a record finished. Records of partitions that were revoked meanwhile are ignored.
    pub fn finish(&mut self, topic: &str, partition: i32, offset: i64) {
        if let Some(state) = self
            .topics
            .get_mut(topic)
            .and_then(|partitions| partitions.get_mut(&partition))
        {
            state.finish(offset);
        }
    }

    /// Records begun and not finished, over all partitions.
    pub fn in_flight(&self) -> usize {
        self.topics
            .values()
            .flat_map(|partitions| partitions.values())
            .map(|state| state.unfinished)
            .sum()
    }

    /// Positions that may be committed and are ahead of what the broker has confirmed.
    pub fn to_commit(&self) -> TopicPartitionList {
        self.positions(|_, _| true)
    }

    /// Like [`Self::to_commit`], restricted to the given partitions.
    pub fn to_commit_for(&self, partitions: &TopicPartitionList) -> TopicPartitionList {
        self.positions(|topic, partition| partitions.find_partition(topic, partition).is_some())
    }

    fn positions(&self, include: impl Fn(&str, i32) -> bool) -> TopicPartitionList {
        let mut list = TopicPartitionList::new();
        for (topic, partitions) in &self.topics {
            for (&partition, state) in partitions {
                if let Some(position) = state
                    .uncommitted_position()
                    .filter(|_| include(topic, partition))
                {
                    list.add_partition_offset(topic, partition, Offset::Offset(position))
                        .expect("a fresh list accepts any offset");
                }
            }
        }
        list
    }

    /// Records positions the broker confirmed.
    pub fn confirm(&mut self, committed: &TopicPartitionList) {
        for element in committed.elements() {
            if let (Offset::Offset(position), Some(state)) = (
                element.offset(),
                self.topics
                    .get_mut(element.topic())
                    .and_then(|partitions| partitions.get_mut(&element.partition())),
            ) {
                state.committed = state.committed.max(Some(position));
            }
        }
    }

    /// Drops the state of partitions this process no longer owns.
    pub fn forget(&mut self, partitions: &TopicPartitionList) {
        for element in partitions.elements() {
            if let Some(states) = self.topics.get_mut(element.topic()) {
                states.remove(&element.partition());
            }
        }
    }
}

/// Consumer context that commits a partition's safe position when the partition is revoked, and
/// records which commits the broker confirmed.
#[derive(Debug, Clone, Default)]
pub struct TrackingContext {
    tracker: Arc<Mutex<OffsetTracker>>,
    /// Set by [`TrackingContext::commit_before_close`]: revocations then commit nothing more.
    closing: Arc<AtomicBool>,
    /// Whether the group uses the cooperative protocol (`cooperative-sticky` in
    /// `partition.assignment.strategy`), which takes incremental (un)assignments.
    cooperative: bool,
}

/// The stream consumer every pipeline stage uses.
pub type TrackingConsumer = StreamConsumer<TrackingContext>;

impl TrackingContext {
    /// The tracker shared with the callbacks. Never hold the guard across an `.await` or a poll.
    pub fn tracker(&self) -> MutexGuard<'_, OffsetTracker> {
        // A panic while holding the lock leaves consistent data (each method is one update), so
        // recover the guard instead of propagating the poison.
        self.tracker
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    /// Commits every position the tracker allows. `Sync` waits for the broker.
    pub fn commit<C: Consumer<TrackingContext>>(
        &self,
        consumer: &C,
        mode: CommitMode,
    ) -> KafkaResult<()> {
        let offsets = self.tracker().to_commit();
        if offsets.count() == 0 {
            return Ok(());
        }
        consumer.commit(&offsets, mode)
    }

    /// A stopping stage's last commit, which waits for the broker. With the broker down,
    /// librdkafka fails it after `session.timeout.ms` (10 s by default here) of waiting for a
    /// coordinator. Revocations commit nothing from then on: closing the consumer revokes every
    /// partition, and committing again there waited as long a second time (a router stopped
    /// during a broker outage took 34 s to exit with a 10 s drain timeout).
    pub fn commit_before_close<C: Consumer<TrackingContext>>(
        &self,
        consumer: &C,
    ) -> KafkaResult<()> {
        self.closing.store(true, Ordering::SeqCst);
        self.commit(consumer, CommitMode::Sync)
    }
}

impl ClientContext for TrackingContext {}

impl ConsumerContext for TrackingContext {
    /// rdkafka's default asks librdkafka for the group's rebalance protocol on every rebalance.
    /// That request waits, without a timeout, for the group's thread to answer, and when the
    /// rebalance comes while the consumer closes and the group is already gone it never does
    /// (librdkafka issue 4041): a sink whose fellow worker left at the same moment hung after
    /// SIGTERM, past its drain timeout, until killed. The protocol follows from the
    /// configuration, so it is known from the start instead.
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        partitions: &mut TopicPartitionList,
    ) {
        let rebalance = match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => Rebalance::Assign(partitions),
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => Rebalance::Revoke(partitions),
            other => Rebalance::Error(RdKafkaError::Rebalance(other.into())),
        };
        self.pre_rebalance(consumer, &rebalance);
        // As rdkafka's default: anything but an assignment (a revocation or an error) drops the
        // assignment, so that librdkafka can go on with the rebalance.
        let assigning = matches!(rebalance, Rebalance::Assign(_));
        let applied = match (assigning, self.cooperative) {
            (true, true) => consumer.incremental_assign(partitions),
            (true, false) => consumer.assign(partitions),
            (false, true) => consumer.incremental_unassign(partitions),
            (false, false) => consumer.unassign(),
        };
        if let Err(err) = applied {
            tracing::warn!(error = %err, "applying a rebalance failed");
        }
        self.post_rebalance(consumer, &rebalance);
    }

    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Revoke(revoked) => {
                let offsets = self.tracker().to_commit_for(revoked);
                if self.closing.load(Ordering::SeqCst) {
                    // The final commit covered these partitions, or logged that it could not.
                } else if consumer.assignment_lost() {
                    // The session timed out (as in a broker outage): the partitions belong to
                    // the group already, and committing them would fail after waiting for a
                    // coordinator.
                    if offsets.count() > 0 {
                        tracing::warn!(
                            partitions = offsets.count(),
                            "partitions lost (the group session timed out); records after their committed offsets will be delivered again"
                        );
                    }
                } else if offsets.count() > 0 {
                    // Synchronous, so that the next owner starts where this one stopped. The
                    // coordinator that just announced the rebalance is there to answer.
                    match consumer.commit(&offsets, CommitMode::Sync) {
                        Ok(()) => tracing::info!(
                            partitions = offsets.count(),
                            "committed revoked partitions"
                        ),
                        Err(err) => {
                            tracing::warn!(error = %err, "commit on revocation failed; those records will be redelivered")
                        }
                    }
                }
                let in_flight_before = self.tracker().in_flight();
                self.tracker().forget(revoked);
                tracing::info!(
                    revoked = revoked.count(),
                    abandoned_in_flight = in_flight_before - self.tracker().in_flight(),
                    "partitions revoked"
                );
            }
            Rebalance::Assign(assigned) => {
                tracing::info!(assigned = assigned.count(), "partitions assigned");
            }
            Rebalance::Error(err) => tracing::warn!(error = %err, "rebalance error"),
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
        match result {
            Ok(()) => self.tracker().confirm(offsets),
            Err(err) => {
                tracing::warn!(error = %err, "offset commit failed; it is retried on the next tick")
            }
        }
    }
}

/// How long a stopping stage waits for its consumer to close (leave its group) before exiting
/// without it. A close takes milliseconds with the broker up.
pub const CONSUMER_CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// Closes a group consumer by dropping it on a thread of its own, and waits for that at most
/// `timeout`; returns whether it closed in time. rdkafka's drop polls until librdkafka reports
/// the consumer closed, without a bound, and with the broker down a router stopped during an
/// outage waited there for good: its group coordinator's queue kept a request that timed out and
/// was queued again every minute. Past the bound the caller goes on (a stopping stage exits and
/// the thread dies with the process). Nothing is lost: the group gives the partitions to another
/// member once this one's session times out, from the last committed offsets.
pub fn close_within<C: Send + 'static>(consumer: C, timeout: Duration) -> bool {
    let (closed, wait) = std::sync::mpsc::channel();
    let spawned = std::thread::Builder::new()
        .name("consumer-close".to_owned())
        .spawn(move || {
            drop(consumer);
            // The caller may have stopped waiting; nothing is left to tell then.
            let _ = closed.send(());
        });
    if let Err(err) = spawned {
        tracing::warn!(error = %err, "cannot start a thread to close the consumer; exiting without closing it");
        return false;
    }
    let in_time = wait.recv_timeout(timeout).is_ok();
    if !in_time {
        tracing::warn!(
            ?timeout,
            "the consumer did not leave its group in time (is the broker down?); exiting without it: the group moves its partitions on when the session times out"
        );
    }
    in_time
}

impl KafkaConfig {
    /// A consumer in `group` whose context tracks offsets; see [`TrackingContext`]. Either the
    /// [`TrackingConsumer`] the async stages use or a `BaseConsumer` polled on a thread of its own.
    pub fn tracking_consumer<C>(&self, group: &str, prefetch: Prefetch) -> Result<C, KafkaError>
    where
        C: FromClientConfigAndContext<TrackingContext>,
    {
        let config = self.stage_consumer(group, prefetch);
        let cooperative = config
            .get("partition.assignment.strategy")
            .is_some_and(|strategy| strategy.contains("cooperative-sticky"));
        let context = TrackingContext {
            cooperative,
            ..TrackingContext::default()
        };
        config
            .create_with_context(context)
            .map_err(|source| KafkaError::CreateClient {
                kind: "consumer",
                brokers: self.brokers.clone(),
                source,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Stands in for a consumer whose close waits until `release` is dropped or sent to.
    struct SlowToClose(std::sync::mpsc::Receiver<()>);

    impl Drop for SlowToClose {
        fn drop(&mut self) {
            let _ = self.0.recv();
        }
    }

    #[test]
    fn closing_waits_for_the_close_but_not_past_the_bound() {
        let (_release, held) = std::sync::mpsc::channel();
        let started = std::time::Instant::now();
        assert!(!close_within(SlowToClose(held), Duration::from_millis(200)));
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_millis(200) && waited < Duration::from_secs(5),
            "{waited:?}"
        );

        let (release, held) = std::sync::mpsc::channel();
        release.send(()).unwrap();
        assert!(close_within(SlowToClose(held), Duration::from_secs(5)));
    }

    fn positions(tracker: &OffsetTracker) -> Vec<(String, i32, i64)> {
        let mut list: Vec<_> = tracker
            .to_commit()
            .elements()
            .iter()
            .map(|e| match e.offset() {
                Offset::Offset(o) => (e.topic().to_owned(), e.partition(), o),
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        list.sort();
        list
    }

    #[test]
    fn position_never_passes_an_unfinished_record() {
        let mut tracker = OffsetTracker::default();
        for offset in 10..15 {
            tracker.begin("t", 0, offset);
        }
        assert_eq!(positions(&tracker), [("t".into(), 0, 10)]);
        // Out-of-order completions: 11, 13, 14 finish, 10 and 12 are still in flight.
        for offset in [11, 13, 14] {
            tracker.finish("t", 0, offset);
        }
        assert_eq!(positions(&tracker), [("t".into(), 0, 10)]);
        tracker.finish("t", 0, 10);
        assert_eq!(positions(&tracker), [("t".into(), 0, 12)]);
        tracker.finish("t", 0, 12);
        assert_eq!(positions(&tracker), [("t".into(), 0, 15)]);
        assert_eq!(tracker.in_flight(), 0);
    }

    #[test]
    fn confirmed_positions_are_not_committed_again() {
        let mut tracker = OffsetTracker::default();
        tracker.begin("t", 1, 0);
        tracker.finish("t", 1, 0);
        let offsets = tracker.to_commit();
        tracker.confirm(&offsets);
        assert!(positions(&tracker).is_empty());
        tracker.begin("t", 1, 1);
        assert!(
            positions(&tracker).is_empty(),
            "position 1 is already committed"
        );
        tracker.finish("t", 1, 1);
        assert_eq!(positions(&tracker), [("t".into(), 1, 2)]);
    }

    #[test]
    fn revoked_partitions_are_committed_alone_and_forgotten() {
        let mut tracker = OffsetTracker::default();
        tracker.begin("a", 0, 5);
        tracker.begin("a", 1, 7);
        tracker.finish("a", 1, 7);
        let mut revoked = TopicPartitionList::new();
        revoked.add_partition("a", 1);
        let offsets = tracker.to_commit_for(&revoked);
        assert_eq!(offsets.count(), 1);
        assert_eq!(
            offsets.find_partition("a", 1).unwrap().offset(),
            Offset::Offset(8)
        );
        tracker.forget(&revoked);
        // A late completion of the forgotten partition changes nothing.
        tracker.finish("a", 1, 7);
        assert_eq!(positions(&tracker), [("a".into(), 0, 5)]);
    }

    /// The position the module docs define, computed the slow way: the lowest unfinished offset
    /// ever begun, else one past the highest begun.
    fn model_position(
        begun: &std::collections::BTreeSet<i64>,
        finished: &std::collections::BTreeSet<i64>,
    ) -> Option<i64> {
        begun
            .difference(finished)
            .next()
            .copied()
            .or_else(|| begun.last().map(|last| last + 1))
    }

    proptest::proptest! {
        /// Any order of begins (mostly ascending, sometimes a seek back) and finishes gives the
        /// position of the set model, and the in-flight count of it.
        #[test]
        fn window_agrees_with_a_set_model(
            steps in proptest::collection::vec((0i64..40, proptest::bool::weighted(0.6)), 1..200)
        ) {
            let mut tracker = OffsetTracker::default();
            let mut begun = std::collections::BTreeSet::new();
            let mut in_flight = std::collections::BTreeSet::new();
            for (offset, is_begin) in steps {
                if is_begin {
                    tracker.begin("t", 0, offset);
                    begun.insert(offset);
                    in_flight.insert(offset);
                } else {
                    tracker.finish("t", 0, offset);
                    in_flight.remove(&offset);
                }
                let finished: std::collections::BTreeSet<i64> =
                    begun.difference(&in_flight).copied().collect();
                let expected = model_position(&begun, &finished);
                let position = tracker
                    .to_commit()
                    .find_partition("t", 0)
                    .map(|element| element.offset());
                proptest::prop_assert_eq!(position, expected.map(Offset::Offset));
                proptest::prop_assert_eq!(tracker.in_flight(), in_flight.len());
            }
        }
    }

    #[test]
    fn an_offset_begun_again_after_a_seek_holds_the_position_back() {
        let mut tracker = OffsetTracker::default();
        for offset in 0..4 {
            tracker.begin("t", 0, offset);
        }
        tracker.finish("t", 0, 2);
        // Seek back: 1 and 2 are read again while 0 is still in flight.
        tracker.begin("t", 0, 1);
        tracker.begin("t", 0, 2);
        tracker.finish("t", 0, 0);
        tracker.finish("t", 0, 1);
        assert_eq!(positions(&tracker), [("t".into(), 0, 2)]);
        tracker.finish("t", 0, 2);
        assert_eq!(positions(&tracker), [("t".into(), 0, 3)]);
        tracker.finish("t", 0, 3);
        assert_eq!(positions(&tracker), [("t".into(), 0, 4)]);
        assert_eq!(tracker.in_flight(), 0);
    }
}
