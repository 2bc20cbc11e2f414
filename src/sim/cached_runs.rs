//! The prefix cache's blocks kept as runs, not one by one: the same semantics as vLLM V1's
//! block pool (hashed full blocks, longest cached prefix reused, unreferenced blocks cached in
//! a free queue and evicted least recently freed first) at a cost per run of blocks.
//!
//! Why runs: a chat turn resends its whole history, so a per-block pool does hash-map work for
//! every block of the context on every turn (lookup, reuse, naming, release), which cost more
//! than the engine steps themselves. Here a block's identity is the pair (origin, index) of
//! [`Prefix`] (origin: system prompt, conversation or request), and for every origin the cache
//! keeps its cached indices as a few sorted pieces: a range referenced by running requests (one
//! reference count for the whole range) or a range waiting in the free queue. The free queue
//! holds segments: a range of one origin's blocks (last block first, as vLLM frees a request's
//! tail first) or a count of blocks without identity (interchangeable). Every operation walks
//! the pieces it touches, so its cost follows the number of runs, not of blocks.
//!
//! Equivalence with the per-block pool (`prefix::PrefixCache`, kept for the tests) is checked by
//! a randomised differential test; the two agree on every answer (they could only differ if
//! two (origin, index) pairs shared a 64-bit hashed key).

use std::collections::HashMap;
use std::hash::BuildHasherDefault;

use super::prefix::{KeyHasher, Prefix, mix};

/// No segment / end of the free queue.
const NIL: u32 = u32::MAX;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Held by this many running requests.
    Ref(u32),
    /// Waiting in the free queue as (all of) this segment.
    Free(u32),
}

/// Blocks `lo..hi` of one origin.
#[derive(Debug, Clone, Copy)]
struct Piece {
    lo: u32,
    hi: u32,
    state: State,
}

impl Piece {
    fn len(&self) -> u64 {
        u64::from(self.hi - self.lo)
    }
}

/// A run of the free queue: the blocks of one piece (`entry` set), or `count` blocks without
/// identity (`entry` NIL).
#[derive(Debug, Clone, Copy)]
struct Seg {
    entry: u32,
    count: u32,
    prev: u32,
    next: u32,
}

/// The physical blocks of a prefix-caching pool, as runs.
#[derive(Debug, Clone)]
pub(crate) struct RunCache {
    segs: Vec<Seg>,
    spare_segs: Vec<u32>,
    head: u32,
    tail: u32,
    /// Per origin with cached blocks: its pieces, sorted and disjoint.
    entries: Vec<Vec<Piece>>,
    /// The origin of each entry.
    origin: Vec<u64>,
    spare_entries: Vec<u32>,
    ids: HashMap<u64, u32, BuildHasherDefault<KeyHasher>>,
    /// Σ (refs − 1) over blocks held by more than one request: requests count their blocks
    /// one by one, the pool counts a shared block once.
    pub shared: u64,
}

/// The origins of `p`'s blocks `0..n`, as (origin, first block, end) in block order.
fn parts(p: &Prefix, n: u32) -> impl DoubleEndedIterator<Item = (u64, u32, u32)> {
    let b1 = p.sys_blocks;
    let b2 = p.conv_blocks.max(b1);
    [(p.sys, 0, b1), (p.conv, b1, b2), (p.own, b2, u32::MAX)]
        .into_iter()
        .map(move |(id, lo, hi)| (id, lo.min(n), hi.min(n)))
        .filter(|&(_, lo, hi)| lo < hi)
}

impl RunCache {
    /// `total` blocks, all free and without identity.
    pub fn new(total: u64) -> RunCache {
        let n = u32::try_from(total).unwrap_or(NIL - 1).min(NIL - 1);
        let mut c = RunCache {
            segs: Vec::with_capacity(64),
            spare_segs: Vec::new(),
            head: NIL,
            tail: NIL,
            entries: Vec::new(),
            origin: Vec::new(),
            spare_entries: Vec::new(),
            ids: HashMap::default(),
            shared: 0,
        };
        c.push_anon(n);
        c
    }

    // ---- the free queue -------------------------------------------------------------------

