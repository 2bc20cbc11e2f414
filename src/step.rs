//! The cost↔simulator contract: what one serving step is made of, and the one question the
//! simulator asks of a cost model (how long does it take?). The simulator depends on this module
//! and nothing else of `cost`, so a new cost model (tensor parallelism, experts, a mock in tests)
//! plugs in without the simulator knowing.

/// New tokens of one prompt processed in this step, on top of `cached_tokens` already in KV.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PrefillChunk {
    pub new_tokens: u32,
    pub cached_tokens: u32,
}

/// What one step runs: `decode_seqs` sequences decoding one token each (their contexts summing to
/// `decode_context_tokens`), and some prefill chunks.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct BatchShape<'a> {
    pub decode_seqs: u32,
    pub decode_context_tokens: u64,
    pub prefills: &'a [PrefillChunk],
}

impl BatchShape<'_> {
    /// Tokens through the linear layers: one per decode sequence plus every new prefill token.
    pub fn tokens(&self) -> u64 {
        u64::from(self.decode_seqs)
            + self
                .prefills
                .iter()
                .map(|p| u64::from(p.new_tokens))
                .sum::<u64>()
    }

    /// Sequences in the step (decode + prefill).
    pub fn seqs(&self) -> u32 {
        self.decode_seqs + self.prefills.len() as u32
    }
}

/// Anything that can price a step: the real [`crate::cost::StepCost`] or a mock in tests.
pub trait StepTime: Send + Sync {
    /// Wall time of the step in seconds, engine overhead included.
    fn step_seconds(&self, batch: &BatchShape<'_>) -> f64;
}
