//! The paged KV-cache block manager: a pool of fixed-size blocks, counted, not tracked one by
//! one (which block a sequence holds never changes a step's time), unless prefix caching is on:
//! then [`RunCache`] also tracks which blocks hold which cached content.

use super::cached_runs::RunCache;
use super::prefix::Prefix;

/// KV blocks of `block_size` tokens, with vLLM V0's admission watermark.
#[derive(Debug, Clone)]
pub(crate) struct KvBlocks {
    block_size: u64,
    total: u64,
    free: u64,
    /// Blocks kept free when admitting new prompts, so running sequences can still grow
    /// (vLLM V0's block manager keeps 1%; V1 and static batching keep none).
    watermark: u64,
    /// The cached blocks, with prefix caching on.
    cache: Option<RunCache>,
}

impl KvBlocks {
    /// `total` blocks, all free; `watermark_share` of them held back from admissions.
    pub fn new(total: u64, block_size: u64, watermark_share: f64) -> KvBlocks {
        KvBlocks {
            block_size,
            total,
            free: total,
            watermark: (total as f64 * watermark_share) as u64,
            cache: None,
        }
    }

    /// [`KvBlocks::new`] with automatic prefix caching.
    pub fn with_prefix_caching(total: u64, block_size: u64, watermark_share: f64) -> KvBlocks {
        KvBlocks {
            cache: Some(RunCache::new(total)),
            ..KvBlocks::new(total, block_size, watermark_share)
        }
    }

    #[inline]
    pub fn caching(&self) -> bool {
        self.cache.is_some()
    }

    /// Cached leading blocks of `p` (at most `max`) and how many of them are free: reusing them
    /// takes those out of the free pool. (0, 0) without prefix caching.
    #[inline]
    pub fn lookup(&self, p: &Prefix, max: u32) -> (u32, u64) {
        self.cache.as_ref().map_or((0, 0), |c| c.lookup(p, max))
    }

    /// Reuse the first `hits` blocks of `p`, found by [`KvBlocks::lookup`].
    #[inline]
    pub fn acquire(&mut self, p: &Prefix, hits: u32) {
        if let Some(c) = &mut self.cache {
            let from_free = c.acquire(p, hits);
            debug_assert!(
                from_free <= self.free,
                "reused more free blocks than there are"
            );
            self.free -= from_free;
        }
    }

    /// Name blocks `from..to` of `p` as their tokens are scheduled; returns the end of the
    /// named run (`from` without prefix caching).
    #[inline]
    pub fn register(&mut self, p: &Prefix, from: u32, to: u32) -> u32 {
        self.cache
            .as_mut()
            .map_or(from, |c| c.register(p, from, to))
    }

    /// A request lets go of its `blocks` blocks, the first `named` through the cache and `full`
    /// of them full of computed tokens (kept cached).
    #[inline]
    pub fn release_request(&mut self, p: &Prefix, named: u32, blocks: u64, full: u64) {
        match &mut self.cache {
            None => self.release(blocks),
            Some(c) => {
                let blocks = u32::try_from(blocks).unwrap_or(u32::MAX);
                let full = u32::try_from(full).unwrap_or(u32::MAX);
                self.free += c.release(p, named, blocks, full);
                debug_assert!(self.free <= self.total, "more KV blocks freed than taken");
            }
        }
    }

    /// Blocks counted once per request holding them beyond the first (shared cached blocks).
    #[inline]
    pub fn shared(&self) -> u64 {
        self.cache.as_ref().map_or(0, |c| c.shared)
    }

    /// Blocks holding `tokens` tokens.
    #[inline]
    pub fn blocks_for(&self, tokens: u64) -> u64 {
        tokens.div_ceil(self.block_size)
    }

    #[inline]
    pub fn block_size(&self) -> u64 {
        self.block_size
    }

    #[inline]
    pub fn total(&self) -> u64 {
        self.total
    }

    #[inline]
    pub fn free(&self) -> u64 {
        self.free
    }

    #[inline]
    pub fn used(&self) -> u64 {
        self.total - self.free
    }

    #[inline]
    pub fn watermark(&self) -> u64 {
        self.watermark
    }

    /// Whether `need` blocks can be taken, with the watermark held back unless `ignore_watermark`.
    #[inline]
    pub fn can_allocate(&self, need: u64, ignore_watermark: bool) -> bool {
        let held_back = if ignore_watermark { 0 } else { self.watermark };
        self.free >= need + held_back
    }

    /// Take `n` blocks if that many are free.
    #[inline]
    pub fn try_take(&mut self, n: u64) -> bool {
        if self.free < n {
            return false;
        }
        self.take(n);
        true
    }

    /// Take `n` blocks the caller has checked are free.
    #[inline]
    pub fn take(&mut self, n: u64) {
        debug_assert!(n <= self.free, "taking {n} of {} free KV blocks", self.free);
        self.free -= n;
        if let Some(c) = &mut self.cache {
            c.take(n);
        }
    }

    /// Give back `n` anonymous blocks (without prefix caching: a static batch, a request).
    #[inline]
    pub fn release(&mut self, n: u64) {
        debug_assert!(
            self.cache.is_none(),
            "release by count with prefix caching on"
        );
        self.free += n;
        debug_assert!(self.free <= self.total, "more KV blocks freed than taken");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_blocks_and_holds_the_watermark_back() {
        let mut kv = KvBlocks::new(200, 16, 0.01);
        assert_eq!(
            (kv.blocks_for(0), kv.blocks_for(16), kv.blocks_for(17)),
            (0, 1, 2)
        );
        assert_eq!(kv.watermark(), 2);
        assert!(kv.try_take(197));
        assert!(!kv.can_allocate(2, false));
        assert!(kv.can_allocate(2, true));
        assert!(!kv.try_take(4));
        kv.release(7);
        assert_eq!((kv.free(), kv.used()), (10, 190));
    }
}
