//! The queue of future events, earliest first.
//!
//! Only load sources put events here: the engine step in flight is a single deadline kept by
//! the event loop, since at most one step runs at a time.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;

use super::time::Nanos;

/// What happens at an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EventKind {
    /// Load source `source` is due to send a request (or, past the stop, to be told it may not).
    Send { source: u32 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Event {
    pub at: Nanos,
    /// Order of insertion: events at the same instant happen in the order they were queued,
    /// which keeps a run reproducible whatever the heap's internal layout.
    pub seq: u64,
    pub kind: EventKind,
}

/// By time, then by insertion: never by kind, so two events are never equal in order.
impl Ord for Event {
    fn cmp(&self, other: &Self) -> Ordering {
        self.at.cmp(&other.at).then(self.seq.cmp(&other.seq))
    }
}

impl PartialOrd for Event {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// A min-heap of [`Event`]s.
#[derive(Debug, Default)]
pub(crate) struct EventQueue {
    heap: BinaryHeap<Reverse<Event>>,
    next_seq: u64,
}

impl EventQueue {
    #[inline]
    pub fn push(&mut self, at: Nanos, kind: EventKind) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.heap.push(Reverse(Event { at, seq, kind }));
    }

    /// When the earliest event is due.
    #[inline]
    pub fn next_at(&self) -> Option<Nanos> {
        self.heap.peek().map(|e| e.0.at)
    }

    /// The earliest event, if it is due at or before `horizon`.
    #[inline]
    pub fn pop_due(&mut self, horizon: Nanos) -> Option<Event> {
        if self.next_at()? > horizon {
            return None;
        }
        self.heap.pop().map(|e| e.0)
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn earliest_first_and_ties_in_insertion_order() {
        let mut q = EventQueue::default();
        for (t, source) in [(5, 0), (3, 1), (5, 2), (3, 3)] {
            q.push(Nanos(t), EventKind::Send { source });
        }
        assert_eq!(q.next_at(), Some(Nanos(3)));
        assert!(q.pop_due(Nanos(2)).is_none());
        let order: Vec<u32> = std::iter::from_fn(|| q.pop_due(Nanos(5)))
            .map(|e| match e.kind {
                EventKind::Send { source } => source,
            })
            .collect();
        assert_eq!(order, [1, 3, 0, 2]);
        assert!(q.is_empty());
    }
}
