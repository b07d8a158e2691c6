//! The agent's report queue: bounded, counted when it drops, kept until
//! the controller acknowledges.
//!
//! Every report gets the next sequence number of this agent process
//! (`epoch` names the process). A report stays queued after it was sent
//! until an `Ack` covers it, so a stream that breaks loses nothing: the
//! next stream (to the same or another controller) sends again from the
//! first unacknowledged one. When the queue is full the *oldest* report is
//! dropped (the newest status matters most) and counted; the controller
//! sees the gap in the sequence numbers and the count in `Hello`.

use std::collections::VecDeque;

use crate::proto::{Report, ReportKind};

/// The queue (pure; the agent wraps it in a mutex and a notify).
#[derive(Debug)]
pub struct ReportQueue {
    cap: usize,
    epoch: u64,
    next_seq: u64,
    acked: u64,
    items: VecDeque<Report>,
    dropped: u64,
}

impl ReportQueue {
    /// An empty queue holding at most `cap` reports.
    pub fn new(cap: usize, epoch: u64) -> Self {
        Self {
            cap: cap.max(1),
            epoch,
            next_seq: 1,
            acked: 0,
            items: VecDeque::new(),
            dropped: 0,
        }
    }

    /// This process's epoch.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Queues a report; returns its seq.
    pub fn push(&mut self, kind: ReportKind, json: String, unix_ms: u64) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        if self.items.len() >= self.cap {
            self.items.pop_front();
            self.dropped += 1;
        }
        self.items.push_back(Report {
            seq,
            unix_ms,
            kind: kind as i32,
            json,
            epoch: self.epoch,
        });
        seq
    }

    /// The controller has everything up to `seq` of `epoch`.
    pub fn ack(&mut self, epoch: u64, seq: u64) {
        if epoch != self.epoch || seq <= self.acked {
            return;
        }
        self.acked = seq.min(self.next_seq - 1);
        while self.items.front().is_some_and(|r| r.seq <= self.acked) {
            self.items.pop_front();
        }
    }

    /// Queued reports with seq > `after`, oldest first.
    pub fn after(&self, after: u64) -> Vec<Report> {
        self.items
            .iter()
            .filter(|r| r.seq > after)
            .cloned()
            .collect()
    }

    /// Highest acknowledged seq.
    pub fn acked(&self) -> u64 {
        self.acked
    }

    /// Highest seq produced.
    pub fn last_seq(&self) -> u64 {
        self.next_seq - 1
    }

    /// Reports dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Reports waiting for an ack.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Nothing waits.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_counted_and_resent_until_acked() {
        let mut q = ReportQueue::new(3, 7);
        for i in 0..5 {
            q.push(ReportKind::Status, format!("{i}"), 0);
        }
        // Oldest two dropped and counted.
        assert_eq!(q.dropped(), 2);
        assert_eq!(
            q.after(0).iter().map(|r| r.seq).collect::<Vec<_>>(),
            [3, 4, 5]
        );
        // An ack of another epoch is ignored; ours drops what it covers.
        q.ack(6, 5);
        assert_eq!(q.len(), 3);
        q.ack(7, 4);
        assert_eq!(q.after(0).iter().map(|r| r.seq).collect::<Vec<_>>(), [5]);
        // Resent after a reconnect from what the controller has.
        assert_eq!(q.after(4).len(), 1);
        q.ack(7, 3); // old ack: no effect
        assert_eq!(q.acked(), 4);
        q.ack(7, 5);
        assert!(q.is_empty());
        assert_eq!(q.last_seq(), 5);
    }
}