    fn new_seg(&mut self, entry: u32, count: u32) -> u32 {
        let seg = Seg {
            entry,
            count,
            prev: NIL,
            next: NIL,
        };
        match self.spare_segs.pop() {
            Some(s) => {
                self.segs[s as usize] = seg;
                s
            }
            None => {
                self.segs.push(seg);
                (self.segs.len() - 1) as u32
            }
        }
    }

    /// Link `s` after `after` (at the head for NIL).
    fn link_after(&mut self, s: u32, after: u32) {
        let next = match after {
            NIL => self.head,
            a => self.segs[a as usize].next,
        };
        self.segs[s as usize].prev = after;
        self.segs[s as usize].next = next;
        match after {
            NIL => self.head = s,
            a => self.segs[a as usize].next = s,
        }
        match next {
            NIL => self.tail = s,
            n => self.segs[n as usize].prev = s,
        }
    }

    /// Unlink `s` from the queue and recycle it.
    fn drop_seg(&mut self, s: u32) {
        let Seg { prev, next, .. } = self.segs[s as usize];
        match prev {
            NIL => self.head = next,
            p => self.segs[p as usize].next = next,
        }
        match next {
            NIL => self.tail = prev,
            n => self.segs[n as usize].prev = prev,
        }
        self.spare_segs.push(s);
    }

    /// Append `n` blocks without identity to the queue.
    fn push_anon(&mut self, n: u32) {
        if n == 0 {
            return;
        }
        if self.tail != NIL && self.segs[self.tail as usize].entry == NIL {
            self.segs[self.tail as usize].count += n;
            return;
        }
        let s = self.new_seg(NIL, n);
        self.link_after(s, self.tail);
    }

    // ---- origins and their pieces ---------------------------------------------------------

    fn entry(&self, id: u64) -> Option<u32> {
        self.ids.get(&mix(id)).copied()
    }

    fn entry_or_new(&mut self, id: u64) -> u32 {
        if let Some(e) = self.entry(id) {
            return e;
        }
        let e = match self.spare_entries.pop() {
            Some(e) => {
                self.origin[e as usize] = id;
                e
            }
            None => {
                self.entries.push(Vec::with_capacity(4));
                self.origin.push(id);
                (self.entries.len() - 1) as u32
            }
        };
        self.ids.insert(mix(id), e);
        e
    }

    /// Forget an origin without cached blocks.
    fn drop_if_empty(&mut self, e: u32) {
        if self.entries[e as usize].is_empty() {
            self.ids.remove(&mix(self.origin[e as usize]));
            self.spare_entries.push(e);
        }
    }

    /// Index of the piece of entry `e` that holds block `i`, or where one would go.
    fn find(&self, e: u32, i: u32) -> Result<usize, usize> {
        let ps = &self.entries[e as usize];
        let k = ps.partition_point(|p| p.hi <= i);
        match ps.get(k) {
            Some(p) if p.lo <= i => Ok(k),
            _ => Err(k),
        }
    }

    /// Cut the piece that strictly contains `at` in two; a free piece's segment is cut too,
    /// its lower blocks becoming the segment right after it (they are freed after).
    fn split(&mut self, e: u32, at: u32) {
        let Ok(k) = self.find(e, at) else { return };
        let p = self.entries[e as usize][k];
        if p.lo == at {
            return;
        }
        let lower = match p.state {
            State::Ref(r) => State::Ref(r),
            State::Free(s) => {
                let t = self.new_seg(e, 0);
                self.link_after(t, s);
                State::Free(t)
            }
        };
        let ps = &mut self.entries[e as usize];
        ps[k].lo = at;
        ps.insert(
            k,
            Piece {
                lo: p.lo,
                hi: at,
                state: lower,
            },
        );
    }

    /// Merge neighbouring pieces that are one run: the same reference count, or free segments
    /// that follow each other in the queue (higher blocks first).
    fn normalize(&mut self, e: u32) {
        let mut k = 1;
        while k < self.entries[e as usize].len() {
            let (a, b) = {
                let ps = &self.entries[e as usize];
                (ps[k - 1], ps[k])
            };
            let merge = a.hi == b.lo
                && match (a.state, b.state) {
                    (State::Ref(x), State::Ref(y)) => x == y,
                    (State::Free(sa), State::Free(sb)) => self.segs[sb as usize].next == sa,
                    _ => false,
                };
            if !merge {
                k += 1;
                continue;
            }
            if let State::Free(sa) = a.state {
                self.drop_seg(sa);
            }
            let ps = &mut self.entries[e as usize];
            ps[k].lo = a.lo;
            ps.remove(k - 1);
        }
        self.drop_if_empty(e);
    }

