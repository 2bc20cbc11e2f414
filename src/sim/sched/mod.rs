//! Scheduling policies: what the next engine step runs. One implementation per engine family;
//! each decides from the server's queues and KV blocks, through [`Server`]'s admission,
//! preemption and block-reservation operations.

mod chunked;
mod prefill_first;
mod static_batch;

pub(crate) use chunked::ChunkedDecodeFirst;
pub(crate) use prefill_first::PrefillFirst;
pub(crate) use static_batch::Static;

use super::server::Server;
use super::time::Nanos;
use crate::step::PrefillChunk;

/// A scheduling policy.
pub(crate) trait Scheduler {
    /// Share of the KV blocks kept free when admitting prompts.
    const WATERMARK_SHARE: f64 = 0.0;

    /// Whether sequences hold paged KV blocks that grow token by token.
    const PAGED: bool = true;

    /// Plan the step that starts at `now` into `srv.plan` (empty on entry).
    fn schedule(&mut self, srv: &mut Server<'_>, now: Nanos);

    /// (sequences, context tokens) the planned step decodes.
    fn decode_shape(&self, srv: &Server<'_>) -> (u64, u64) {
        if srv.plan.decode {
            (srv.decode.count(), srv.decode.ctx())
        } else {
            (0, 0)
        }
    }

    /// A decode step ended.
    fn decode_step_done(&mut self) {}

    /// Whether the engine refuses a prompt that the context and KV cache could hold.
    fn refuses(&self, _srv: &Server<'_>, _prompt: u32) -> bool {
        false
    }

    /// KV blocks held by the policy rather than by requests (a static batch's reservation).
    fn reserved_blocks(&self) -> u64 {
        0
    }

    /// Whether a planned step of `tokens` tokens breaks the policy's budget (for checks).
    fn over_budget(&self, plan: &Plan, tokens: u64, budget: u64) -> bool;
}

/// One prefill chunk of the step in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Chunk {
    pub id: u32,
    /// Prompt tokens this chunk computes for the request.
    pub tokens: u32,
}

/// What the step in flight does.
#[derive(Debug, Default)]
pub(crate) struct Plan {
    pub decode: bool,
    pub chunks: Vec<Chunk>,
    /// The chunks as the step-time model sees them (a static batch pads every prompt).
    pub shape: Vec<PrefillChunk>,
}

impl Plan {
    pub fn clear(&mut self) {
        self.decode = false;
        self.chunks.clear();
        self.shape.clear();
    }

    pub fn is_empty(&self) -> bool {
        !self.decode && self.chunks.is_empty()
    }

    /// Prefill `tokens` of request `id`, `cached` tokens of it already in the KV cache, costed
    /// as `costed` new tokens.
    pub fn prefill(&mut self, id: u32, tokens: u32, costed: u32, cached: u32) {
        self.chunks.push(Chunk { id, tokens });
        self.shape.push(PrefillChunk {
            new_tokens: costed,
            cached_tokens: cached,
        });
    }

    /// Prompt tokens prefilled by the step.
    pub fn prefill_tokens(&self) -> u64 {
        self.chunks.iter().map(|c| u64::from(c.tokens)).sum()
    }
}
