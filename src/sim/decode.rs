//! The set of decoding sequences, advanced in O(1) per step however many there are.
//!
//! Every decoding sequence gains one token per decode step, so its progress is derived from a
//! global decode-step counter `g` (tokens = tokens at join + steps since) instead of being
//! updated sequence by sequence; the sum of decode contexts is a running total (+1 per sequence
//! per step); the KV blocks a step needs are counted per residue class of `g` mod block size
//! (a sequence needs a new block exactly when its token count passes a multiple of the block
//! size); completions come from a heap keyed by the step at which a sequence reaches its output
//! length; inter-token gaps are recorded per group of sequences whose last token came at the
//! same instant.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;

use super::request::{Req, Requests, State};
use super::time::Nanos;

/// When a decoding sequence will emit its last token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Finish {
    /// The value of `g` after its last decode step.
    step: u64,
    /// Admission order, then slot: sequences finishing together complete oldest first.
    order: u64,
    id: u32,
    /// The slot's version when queued; a mismatch means the entry is stale.
    version: u32,
}

/// Earliest step first, then oldest admission, then slot and version.
impl Ord for Finish {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.step, self.order, self.id, self.version).cmp(&(
            other.step,
            other.order,
            other.id,
            other.version,
        ))
    }
}

impl PartialOrd for Finish {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Measured decoding sequences that got their last token at the same instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct TokenGroup {
    at: Nanos,
    seqs: u64,
}

#[derive(Debug)]
pub(crate) struct DecodeSet {
    /// Whether sequences grow their own KV blocks token by token (false for a static batch,
    /// whose blocks are reserved up front and whose context the batch itself gives).
    paged: bool,
    block_size: u64,
    /// Decode steps run so far.
    g: u64,
    count: u64,
    /// Sum of the context (tokens) of every paged decoding sequence.
    ctx: u64,
    /// Paged decoding sequences by the residue of `g` at which they need a new block.
    buckets: Vec<u64>,
    finish: BinaryHeap<Reverse<Finish>>,
    groups: Vec<TokenGroup>,
    /// When the last decode step ended.
    last_end: Nanos,
}

impl DecodeSet {
    pub fn new(block_size: u64, paged: bool) -> DecodeSet {
        DecodeSet {
            paged,
            block_size,
            g: 0,
            count: 0,
            ctx: 0,
            buckets: vec![0; block_size as usize],
            finish: BinaryHeap::new(),
            groups: Vec::new(),
            last_end: Nanos::ZERO,
        }
    }

    #[inline]
    pub fn paged(&self) -> bool {
        self.paged
    }

    /// Decode steps run so far.
    #[inline]
    pub fn g(&self) -> u64 {
        self.g
    }

    /// Sequences decoding.
    #[inline]
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Sum of their contexts, tokens (0 for a static batch).
    #[inline]
    pub fn ctx(&self) -> u64 {
        self.ctx
    }

    /// New KV blocks the next decode step needs.
    #[inline]
    pub fn blocks_needed(&self) -> u64 {
        self.buckets[(self.g % self.block_size) as usize]
    }

    /// Request `id` has just emitted a token at `t` after a (re)prefill and starts decoding.
    #[inline]
    pub fn join(&mut self, id: u32, r: &mut Req, t: Nanos) {
        let (bs, g) = (self.block_size, self.g);
        r.state = State::Decode;
        r.g_join = g;
        r.n_join = u64::from(r.target) + 1;
        r.gen_join = r.generated;
        r.residue = ((1 + g % bs + bs - r.n_join % bs) % bs) as u32;
        self.count += 1;
        if self.paged {
            self.ctx += r.n_join;
            self.buckets[r.residue as usize] += 1;
        }
        self.finish.push(Reverse(Finish {
            step: g + u64::from(r.output - r.generated),
            order: r.order,
            id,
            version: r.version,
        }));
        if r.measured {
            match self.groups.iter_mut().find(|grp| grp.at == t) {
                Some(grp) => grp.seqs += 1,
                None => self.groups.push(TokenGroup { at: t, seqs: 1 }),
            }
        }
    }

    /// Take `r` out of the decode set, bringing its tokens, blocks and last token up to date.
    #[inline]
    pub fn leave(&mut self, r: &mut Req) {
        let steps = self.g - r.g_join;
        r.generated = r.gen_join + steps as u32;
        if steps > 0 {
            r.last_token = Some(self.last_end);
        }
        if self.paged {
            r.blocks = (r.n_join - 1 + steps).div_ceil(self.block_size);
            self.ctx -= r.n_join + steps;
            self.buckets[r.residue as usize] -= 1;
        } else {
            r.blocks = 0;
        }
        self.count -= 1;
        if r.measured
            && let Some(last) = r.last_token
            && let Some(i) = self.groups.iter().position(|grp| grp.at == last)
        {
            self.groups[i].seqs -= 1;
            if self.groups[i].seqs == 0 {
                self.groups.swap_remove(i);
            }
        }
    }

    /// A decode step ended at `t`: every sequence got a token; `itl` hears each group's gap.
    #[inline]
    pub fn step_done(&mut self, t: Nanos, mut itl: impl FnMut(Nanos, u64)) {
        for grp in &self.groups {
            itl(t - grp.at, grp.seqs);
        }
        let total: u64 = self.groups.iter().map(|grp| grp.seqs).sum();
        self.groups.clear();
        if total > 0 {
            self.groups.push(TokenGroup { at: t, seqs: total });
        }
        if self.paged {
            self.ctx += self.count;
        }
        self.g += 1;
        self.last_end = t;
    }

    /// The next sequence that has emitted its last token, if any (call until `None`).
    #[inline]
    pub fn next_finished(&mut self, reqs: &Requests) -> Option<u32> {
        while let Some(&Reverse(f)) = self.finish.peek() {
            if f.step > self.g {
                return None;
            }
            self.finish.pop();
            let r = reqs.get(f.id);
            let current = r.version == f.version
                && r.state == State::Decode
                && r.g_join + u64::from(r.output - r.gen_join) == f.step;
            if current {
                return Some(f.id);
            }
        }
        None
    }
}