    // ---- the pool's operations ------------------------------------------------------------

    /// Take `n` blocks from the front of the free queue (evicting what they cached) for a
    /// request to fill; the caller has checked that `n` are free.
    pub fn take(&mut self, mut n: u64) {
        while n > 0 {
            let s = self.head;
            if s == NIL {
                debug_assert!(false, "free queue empty");
                return;
            }
            let seg = self.segs[s as usize];
            if seg.entry == NIL {
                let k = u64::from(seg.count).min(n) as u32;
                self.segs[s as usize].count -= k;
                if self.segs[s as usize].count == 0 {
                    self.drop_seg(s);
                }
                n -= u64::from(k);
                continue;
            }
            let e = seg.entry;
            let ps = &mut self.entries[e as usize];
            let Some(k) = ps.iter().position(|p| p.state == State::Free(s)) else {
                debug_assert!(false, "free segment without its piece");
                self.drop_seg(s);
                continue;
            };
            // The segment frees its highest block first: eviction takes from the top.
            let took = ps[k].len().min(n);
            ps[k].hi -= took as u32;
            n -= took;
            if ps[k].lo == ps[k].hi {
                ps.remove(k);
                self.drop_seg(s);
                self.drop_if_empty(e);
            }
        }
    }

    /// (cached leading blocks of `p`, up to `max`; how many of them sit in the free queue).
    pub fn lookup(&self, p: &Prefix, max: u32) -> (u32, u64) {
        let (mut pos, mut evictable) = (0, 0);
        for (id, lo, hi) in parts(p, max) {
            if pos != lo {
                break;
            }
            let Some(e) = self.entry(id) else { break };
            let Ok(mut k) = self.find(e, pos) else { break };
            let ps = &self.entries[e as usize];
            while pos < hi {
                match ps.get(k) {
                    Some(q) if q.lo <= pos => {
                        let end = q.hi.min(hi);
                        if let State::Free(_) = q.state {
                            evictable += u64::from(end - pos);
                        }
                        pos = end;
                        k += 1;
                    }
                    _ => break,
                }
            }
        }
        (pos, evictable)
    }

    /// Reference the first `hits` blocks of `p` (found by [`Self::lookup`]); returns how many
    /// left the free queue.
    pub fn acquire(&mut self, p: &Prefix, hits: u32) -> u64 {
        let mut from_free = 0;
        for (id, lo, hi) in parts(p, hits) {
            let Some(e) = self.entry(id) else {
                debug_assert!(false, "acquired blocks of an origin that is not cached");
                break;
            };
            self.split(e, lo);
            self.split(e, hi);
            let k0 = self.entries[e as usize].partition_point(|q| q.hi <= lo);
            let mut k = k0;
            while let Some(&q) = self.entries[e as usize].get(k) {
                if q.lo >= hi {
                    break;
                }
                let state = match q.state {
                    State::Ref(r) => {
                        self.shared += q.len();
                        State::Ref(r + 1)
                    }
                    State::Free(s) => {
                        self.drop_seg(s);
                        from_free += q.len();
                        State::Ref(1)
                    }
                };
                self.entries[e as usize][k].state = state;
                k += 1;
            }
            self.normalize(e);
        }
        from_free
    }

    /// Name blocks `from..to` of `p`, which a request holds without identity, as it schedules
    /// their tokens (vLLM hashes a block once it is full); stops at the first block already
    /// cached elsewhere. Returns the end of the named run.
    pub fn register(&mut self, p: &Prefix, from: u32, to: u32) -> u32 {
        let mut i = from;
        for (id, lo, hi) in parts(p, to) {
            if hi <= i {
                continue;
            }
            debug_assert!(lo <= i);
            let e = self.entry_or_new(id);
            let k = match self.find(e, i) {
                Ok(_) => {
                    self.drop_if_empty(e);
                    return i;
                }
                Err(k) => k,
            };
            let ps = &mut self.entries[e as usize];
            let end = ps.get(k).map_or(hi, |q| q.lo.min(hi));
            ps.insert(
                k,
                Piece {
                    lo: i,
                    hi: end,
                    state: State::Ref(1),
                },
            );
            i = end;
            self.normalize(e);
            if i < hi {
                return i;
            }
        }
        i
    }

