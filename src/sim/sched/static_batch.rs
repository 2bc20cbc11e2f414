//! Hugging Face `generate` (`--engine hf-static`): static batches.

use super::{Plan, Scheduler};
use crate::sim::server::Server;
use crate::sim::time::Nanos;

/// A batch of up to `max_num_seqs` waiting requests (prompts padded to the longest) runs until
/// its longest output is done; nobody joins mid-batch.
#[derive(Debug, Default)]
pub(crate) struct Static {
    batch: Option<StaticBatch>,
}

/// The batch in flight.
#[derive(Debug, Clone, Copy)]
struct StaticBatch {
    size: u64,
    /// Longest prompt: every prompt is padded to it.
    pmax: u64,
    /// Decode steps run so far.
    steps: u64,
    /// KV blocks reserved for the whole batch up front.
    blocks: u64,
}

impl Scheduler for Static {
    /// The batch reserves its blocks up front; sequences do not grow their own.
    const PAGED: bool = false;

    #[inline]
    fn schedule(&mut self, srv: &mut Server<'_>, _now: Nanos) {
        if let Some(b) = &self.batch {
            if srv.decode.count() > 0 {
                srv.plan.decode = true;
                return;
            }
            srv.kv.release(b.blocks);
            self.batch = None;
        }
        self.batch = start_batch(srv);
    }

    /// Every member decodes, finished or not, over the padded prompt and the steps so far.
    fn decode_shape(&self, srv: &Server<'_>) -> (u64, u64) {
        match (&self.batch, srv.plan.decode) {
            (Some(b), true) => (b.size, b.size * (b.pmax + b.steps + 1)),
            (None, true) => (srv.decode.count(), srv.decode.ctx()),
            (_, false) => (0, 0),
        }
    }

    fn decode_step_done(&mut self) {
        if let Some(b) = &mut self.batch {
            b.steps += 1;
        }
    }

    fn reserved_blocks(&self) -> u64 {
        self.batch.map_or(0, |b| b.blocks)
    }

    fn over_budget(&self, _plan: &Plan, _tokens: u64, _budget: u64) -> bool {
        false
    }
}

/// Admit the largest batch of waiting requests whose padded prompts and outputs fit the KV
/// cache, and plan its prefill.
fn start_batch(srv: &mut Server<'_>) -> Option<StaticBatch> {
    let max_seqs = u64::from(srv.cfg.engine.max_num_seqs);
    let capacity = srv.kv.total() * srv.kv.block_size();
    let (mut size, mut pmax, mut omax) = (0u64, 0u64, 0u64);
    for &id in &srv.waiting {
        if size >= max_seqs {
            break;
        }
        let r = srv.reqs.get(id);
        let (p, o) = (pmax.max(u64::from(r.prompt)), omax.max(u64::from(r.output)));
        if (size + 1) * (p + o) > capacity {
            break;
        }
        (size, pmax, omax) = (size + 1, p, o);
    }
    if size == 0 {
        return None;
    }
    let blocks = srv.kv.blocks_for(size * (pmax + omax)).min(srv.kv.free());
    srv.kv.take(blocks);
    for _ in 0..size {
        let Some(id) = srv.waiting.pop_front() else {
            break;
        };
        srv.admit(id);
        let target = srv.reqs.get(id).target;
        srv.plan.prefill(id, target, pmax as u32, 0);
    }
    Some(StaticBatch {
        size,
        pmax,
        steps: 0,
        blocks,
    })
}
