//! Batches in a seeded shuffled order, decoded on background threads ahead of the training
//! step. An epoch can start at any position of its order (a resumed run continues mid-epoch).
//! Images that fail to decode are skipped and reported with the epoch; the batch is filled
//! from the images that follow, so every batch is full.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;
use std::thread::JoinHandle;

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::{Dataset, Image};

pub struct Batch {
    pub images: Vec<Image>,
    pub labels: Vec<Option<u32>>,
    pub indices: Vec<usize>,
    /// The position in the epoch's order just after this batch: where a resumed run continues.
    pub next_position: usize,
}

#[derive(Clone)]
pub struct Loader {
    pub dataset: Arc<dyn Dataset>,
    pub batch: usize,
    pub seed: u64,
    pub workers: usize,
    /// Decoded images allowed to wait ahead of the consumer.
    pub prefetch: usize,
}

/// An image that could not be read: its name and the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    pub name: String,
    pub reason: String,
}

impl Loader {
    pub fn new(dataset: Arc<dyn Dataset>, batch: usize, seed: u64) -> Self {
        let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
        Self {
            dataset,
            batch,
            seed,
            workers,
            prefetch: 4 * batch,
        }
    }

    /// Full batches per epoch if no image fails (the remainder is dropped).
    pub fn batches_per_epoch(&self) -> usize {
        self.dataset.len() / self.batch
    }

    /// The epoch's order: a permutation drawn from the run's seed and the epoch number.
    ///
    /// Its generator is keyed by the seed with a salt of its own. Unsalted, epoch 0 shared
    /// the initial weights' stream (`nn::initial_values`), so the first epoch's order was a
    /// function of the very bits that drew conv1's weights; draws meant to be independent
    /// now are.
    pub fn order(&self, epoch: u64) -> Vec<usize> {
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed ^ ORDER_SALT);
        rng.set_stream(epoch);
        let mut order: Vec<usize> = (0..self.dataset.len()).collect();
        order.shuffle(&mut rng);
        order
    }

    /// Reads epoch `epoch` from `position` in its order.
    pub fn epoch(&self, epoch: u64, position: usize) -> EpochReader {
        EpochReader::new(self, Arc::new(self.order(epoch)), position)
    }
}

/// Keys the order's generator apart from the initial weights' and the augmentations' ("order").
pub const ORDER_SALT: u64 = 0x6f72_6465_7200_0000;

type Decoded = (usize, std::result::Result<Image, String>);

pub struct EpochReader {
    dataset: Arc<dyn Dataset>,
    order: Arc<Vec<usize>>,
    batch: usize,
    next: usize,
    received: Option<Receiver<Decoded>>,
    waiting: BTreeMap<usize, std::result::Result<Image, String>>,
    skipped: Vec<Skipped>,
    stop: Arc<AtomicBool>,
    workers: Vec<JoinHandle<()>>,
}

impl EpochReader {
    fn new(loader: &Loader, order: Arc<Vec<usize>>, position: usize) -> Self {
        let (tx, rx) = sync_channel::<Decoded>(loader.prefetch.max(1));
        let counter = Arc::new(AtomicUsize::new(position));
        let stop = Arc::new(AtomicBool::new(false));
        let workers = (0..loader.workers.max(1))
            .map(|_| {
                let (tx, counter, stop) = (tx.clone(), counter.clone(), stop.clone());
                let (dataset, order) = (loader.dataset.clone(), order.clone());
                std::thread::spawn(move || loop {
                    let seq = counter.fetch_add(1, Ordering::Relaxed);
                    if seq >= order.len() || stop.load(Ordering::Relaxed) {
                        break;
                    }
                    if tx.send((seq, dataset.load(order[seq]))).is_err() {
                        break;
                    }
                })
            })
            .collect();
        Self {
            dataset: loader.dataset.clone(),
            order,
            batch: loader.batch,
            next: position,
            received: Some(rx),
            waiting: BTreeMap::new(),
            skipped: Vec::new(),
            stop,
            workers,
        }
    }

    /// The images that could not be read so far in this epoch.
    pub fn skipped(&self) -> &[Skipped] {
        &self.skipped
    }

    /// The decoded image at position `seq` of the order, waiting for the workers as needed.
    fn take(&mut self, seq: usize) -> std::result::Result<Image, String> {
        loop {
            if let Some(r) = self.waiting.remove(&seq) {
                return r;
            }
            let rx = self.received.as_ref().expect("reader is live");
            match rx.recv() {
                Ok((s, r)) => {
                    self.waiting.insert(s, r);
                }
                Err(_) => return Err("the decoding threads stopped".into()),
            }
        }
    }
}

impl Iterator for EpochReader {
    type Item = Batch;

    fn next(&mut self) -> Option<Batch> {
        let mut batch = Batch {
            images: Vec::with_capacity(self.batch),
            labels: Vec::with_capacity(self.batch),
            indices: Vec::with_capacity(self.batch),
            next_position: self.next,
        };
        while batch.images.len() < self.batch {
            if self.next >= self.order.len() {
                return None;
            }
            let seq = self.next;
            let index = self.order[seq];
            self.next += 1;
            match self.take(seq) {
                Ok(image) => {
                    batch.images.push(image);
                    batch.labels.push(self.dataset.label(index));
                    batch.indices.push(index);
                }
                Err(reason) => self.skipped.push(Skipped {
                    name: self.dataset.describe(index),
                    reason,
                }),
            }
        }
        batch.next_position = self.next;
        Some(batch)
    }
}

impl Drop for EpochReader {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Dropping the receiver wakes workers blocked on a full channel.
        self.received = None;
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}