    /// A request that held `blocks` blocks, the first `named` through the cache, with `full`
    /// blocks full of computed tokens, lets go of them. Like vLLM, the last block goes to the
    /// free queue first (evicted first) and the first block last; full blocks keep their
    /// identity unless it is cached elsewhere. Returns the blocks that joined the free queue.
    pub fn release(&mut self, p: &Prefix, named: u32, blocks: u32, full: u32) -> u64 {
        let full = full.clamp(named, blocks.max(named));
        let mut freed = u64::from(blocks.saturating_sub(full));
        self.push_anon(blocks.saturating_sub(full));
        for (id, lo, hi) in parts(p, full).rev() {
            let lo = lo.max(named);
            if lo < hi {
                freed += self.free_unnamed(id, lo, hi);
            }
        }
        for (id, lo, hi) in parts(p, named).rev() {
            let Some(e) = self.entry(id) else {
                debug_assert!(false, "named blocks of an origin that is not cached");
                continue;
            };
            freed += self.unref(e, lo, hi);
        }
        freed
    }

    /// Blocks `lo..hi` of `id`, full and held without identity, join the queue from the top:
    /// named where no other block holds their identity, anonymous where one does.
    fn free_unnamed(&mut self, id: u64, lo: u32, hi: u32) -> u64 {
        let e = self.entry_or_new(id);
        let mut cur = hi;
        // pieces starting below `hi` are 0..k; walk them down from the top
        let mut k = self.entries[e as usize].partition_point(|q| q.lo < hi);
        while cur > lo {
            let below = k.checked_sub(1).map(|j| self.entries[e as usize][j]);
            let Some(q) = below.filter(|q| q.hi > lo) else {
                self.push_named(e, k, lo, cur);
                break;
            };
            let top = q.hi.min(cur);
            if top < cur {
                // a gap above this cached piece: these blocks take their identity
                self.push_named(e, k, top, cur);
            }
            // cached elsewhere: these go to the queue without identity
            let start = q.lo.max(lo);
            self.push_anon(top - start);
            cur = start;
            k -= 1;
        }
        self.normalize(e);
        u64::from(hi - lo)
    }

    /// Append blocks `lo..hi` of entry `e` to the queue as a new piece at index `k`.
    fn push_named(&mut self, e: u32, k: usize, lo: u32, hi: u32) {
        let s = self.new_seg(e, 0);
        self.link_after(s, self.tail);
        self.entries[e as usize].insert(
            k,
            Piece {
                lo,
                hi,
                state: State::Free(s),
            },
        );
    }

    /// A request lets go of its references to blocks `lo..hi` of entry `e`: those nobody else
    /// holds join the queue, the highest first. Returns how many did.
    fn unref(&mut self, e: u32, lo: u32, hi: u32) -> u64 {
        self.split(e, lo);
        self.split(e, hi);
        let mut freed = 0;
        let mut k = self.entries[e as usize].partition_point(|q| q.lo < hi);
        while k > 0 {
            k -= 1;
            let q = self.entries[e as usize][k];
            if q.hi <= lo {
                break;
            }
            let state = match q.state {
                State::Ref(1) => {
                    let s = self.new_seg(e, 0);
                    self.link_after(s, self.tail);
                    freed += q.len();
                    State::Free(s)
                }
                State::Ref(r) => {
                    self.shared -= q.len();
                    State::Ref(r - 1)
                }
                State::Free(s) => {
                    debug_assert!(false, "a named block was free");
                    State::Free(s)
                }
            };
            self.entries[e as usize][k].state = state;
        }
        self.normalize(e);
        freed
    }

    /// Blocks that hold a cached identity (referenced or not).
    #[cfg(test)]
    pub fn cached(&self) -> usize {
        self.ids
            .values()
            .map(|&e| {
                self.entries[e as usize]
                    .iter()
                    .map(|p| p.len() as usize)
                    .sum::<usize>()
            })
            .sum()
    }
}

#[cfg(test)]
#[path = "cached_runs_tests.rs"]
mod tests;
