//! The bounded send queue (pure): samples in the order they were collected;
//! past `max` samples the oldest are dropped and counted.

use std::collections::{HashMap, VecDeque};

use super::{
    proto::{Sample, TimeSeries, WriteRequest},
    series::Item,
};

#[derive(Debug)]
pub struct Queue {
    items: VecDeque<Item>,
    max: usize,
    /// Samples dropped because the queue was full.
    pub dropped: u64,
}

impl Queue {
    pub fn new(max: usize) -> Self {
        Self {
            items: VecDeque::new(),
            max,
            dropped: 0,
        }
    }

    /// Appends `items`; returns how many old samples were dropped for room.
    pub fn push(&mut self, items: impl IntoIterator<Item = Item>) -> u64 {
        self.items.extend(items);
        let over = self.items.len().saturating_sub(self.max);
        self.items.drain(..over);
        self.dropped += over as u64;
        over as u64
    }

    /// Puts a batch taken with [`Queue::take`] back in front (it is older
    /// than everything queued since); the bound may be exceeded by it.
    pub fn requeue(&mut self, batch: Vec<Item>) {
        for it in batch.into_iter().rev() {
            self.items.push_front(it);
        }
    }

    /// Removes and returns up to `n` of the oldest samples.
    pub fn take(&mut self, n: usize) -> Vec<Item> {
        let n = n.min(self.items.len());
        self.items.drain(..n).collect()
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

/// Groups a batch into time series (one per label set, in order of first
/// appearance, samples in queue order, which is time order per series).
pub fn request(batch: &[Item]) -> WriteRequest {
    let mut index: HashMap<*const [super::proto::Label], usize> = HashMap::new();
    let mut ts: Vec<TimeSeries> = Vec::new();
    for it in batch {
        let k = std::sync::Arc::as_ptr(&it.labels);
        let i = *index.entry(k).or_insert_with(|| {
            ts.push(TimeSeries {
                labels: it.labels.to_vec(),
                samples: Vec::new(),
            });
            ts.len() - 1
        });
        ts[i].samples.push(Sample {
            value: it.value,
            timestamp: it.ts_ms,
        });
    }
    WriteRequest { timeseries: ts }
}
