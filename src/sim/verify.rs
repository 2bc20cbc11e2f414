//! Invariant checks for [`super::run_checked`]: the running totals the O(1)-per-step
//! bookkeeping keeps, recomputed from scratch from every running request.

use super::request::State;
use super::sched::Scheduler;
use super::server::Server;
use crate::error::{Error, Result};

impl Server<'_> {
    /// Recompute the KV blocks, decode context and limits from every running request and
    /// compare with the running totals. O(running): for tests.
    pub(crate) fn verify(&self, sched: &impl Scheduler) -> Result<()> {
        let fail = |m: String| {
            Err(Error::Internal(format!(
                "invariant broken at step {}: {m}",
                self.steps
            )))
        };
        let (mut used, mut ctx, mut decoders) = (0u64, 0u64, 0u64);
        for &id in self.running.values() {
            let r = self.reqs.get(id);
            match r.state {
                State::Prefill => used += r.blocks,
                State::Decode => {
                    decoders += 1;
                    if self.decode.paged() {
                        let steps = self.decode.g() - r.g_join;
                        let kv_tokens = r.n_join - 1 + steps + u64::from(self.plan.decode);
                        used += self.kv.blocks_for(kv_tokens);
                        ctx += r.n_join + steps;
                    }
                }
                s => return fail(format!("request {id} is running in state {s:?}")),
            }
        }
        used += sched.reserved_blocks();
        // A cached block reused by several requests is one block in the pool.
        used -= self.kv.shared();
        if used > self.kv.total() {
            return fail(format!(
                "{used} KV blocks in use, capacity {}",
                self.kv.total()
            ));
        }
        if used != self.kv.used() {
            return fail(format!("{used} blocks held, {} counted", self.kv.used()));
        }
        if decoders != self.decode.count() {
            return fail(format!(
                "{decoders} decoding, {} counted",
                self.decode.count()
            ));
        }
        if ctx != self.decode.ctx() {
            return fail(format!(
                "decode context {ctx}, {} counted",
                self.decode.ctx()
            ));
        }
        let max_seqs = u64::from(self.cfg.engine.max_num_seqs);
        if self.running.len() as u64 > max_seqs {
            return fail(format!("{} running > max_num_seqs", self.running.len()));
        }
        let budget = u64::from(self.cfg.engine.max_num_batched_tokens);
        let decode_tokens = if self.plan.decode {
            self.decode.count()
        } else {
            0
        };
        let tokens = self.plan.prefill_tokens() + decode_tokens;
        if sched.over_budget(&self.plan, tokens, budget) {
            return fail(format!("{tokens} tokens in one step, budget {budget}"));
        }
        Ok(())
    }
}
