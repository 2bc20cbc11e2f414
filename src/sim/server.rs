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
use super::request::{Finished, Req, Requests, State};
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
}

impl<'a> Server<'a> {
    pub fn new<S: Scheduler>(cost: &'a dyn StepTime, cfg: &'a SimConfig) -> Self {
        let bs = u64::from(cfg.engine.block_size);
        Server {
            cfg,
            cost,
            memo: StepMemo::new(),
            kv: KvBlocks::new(cfg.kv_blocks, bs, S::WATERMARK_SHARE),
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
    pub fn add_request(
        &mut self,
        now: Nanos,
        source: u32,
        prompt: u32,
        output: u32,
        measured: bool,
    ) {
        let id = self
            .reqs
            .insert(Req::waiting(now, source, prompt, output, measured));
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
        let r = self.reqs.get_mut(id);
        self.kv.release(r.blocks);
        r.blocks = 0;
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

    #[inline]
    fn stop_prefilling(&mut self, id: u32) {
        if let Some(i) = self.prefilling.iter().position(|&p| p == id) {
            self.prefilling.remove(i);
        }
    }

    // ---- the step -------------------------------------------------------------------------

    /// Plan the step that starts at `now`; false when there is nothing to run.
    pub fn plan_step(&mut self, sched: &mut impl Scheduler, now: Nanos) -> bool {
        self.plan.clear();
        sched.schedule(self, now);
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
        let s = self.memo.step_seconds(self.cost, &shape);
        if !(s.is_finite() && s >= 0.0) {
            return Err(Error::Internal(format!(
                "step time {s} s for {decode_seqs} decodes and {} prefill chunks",
                shape.prefills.len()
            )));
        }
        Ok(Nanos::from_secs(s).max(Nanos(1)))
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
        let r = self.reqs.get_mut(id);
        self.running.remove(&r.order);
        self.kv.release(r.blocks);
        r.blocks = 0;
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
