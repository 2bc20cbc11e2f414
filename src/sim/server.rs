//! The simulated server's state and the operations a scheduling policy plans with: admission,
//! preemption, KV-block reservation, and what happens when a step ends.
//!
//! Work per engine step is O(1) plus O(log n) per admission, completion or preemption, however
//! many sequences decode (see [`super::decode`]).

use std::collections::{BTreeMap, VecDeque};

use super::SimConfig;
use super::decode::DecodeSet;
use super::kv::KvBlocks;
use super::memo::StepMemo;
use super::recorder::{Recorder, ServerState};
use super::request::{Arrived, Finished, Req, Requests, State};
use super::sched::{Chunk, Plan, Scheduler};
use super::time::Nanos;
use crate::error::{Error, Result};
use crate::step::{BatchShape, StepTime};

/// Refusals in a row after which the scenario is declared impossible to serve.
const MAX_CONSECUTIVE_REJECTS: u64 = 1_000_000;

pub(crate) struct Server<'a> {
    pub(crate) cfg: &'a SimConfig,
    cost: &'a dyn StepTime,
    /// Decode-only step times already computed (bit-identical to `cost`'s).
    memo: StepMemo,
    pub(crate) kv: KvBlocks,
    pub(crate) reqs: Requests,
    pub(crate) waiting: VecDeque<u32>,
    /// Admitted requests by admission order (the last is the newest).
    pub(crate) running: BTreeMap<u64, u32>,
    /// Admitted requests whose chunked prefill is under way, oldest first.
    pub(crate) prefilling: Vec<u32>,
    next_order: u64,
    pub(crate) decode: DecodeSet,
    /// The step in flight.
    pub(crate) plan: Plan,
    pub(crate) rec: Recorder,
    /// Engine steps run.
    pub(crate) steps: u64,
    /// Requests completed in the last step, for their sources.
    pub(crate) ended: Vec<Finished>,
    consecutive_rejects: u64,
    /// Whether a step's time needs the engine's per-token or overlapped host time.
    extra_host: bool,
    /// Requests that arrived after this instant are not seen by the step being planned (with
    /// async scheduling, it was planned while the previous step ran).
    pub(crate) visible_until: Nanos,
}

impl<'a> Server<'a> {
    pub fn new<S: Scheduler>(cost: &'a dyn StepTime, cfg: &'a SimConfig) -> Self {
        let bs = u64::from(cfg.engine.block_size);
        Server {
            cfg,
            cost,
            memo: StepMemo::new(),
            kv: if cfg.engine.prefix_caching {
                KvBlocks::with_prefix_caching(cfg.kv_blocks, bs, S::WATERMARK_SHARE)
            } else {
                KvBlocks::new(cfg.kv_blocks, bs, S::WATERMARK_SHARE)
            },
            reqs: Requests::default(),
            waiting: VecDeque::new(),
            running: BTreeMap::new(),
            prefilling: Vec::new(),
            next_order: 0,
            decode: DecodeSet::new(bs, S::PAGED),
            plan: Plan::default(),
            rec: Recorder::new(Nanos::from_secs(cfg.warmup_s)),
            steps: 0,
            ended: Vec::new(),
            consecutive_rejects: 0,
            extra_host: cfg.engine.extra_host_time(),
            visible_until: Nanos::HORIZON,
        }
    }

    /// Account for the state held since the last call, up to `now`.
    #[inline(always)]
    pub fn hold(&mut self, now: Nanos) {
        let state = ServerState {
            kv_blocks: self.kv.used(),
            kv_capacity: self.kv.total(),
            waiting: self.waiting.len() as u64,
            running: self.running.len() as u64,
        };
        self.rec.occupancy.hold(now, state);
    }

    // ---- arrivals -------------------------------------------------------------------------

    /// Whether a request can never be served.
    #[inline]
    pub fn refuses(&self, prompt: u32, output: u32, sched: &impl Scheduler) -> bool {
        let total = u64::from(prompt) + u64::from(output);
        total > u64::from(self.cfg.max_context)
            || self.kv.blocks_for(total) > self.kv.total()
            || sched.refuses(self, prompt)
    }

    /// Count a refused request; an error once nothing but refusals comes in.
    pub fn reject(&mut self, measured: bool) -> Result<()> {
        self.rec.rejected(measured);
        self.consecutive_rejects += 1;
        if self.consecutive_rejects > MAX_CONSECUTIVE_REJECTS {
            return Err(Error::BadInput(format!(
                "every request is refused: scenario {} asks for more tokens than the server accepts (max context {} tokens, KV cache {} tokens)",
                self.cfg.scenario.key,
                self.cfg.max_context,
                self.cfg.kv_blocks * self.kv.block_size()
            )));
        }
        Ok(())
    }

