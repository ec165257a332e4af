//! Which offsets are safe to commit: per partition, everything before the first
//! message that is not finished yet (still waiting for a retry or a DLQ write).
//! Committing no further than that is what makes a crash lose nothing.

use std::collections::{BTreeSet, HashMap};

/// The offsets received since a partition was assigned, as ranges `[start,
/// end)`. Messages come in offset order, so each one extends the last range
/// (over any gap a compacted topic leaves); only a seek backwards starts
/// another, which closes up once it reaches the first.
#[derive(Debug, Default)]
struct Seen(Vec<(i64, i64)>);

impl Seen {
    /// Records `offset`; false if it was received before.
    fn insert(&mut self, offset: i64) -> bool {
        // The last range starting at or before the offset.
        let i = self.0.partition_point(|(start, _)| *start <= offset);
        if i > 0 && offset < self.0[i - 1].1 {
            return false;
        }
        if i > 0 {
            self.0[i - 1].1 = offset + 1;
        } else {
            self.0.insert(0, (offset, offset + 1));
        }
        let at = i.saturating_sub(1);
        if at + 1 < self.0.len() && self.0[at].1 >= self.0[at + 1].0 {
            self.0[at].1 = self.0[at].1.max(self.0[at + 1].1);
            self.0.remove(at + 1);
        }
        true
    }
}

#[derive(Debug, Default)]
struct Partition {
    unfinished: BTreeSet<i64>,
    /// The stored position: everything below it was applied already.
    floor: Option<i64>,
    seen: Seen,
    committed: Option<i64>,
    /// The partition was read to its end and nothing newer has arrived since.
    at_end: bool,
}

impl Partition {
    fn safe(&self) -> Option<i64> {
        self.unfinished.first().copied().or_else(|| self.next())
    }

    /// One past the highest offset received, or the stored position if higher.
    fn next(&self) -> Option<i64> {
        let received = self.seen.0.last().map(|(_, end)| *end);
        received.max(self.floor)
    }
}

/// What became of a message handed to [`Offsets::received`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Receipt {
    New,
    Behind,
    NotOwned,
}

#[derive(Debug, Default)]
pub struct Offsets {
    parts: HashMap<i32, Partition>,
}

impl Offsets {
    pub fn assign(&mut self, partition: i32) {
        self.parts.entry(partition).or_default();
    }

    /// Starts a partition at a known position (the store's), so commits and
    /// positions begin there even before a message arrives.
    /// A partition revoked since it was assigned stays gone.
    pub fn assign_at(&mut self, partition: i32, next: i64) {
        if let Some(p) = self.parts.get_mut(&partition) {
            p.floor = Some(next);
        }
    }

    pub fn revoke(&mut self, partition: i32) {
        self.parts.remove(&partition);
    }

    /// True while no partition is assigned.
    pub fn is_empty(&self) -> bool {
        self.parts.is_empty()
    }

    /// Records a message as unfinished, unless its partition is not this
    /// member's, or the message is below the stored position (applied already)
    /// or was received before (a seek to the stored position re-reads what
    /// librdkafka had fetched ahead of it).
    pub fn received(&mut self, partition: i32, offset: i64) -> Receipt {
        let Some(p) = self.parts.get_mut(&partition) else {
            return Receipt::NotOwned;
        };
        if p.floor.is_some_and(|f| offset < f) || !p.seen.insert(offset) {
            return Receipt::Behind;
        }
        p.unfinished.insert(offset);
        p.at_end = false;
        Receipt::New
    }

    pub fn finished(&mut self, partition: i32, offset: i64) {
        if let Some(p) = self.parts.get_mut(&partition) {
            p.unfinished.remove(&offset);
        }
    }

    /// Takes back a `finished` whose effect could not be made durable.
    pub fn unfinish(&mut self, partition: i32, offset: i64) {
        if let Some(p) = self.parts.get_mut(&partition) {
            p.unfinished.insert(offset);
        }
    }

    pub fn reached_end(&mut self, partition: i32) {
        if let Some(p) = self.parts.get_mut(&partition) {
            p.at_end = true;
        }
    }

    /// Messages received but not finished, over all partitions.
    pub fn unfinished(&self) -> usize {
        self.parts.values().map(|p| p.unfinished.len()).sum()
    }

    /// True when partitions are assigned, each was read to its end, and every
    /// message received is finished.
    pub fn all_done(&self) -> bool {
        !self.parts.is_empty()
            && self
                .parts
                .values()
                .all(|p| p.at_end && p.unfinished.is_empty())
    }

    /// True when partitions are assigned and every message received is finished.
    pub fn idle(&self) -> bool {
        !self.parts.is_empty() && self.parts.values().all(|p| p.unfinished.is_empty())
    }

