//! A small cache of decode-only step times, so that a step shape seen before costs a lookup
//! instead of the cost model's interpolations (log/exp per call).
//!
//! Light loads repeat shapes all the time: one session decodes at batch 1 through the same
//! context lengths request after request (the `plan` single-user check runs ~10⁶ such steps per
//! window). The cache is direct-mapped and fixed in size: no allocation per step, memory
//! independent of the run's length, and a miss costs one compare. [`StepTime`] is a pure
//! function of the shape, so a cached time is the time the model would give: results are
//! bit-identical with or without it.
//!
//! Heavy loads almost never repeat a shape (the context sum moves every step), and there a
//! lookup is a cache miss that costs more than it saves: after [`PROBE`] lookups with fewer
//! than one hit in [`MIN_HIT_SHARE`], the memo steps aside for the rest of the run.

use crate::step::{BatchShape, StepTime};

/// Slots in the cache (a power of two); 64 KiB.
const SLOTS: usize = 1 << 12;

/// Key of an empty slot: no decode-only step has 0 sequences and u64::MAX context tokens.
const EMPTY: (u32, u64) = (0, u64::MAX);

/// Lookups per verdict on whether the memo pays.
const PROBE: u32 = 1 << 14;

/// The memo stays on while at least one lookup in this many hits.
const MIN_HIT_SHARE: u32 = 8;

pub(crate) struct StepMemo {
    keys: Box<[(u32, u64)]>,
    times: Box<[f64]>,
    /// Lookups and hits since the last verdict.
    lookups: u32,
    hits: u32,
    /// Set once the hit rate was too low: every time comes from the model.
    off: bool,
}

impl StepMemo {
    pub fn new() -> StepMemo {
        StepMemo {
            keys: vec![EMPTY; SLOTS].into_boxed_slice(),
            times: vec![0.0; SLOTS].into_boxed_slice(),
            lookups: 0,
            hits: 0,
            off: false,
        }
    }

    /// `cost`'s time for `shape`, from the cache when this decode-only shape was seen before.
    #[inline]
    pub fn step_seconds(&mut self, cost: &dyn StepTime, shape: &BatchShape<'_>) -> f64 {
        if self.off || !shape.prefills.is_empty() {
            return cost.step_seconds(shape);
        }
        self.lookups += 1;
        if self.lookups == PROBE {
            self.off = self.hits < PROBE / MIN_HIT_SHARE;
            (self.lookups, self.hits) = (0, 0);
        }
        let key = (shape.decode_seqs, shape.decode_context_tokens);
        let i = slot(key);
        if self.keys[i] == key {
            self.hits += 1;
            return self.times[i];
        }
        let t = cost.step_seconds(shape);
        self.keys[i] = key;
        self.times[i] = t;
        t
    }
}

/// A well-mixed slot index for `key` (the context length's low bits alone would collide for
/// batches whose context sums differ by multiples of the table size).
#[inline]
fn slot((seqs, ctx): (u32, u64)) -> usize {
    let h = (ctx ^ (u64::from(seqs) << 40)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (h >> (64 - SLOTS.trailing_zeros())) as usize
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::step::PrefillChunk;
    use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

    /// A model that counts its calls and whose time identifies the shape.
    struct Counting(AtomicU64);

    impl StepTime for Counting {
        fn step_seconds(&self, b: &BatchShape<'_>) -> f64 {
            self.0.fetch_add(1, Relaxed);
            f64::from(b.decode_seqs) * 1e-3
                + b.decode_context_tokens as f64 * 1e-9
                + b.prefills.len() as f64
        }
    }

    fn decode(seqs: u32, ctx: u64) -> BatchShape<'static> {
        BatchShape {
            decode_seqs: seqs,
            decode_context_tokens: ctx,
            prefills: &[],
        }
    }

    #[test]
    fn cached_times_equal_the_model_s_and_repeats_are_not_recomputed() {
        let (model, reference) = (Counting(AtomicU64::new(0)), Counting(AtomicU64::new(0)));
        let mut memo = StepMemo::new();
        // more distinct shapes than slots, each asked twice in a row and again later
        let shapes: Vec<(u32, u64)> = (0..3 * SLOTS as u64)
            .map(|i| (1 + (i % 7) as u32, 100 + i * 13))
            .collect();
        for &(s, c) in &shapes {
            let want = reference.step_seconds(&decode(s, c)).to_bits();
            assert_eq!(memo.step_seconds(&model, &decode(s, c)).to_bits(), want);
            assert_eq!(memo.step_seconds(&model, &decode(s, c)).to_bits(), want);
        }
        // the repeat was a hit every time
        assert_eq!(model.0.load(Relaxed), shapes.len() as u64);
        // evicted or not, every answer is still the model's
        for &(s, c) in shapes.iter().rev() {
            let want = reference.step_seconds(&decode(s, c)).to_bits();
            assert_eq!(memo.step_seconds(&model, &decode(s, c)).to_bits(), want);
        }
    }

    #[test]
    fn a_memo_that_rarely_hits_steps_aside_and_one_that_hits_stays() {
        let (model, reference) = (Counting(AtomicU64::new(0)), Counting(AtomicU64::new(0)));
        let mut memo = StepMemo::new();
        // never the same shape twice: off after one probe, still the model's times
        for i in 0..3 * u64::from(PROBE) {
            let want = reference.step_seconds(&decode(3, 1000 + i)).to_bits();
            assert_eq!(
                memo.step_seconds(&model, &decode(3, 1000 + i)).to_bits(),
                want
            );
        }
        assert!(memo.off);
        // one session at batch 1 through the same 500 contexts, again and again: stays on
        let mut memo = StepMemo::new();
        let model = Counting(AtomicU64::new(0));
        for i in 0..4 * u64::from(PROBE) {
            memo.step_seconds(&model, &decode(1, 100 + i % 500));
        }
        assert!(!memo.off);
        assert_eq!(model.0.load(Relaxed), 500);
    }

    #[test]
    fn steps_with_prefill_are_never_cached() {
        let model = Counting(AtomicU64::new(0));
        let mut memo = StepMemo::new();
        let chunk = [PrefillChunk {
            new_tokens: 10,
            cached_tokens: 0,
        }];
        let b = BatchShape {
            decode_seqs: 2,
            decode_context_tokens: 50,
            prefills: &chunk,
        };
        for _ in 0..3 {
            assert_eq!(memo.step_seconds(&model, &b), model.step_seconds(&b));
        }
        assert_eq!(model.0.load(Relaxed), 6);
    }
}