    #[inline]
    pub fn add_request(&mut self, now: Nanos, source: u32, a: Arrived, measured: bool) {
        let id = self.reqs.insert(Req::waiting(now, source, a, measured));
        self.waiting.push_back(id);
    }

    // ---- operations the schedulers plan with ----------------------------------------------

    /// Move waiting request `id` (already taken off the queue) to the running set.
    #[inline]
    pub fn admit(&mut self, id: u32) {
        let order = self.next_order;
        self.next_order += 1;
        self.running.insert(order, id);
        let r = self.reqs.get_mut(id);
        r.order = order;
        r.state = State::Prefill;
    }

    /// Evict the newest running request (recompute: its KV is dropped, it waits at the head of
    /// the queue and later prefills its prompt and every token generated so far).
    #[inline]
    pub fn preempt_newest(&mut self, now: Nanos) -> Option<u32> {
        let (&order, &id) = self.running.iter().next_back()?;
        self.running.remove(&order);
        match self.reqs.get(id).state {
            State::Decode => self.decode.leave(self.reqs.get_mut(id)),
            State::Prefill => self.stop_prefilling(id),
            State::Free | State::Waiting => {}
        }
        self.release_blocks(id, false);
        let r = self.reqs.get_mut(id);
        r.state = State::Waiting;
        r.target = r.prompt + r.generated;
        r.computed = 0;
        self.waiting.push_front(id);
        self.rec.preempted(now);
        Some(id)
    }

    /// Make room for this decode step's new blocks, evicting the newest requests if needed;
    /// true if any was evicted.
    #[inline]
    pub fn reserve_decode_blocks(&mut self, now: Nanos) -> bool {
        let mut preempted = false;
        loop {
            if self.kv.try_take(self.decode.blocks_needed()) {
                return preempted;
            }
            if self.preempt_newest(now).is_none() {
                return preempted;
            }
            preempted = true;
        }
    }

    /// `id` gives back its KV blocks: with prefix caching on, its full blocks stay cached,
    /// except, once it is `done`, the private ones nobody can reuse.
    #[inline]
    fn release_blocks(&mut self, id: u32, done: bool) {
        let r = self.reqs.get_mut(id);
        if self.kv.caching() {
            // Tokens whose KV was computed: a decoding sequence's last token is not in it yet.
            let computed = match r.state {
                State::Decode => r.prompt + r.generated.saturating_sub(1),
                _ => r.computed,
            };
            let mut full = u64::from(computed) / self.kv.block_size();
            if done {
                full = full.min(u64::from(r.prefix.private_from));
            }
            self.kv
                .release_request(&r.prefix, r.named, r.blocks, full.min(r.blocks));
        } else {
            self.kv.release(r.blocks);
        }
        r.blocks = 0;
        r.named = 0;
    }

    /// Reuse `id`'s cached prefix as it is admitted (the prompt's last token is always
    /// computed, as in vLLM); returns the prompt tokens found in the cache.
    #[inline]
    pub fn reuse_prefix(&mut self, id: u32, hits: u32) -> u32 {
        let bs = self.kv.block_size() as u32;
        let r = self.reqs.get_mut(id);
        self.kv.acquire(&r.prefix, hits);
        r.named = hits;
        r.blocks = u64::from(hits);
        r.computed = hits * bs;
        if !r.looked_up {
            r.looked_up = true;
            self.rec.prefix_lookup(r.measured, r.target, hits * bs);
        }
        hits * bs
    }

    /// Name the blocks that the chunk ending at `end` tokens fills, so later requests reuse
    /// them.
    #[inline]
    pub fn name_full_blocks(&mut self, id: u32, end: u32) {
        let bs = self.kv.block_size() as u32;
        let r = self.reqs.get_mut(id);
        let end = (end / bs).min(r.prefix.private_from);
        r.named = self.kv.register(&r.prefix, r.named, end);
    }

    #[inline]
    fn stop_prefilling(&mut self, id: u32) {
        if let Some(i) = self.prefilling.iter().position(|&p| p == id) {
            self.prefilling.remove(i);
        }
    }

    // ---- the step -------------------------------------------------------------------------

    /// Plan the step that starts at `now`, seeing the requests that arrived by `visible`;
    /// false when there is nothing to run.
    pub fn plan_step(&mut self, sched: &mut impl Scheduler, now: Nanos, visible: Nanos) -> bool {
        self.plan.clear();
        self.visible_until = visible;
        sched.schedule(self, now);
        if self.plan.is_empty() && visible < now && !self.waiting.is_empty() {
            // An idle engine plans at once: nothing runs to hide the planning behind.
            self.visible_until = now;
            sched.schedule(self, now);
        }
        !self.plan.is_empty()
    }

