//! vLLM V0 (`--engine vllm-v0`, 0.5.x): whole prompts first, decodes only when none fits.

use super::{Plan, Scheduler};
use crate::sim::server::Server;
use crate::sim::time::Nanos;

/// If whole waiting prompts fit the token budget, the sequence limit and the KV cache (above a
/// 1% watermark), the step prefills them and nothing else; otherwise it decodes every running
/// sequence.
#[derive(Debug, Default)]
pub(crate) struct PrefillFirst;

impl Scheduler for PrefillFirst {
    /// vLLM V0's block manager keeps 1% of blocks free when admitting prefills.
    const WATERMARK_SHARE: f64 = 0.01;

    #[inline]
    fn schedule(&mut self, srv: &mut Server<'_>, now: Nanos) {
        admit_prompts(srv);
        if srv.plan.chunks.is_empty() && srv.decode.count() > 0 {
            srv.reserve_decode_blocks(now);
            srv.plan.decode = srv.decode.count() > 0;
        }
    }

    /// vLLM V0 ignores prompts over min(max_model_len, max_num_batched_tokens) and prompts
    /// that could never be allocated under the watermark.
    fn refuses(&self, srv: &Server<'_>, prompt: u32) -> bool {
        prompt > srv.cfg.engine.max_num_batched_tokens
            || srv.kv.blocks_for(u64::from(prompt)) + srv.kv.watermark() > srv.kv.total()
    }

    /// A single prompt may exceed the budget (it was admitted alone); several may not.
    fn over_budget(&self, plan: &Plan, tokens: u64, budget: u64) -> bool {
        plan.chunks.len() > 1 && tokens > budget
    }
}

/// Admit whole waiting prompts, oldest first, while they fit.
fn admit_prompts(srv: &mut Server<'_>) {
    let e = &srv.cfg.engine;
    let (max_seqs, budget) = (
        u64::from(e.max_num_seqs),
        u64::from(e.max_num_batched_tokens),
    );
    let mut tokens = 0u64;
    while let Some(&id) = srv.waiting.front() {
        let target = u64::from(srv.reqs.get(id).target);
        let need = srv.kv.blocks_for(target);
        let first = srv.plan.chunks.is_empty();
        if !first && tokens + target > budget {
            break;
        }
        if srv.running.len() as u64 >= max_seqs {
            break;
        }
        // An empty server admits a (recomputed) prompt even below the watermark, so a long
        // preempted request can always resume.
        let ignore_watermark = first && srv.running.is_empty();
        if !srv.kv.can_allocate(need, ignore_watermark) {
            break;
        }
        srv.waiting.pop_front();
        srv.admit(id);
        srv.kv.take(need);
        srv.reqs.get_mut(id).blocks = need;
        srv.plan.prefill(id, target as u32, target as u32, 0);
        tokens += target;
    }
}
