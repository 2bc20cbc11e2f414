//! The paged KV-cache block manager: a pool of fixed-size blocks, counted, not tracked one by
//! one (which block a sequence holds never changes a step's time).

/// KV blocks of `block_size` tokens, with vLLM V0's admission watermark.
#[derive(Debug, Clone)]
pub(crate) struct KvBlocks {
    block_size: u64,
    total: u64,
    free: u64,
    /// Blocks kept free when admitting new prompts, so running sequences can still grow
    /// (vLLM V0's block manager keeps 1%; V1 and static batching keep none).
    watermark: u64,
}

impl KvBlocks {
    /// `total` blocks, all free; `watermark_share` of them held back from admissions.
    pub fn new(total: u64, block_size: u64, watermark_share: f64) -> KvBlocks {
        KvBlocks {
            block_size,
            total,
            free: total,
            watermark: (total as f64 * watermark_share) as u64,
        }
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
        self.free -= n;
        true
    }

    /// Take `n` blocks the caller has checked are free.
    #[inline]
    pub fn take(&mut self, n: u64) {
        debug_assert!(n <= self.free, "taking {n} of {} free KV blocks", self.free);
        self.free -= n;
    }

    #[inline]
    pub fn release(&mut self, n: u64) {
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