    /// Offsets (the next offset to read, as Kafka commits them) that moved since the
    /// last commit, for `partitions` or for all when `None`.
    pub fn to_commit(&self, partitions: Option<&[i32]>) -> Vec<(i32, i64)> {
        self.parts
            .iter()
            .filter(|(id, _)| partitions.is_none_or(|ps| ps.contains(id)))
            .filter_map(|(id, p)| {
                let safe = p.safe()?;
                (Some(safe) != p.committed).then_some((*id, safe))
            })
            .collect()
    }

    /// The safe position (next offset to read) of every partition that has one.
    pub fn positions(&self) -> Vec<(i32, i64)> {
        self.parts
            .iter()
            .filter_map(|(id, p)| Some((*id, p.safe()?)))
            .collect()
    }

    pub fn committed(&mut self, partition: i32, offset: i64) {
        // Confirmations can arrive out of order; the highest one stands.
        if let Some(p) = self.parts.get_mut(&partition) {
            p.committed = p.committed.max(Some(offset));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commits_stop_at_the_first_unfinished_message() {
        let mut o = Offsets::default();
        o.assign(0);
        assert!(
            o.to_commit(None).is_empty(),
            "nothing received, nothing to commit"
        );
        for off in 10..15 {
            o.received(0, off);
        }
        o.finished(0, 10);
        o.finished(0, 12);
        o.finished(0, 13);
        assert_eq!(o.to_commit(None), [(0, 11)]);
        o.committed(0, 11);
        assert!(o.to_commit(None).is_empty());
        o.finished(0, 11);
        assert_eq!(o.to_commit(None), [(0, 14)]);
        o.finished(0, 14);
        assert_eq!(o.to_commit(None), [(0, 15)]);
        assert_eq!(o.unfinished(), 0);
        o.unfinish(0, 14);
        assert_eq!(o.positions(), [(0, 14)]);
    }

    #[test]
    fn a_stored_position_is_where_a_partition_starts() {
        let mut o = Offsets::default();
        o.assign(3);
        o.assign_at(3, 100);
        assert_eq!(o.positions(), [(3, 100)]);
        assert_eq!(o.received(3, 99), Receipt::Behind, "applied before");
        assert_eq!(o.received(3, 100), Receipt::New);
        assert_eq!(o.positions(), [(3, 100)]);
        o.finished(3, 100);
        assert_eq!(o.positions(), [(3, 101)]);
        // The seek to the stored position came after 100 had arrived: librdkafka
        // reads it again. It is done (or under way) already.
        assert_eq!(o.received(3, 100), Receipt::Behind);
        assert_eq!((o.unfinished(), o.positions()), (0, vec![(3, 101)]));
    }

    /// A store behind Kafka (restored, or new to a group that ran without
    /// one): librdkafka fetched from the committed offset, 50, before the seek
    /// to the stored 40 took effect. 40 to 49 come next, then 50 again.
    #[test]
    fn a_seek_back_to_the_stored_position_reads_what_lies_between() {
        let mut o = Offsets::default();
        o.assign(0);
        o.assign_at(0, 40);
        assert_eq!(o.received(0, 50), Receipt::New);
        for off in 40..50 {
            assert_eq!(o.received(0, off), Receipt::New, "{off}");
        }
        assert_eq!(o.received(0, 50), Receipt::Behind);
        assert_eq!(o.received(0, 51), Receipt::New);
        assert_eq!(o.unfinished(), 12);
        // A compacted topic's gaps are no seek: 60 after 51 takes nothing back.
        assert_eq!(o.received(0, 60), Receipt::New);
        assert_eq!(o.received(0, 55), Receipt::Behind);
    }

    #[test]
    fn partitions_not_owned_get_no_state() {
        let mut o = Offsets::default();
        assert_eq!(
            o.received(2, 7),
            Receipt::NotOwned,
            "a message of a partition never assigned"
        );
        o.assign_at(2, 50);
        assert!(o.is_empty());
        o.assign(1);
        o.revoke(1);
        assert_eq!(
            o.received(1, 3),
            Receipt::NotOwned,
            "a message of a revoked partition"
        );
        assert!(o.is_empty() && o.to_commit(None).is_empty());
    }

    #[test]
    fn done_needs_every_partition_at_end_and_finished() {
        let mut o = Offsets::default();
        assert!(!o.all_done());
        o.assign(0);
        o.assign(1);
        o.received(0, 0);
        o.reached_end(0);
        o.reached_end(1);
        assert!(!o.all_done());
        assert!(!o.idle());
        o.finished(0, 0);
        assert!(o.all_done() && o.idle());
        o.received(1, 5);
        assert!(!o.all_done(), "a new message clears the end mark");
        o.revoke(1);
        assert!(o.all_done());
        assert_eq!(o.to_commit(Some(&[1])), []);
    }
}