    /// How long the planned step takes.
    #[inline]
    pub fn step_time(&mut self, sched: &impl Scheduler) -> Result<Nanos> {
        let (decode_seqs, ctx) = sched.decode_shape(self);
        let shape = BatchShape {
            decode_seqs: decode_seqs as u32,
            decode_context_tokens: ctx,
            prefills: &self.plan.shape,
        };
        let mut s = self.memo.step_seconds(self.cost, &shape);
        if self.extra_host {
            s = self.host_time(s, &shape);
        }
        if !(s.is_finite() && s >= 0.0) {
            return Err(Error::Internal(format!(
                "step time {s} s for {decode_seqs} decodes and {} prefill chunks",
                shape.prefills.len()
            )));
        }
        Ok(Nanos::from_secs(s).max(Nanos(1)))
    }

    /// The step time with the engine's whole host-time model, from `s`, the cost model's time
    /// (GPU plus the per-step and per-sequence host time, run one after the other): per-token
    /// host time is added, and the `cpu_overlap` share of the host time runs while the GPU
    /// computes, so the step takes max(GPU, overlap × host) + (1 − overlap) × host.
    fn host_time(&self, s: f64, shape: &BatchShape<'_>) -> f64 {
        let e = &self.cfg.engine;
        let sampled = shape.decode_seqs as usize
            + self
                .plan
                .chunks
                .iter()
                .filter(|c| {
                    let r = self.reqs.get(c.id);
                    r.computed + c.tokens >= r.target
                })
                .count();
        let per_step = e.step_overhead_s + e.per_seq_overhead_s * f64::from(shape.seqs());
        let per_token = e.per_prefill_token_s * self.plan.prefill_tokens() as f64
            + e.per_output_token_s * sampled as f64;
        let f = e.cpu_overlap;
        let host = per_step + per_token;
        (s - f * per_step + (1.0 - f) * per_token).max(host)
    }

    /// The planned step ended at `t`: hand out its tokens and complete whoever is done.
    #[inline]
    pub fn finish_step(&mut self, t: Nanos, sched: &mut impl Scheduler) {
        self.steps += 1;
        if self.plan.decode {
            self.finish_decode(t);
            sched.decode_step_done();
        }
        let chunks = std::mem::take(&mut self.plan.chunks);
        for &chunk in &chunks {
            self.finish_prefill(chunk, t);
        }
        self.plan.chunks = chunks;
    }

    /// Every decoding sequence gets one token at the step's end.
    #[inline(always)]
    fn finish_decode(&mut self, t: Nanos) {
        let rec = &mut self.rec;
        self.decode.step_done(t, |gap, n| rec.itl(gap, n));
        self.rec.emitted(self.decode.count());
        while let Some(id) = self.decode.next_finished(&self.reqs) {
            self.decode.leave(self.reqs.get_mut(id));
            self.complete(id, t);
        }
    }

    #[inline]
    fn finish_prefill(&mut self, chunk: Chunk, t: Nanos) {
        let r = self.reqs.get_mut(chunk.id);
        r.computed += chunk.tokens;
        if r.computed < r.target {
            return;
        }
        // The prefill is complete: it samples the next token.
        r.generated += 1;
        match r.first_token {
            None => r.first_token = Some(t),
            Some(_) => {
                if r.measured
                    && let Some(last) = r.last_token
                {
                    self.rec.itl(t - last, 1);
                }
            }
        }
        r.last_token = Some(t);
        let done = r.generated >= r.output;
        self.rec.emitted(1);
        self.stop_prefilling(chunk.id);
        if done {
            self.complete(chunk.id, t);
        } else {
            self.decode.join(chunk.id, self.reqs.get_mut(chunk.id), t);
        }
    }

    /// `id` emitted its last token at `t`.
    #[inline]
    fn complete(&mut self, id: u32, t: Nanos) {
        self.running.remove(&self.reqs.get(id).order);
        self.release_blocks(id, true);
        let r = self.reqs.get_mut(id);
        r.state = State::Free;
        r.last_token = Some(t);
        let r = self.reqs.get(id);
        self.rec.completed(r, t);
        self.ended.push(Finished {
            source: r.source,
            prompt: r.prompt,
            output: r.output,
        });
        self.consecutive_rejects = 0;
        self.reqs.release(id);
    }
}
