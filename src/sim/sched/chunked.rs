//! vLLM V1 (`--engine vllm`): chunked prefill, decodes first.

use super::{Plan, Scheduler};
use crate::sim::server::Server;
use crate::sim::time::Nanos;

/// Running decodes first, then running partial prefills, then (if nothing was preempted)
/// waiting requests, chunked to fit the step's token budget.
#[derive(Debug, Default)]
pub(crate) struct ChunkedDecodeFirst;

impl Scheduler for ChunkedDecodeFirst {
    #[inline]
    fn schedule(&mut self, srv: &mut Server<'_>, now: Nanos) {
        let mut budget = u64::from(srv.cfg.engine.max_num_batched_tokens);
        let mut preempted = false;
        if srv.decode.count() > 0 {
            preempted |= srv.reserve_decode_blocks(now);
            srv.plan.decode = srv.decode.count() > 0;
            budget -= srv.decode.count().min(budget);
        }
        preempted |= continue_prefills(srv, now, &mut budget);
        if srv.plan.decode && srv.decode.count() == 0 {
            srv.plan.decode = false;
        }
        // Like vLLM V1, a step that preempted admits nobody.
        if !preempted {
            admit_waiting(srv, budget);
        }
    }

    fn over_budget(&self, _plan: &Plan, tokens: u64, budget: u64) -> bool {
        tokens > budget
    }
}

/// Schedule the next chunk of every running partial prefill that fits; true if any request
/// was preempted to make room.
fn continue_prefills(srv: &mut Server<'_>, now: Nanos, budget: &mut u64) -> bool {
    let mut preempted = false;
    let mut i = 0;
    while i < srv.prefilling.len() && *budget > 0 {
        let id = srv.prefilling[i];
        let r = srv.reqs.get(id);
        let chunk = u64::from(r.target - r.computed).min(*budget);
        let need = srv.kv.blocks_for(u64::from(r.computed) + chunk) - r.blocks;
        // Like vLLM V1, only requests not yet scheduled in this step (newer prefills) are
        // evicted to make room; if that is not enough the chunk waits for the next step.
        while srv.kv.free() < need {
            let newest = srv.running.values().next_back().copied();
            let later = newest.is_some_and(|n| n != id && srv.prefilling[i + 1..].contains(&n));
            if !later {
                break;
            }
            srv.preempt_newest(now);
            preempted = true;
        }
        if !srv.kv.try_take(need) {
            break;
        }
        let r = srv.reqs.get_mut(id);
        r.blocks += need;
        let cached = r.computed;
        if srv.kv.caching() {
            srv.name_full_blocks(id, cached + chunk as u32);
        }
        srv.plan.prefill(id, chunk as u32, chunk as u32, cached);
        *budget -= chunk;
        i += 1;
    }
    preempted
}

/// Admit waiting requests while the token budget, the sequence limit and the KV cache allow,
/// each with the first chunk of its prompt; with prefix caching, the cached part of the prompt
/// is reused and only the rest is computed (and counted against the budget).
fn admit_waiting(srv: &mut Server<'_>, mut budget: u64) {
    let max_seqs = u64::from(srv.cfg.engine.max_num_seqs);
    let bs = srv.kv.block_size();
    while budget > 0 && (srv.running.len() as u64) < max_seqs {
        let Some(&id) = srv.waiting.front() else {
            break;
        };
        let r = srv.reqs.get(id);
        if r.arrival > srv.visible_until {
            break;
        }
        let target = u64::from(r.target);
        let room = |(hits, reused_free): (u32, u64)| {
            let cached = u64::from(hits) * bs;
            let chunk = (target - cached).min(budget);
            let need = srv.kv.blocks_for(cached + chunk) - u64::from(hits);
            (srv.kv.free() >= need + reused_free, cached, chunk, need)
        };
        if r.probe.is_some_and(|p| !room(p).0) {
            break;
        }
        // At least the last prompt token is computed, as in vLLM.
        let probe = match srv.kv.caching() {
            true => srv.kv.lookup(&r.prefix, ((target - 1) / bs) as u32),
            false => (0, 0),
        };
        let (fits, cached, chunk, need) = room(probe);
        if !fits {
            if srv.kv.caching() {
                srv.reqs.get_mut(id).probe = Some(probe);
            }
            break;
        }
        let hits = probe.0;
        srv.waiting.pop_front();
        srv.admit(id);
        srv.prefilling.push(id);
        srv.reqs.get_mut(id).probe = None;
        if srv.kv.caching() {
            srv.reuse_prefix(id, hits);
        }
        srv.kv.take(need);
        srv.reqs.get_mut(id).blocks = u64::from(hits) + need;
        if srv.kv.caching() {
            srv.name_full_blocks(id, (cached + chunk) as u32);
        }
        srv.plan
            .prefill(id, chunk as u32, chunk as u32, cached as u32);
        budget -= chunk;
    }
}
