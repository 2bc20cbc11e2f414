//! The simulated server: scheduler, paged KV-block manager and the event loop around them.
//!
//! Work per engine step is O(1) plus O(log n) per admission, completion or preemption, however
//! many sequences decode: every decoding sequence advances by one token per decode step, so its
//! progress is derived from a global decode-step counter `g` (tokens = tokens at join + steps
//! since); the sum of decode contexts is a running total (+1 per sequence per step); the KV
//! blocks a step needs are counted per residue class of `g` mod block size (a sequence needs a new
//! block exactly when its token count passes a multiple of the block size); completions come
//! from a heap keyed by the step at which a sequence reaches its output length; inter-token gaps
//! are recorded per group of sequences that got their last token at the same instant.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, VecDeque};

use super::load::{Sources, secs_to_ns};
use super::metrics::Recorder;
use super::{LoadStats, SimConfig, SimOutput, Sketches, Stop, TIMELINE_POINTS};
use crate::catalog::engine::Policy;
use crate::error::{Error, Result};
use crate::step::{BatchShape, PrefillChunk, StepTime};

const NONE: u64 = u64::MAX;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Free,
    Waiting,
    Prefill,
    Decode,
}

#[derive(Debug, Clone)]
struct Req {
    state: State,
    source: u32,
    measured: bool,
    arrival: u64,
    /// Prompt tokens as sent (history included).
    prompt: u32,
    output: u32,
    /// Tokens emitted so far (not kept current while decoding: see `generated_at`).
    generated: u32,
    /// Tokens the current (re)prefill must compute: prompt + tokens generated before a preemption.
    target: u32,
    computed: u32,
    /// KV blocks held (not kept current while decoding on a paged server).
    blocks: u64,
    /// Admission order: the largest is the newest, evicted first.
    order: u64,
    /// Decode bookkeeping: decode-step counter, token count and emitted tokens at joining.
    g_join: u64,
    n_join: u64,
    gen_join: u32,
    /// `g mod block_size` at which this sequence needs a new block.
    residue: u32,
    paged: bool,
    first_token: u64,
    last_token: u64,
    version: u32,
}

/// A static (Hugging Face `generate`) batch in flight.
#[derive(Debug, Clone)]
struct StaticBatch {
    size: u64,
    /// Longest prompt: every prompt is padded to it.
    pmax: u64,
    /// Decode steps run so far.
    steps: u64,
    blocks: u64,
}

/// What the step in flight does.
#[derive(Debug, Default)]
struct Plan {
    decode: bool,
    /// (request, new prompt tokens) of each prefill chunk.
    chunks: Vec<(u32, u32)>,
    shape: Vec<PrefillChunk>,
    /// Static batches prefill every member at once.
    static_prefill: bool,
}

struct Server<'a> {
    cfg: &'a SimConfig,
    cost: &'a dyn StepTime,
    bs: u64,
    total_blocks: u64,
    free_blocks: u64,
    /// vLLM V0 keeps 1% of blocks free when admitting prefills (block manager watermark).
    watermark: u64,
    reqs: Vec<Req>,
    free_ids: Vec<u32>,
    waiting: VecDeque<u32>,
    running: BTreeMap<u64, u32>,
    prefilling: Vec<u32>,
    next_order: u64,
    // Decoding sequences.
    g: u64,
    decoders: u64,
    ctx: u64,
    buckets: Vec<u64>,
    finish: BinaryHeap<Reverse<(u64, u64, u32, u32)>>,
    /// (time of last token, measured sequences) of decoding sequences.
    groups: Vec<(u64, u64)>,
    last_decode_end: u64,
    static_batch: Option<StaticBatch>,
    plan: Plan,
    // Measurement.
    warmup_ns: u64,
    rec: Recorder,
    steps: u64,
    held_until: u64,
    timeline: Timeline,
    /// Measured requests sent and not yet finished or rejected.
    outstanding: u64,
    measured_sent: u64,
    last_measured_send: u64,
    sent: u64,
    /// Tokens emitted, measured or not.
    emitted: u64,
    consecutive_rejects: u64,
    /// Requests whose end a source must hear about: (source, prompt, output, rejected).
    ended: Vec<(u32, u32, u32, bool)>,
    /// Recompute every invariant after each scheduling decision (tests).
    check: bool,
}

/// (time s, value) samples.
type Series = Vec<(f64, f64)>;

#[derive(Debug, Default)]
struct Timeline {
    interval: u64,
    next: u64,
    points: Vec<(f64, f64, f64)>,
}

impl Timeline {
    fn sample(&mut self, now: u64, kv: f64, queue: f64) {
        if now < self.next {
            return;
        }
        self.points.push((now as f64 * 1e-9, kv, queue));
        self.next = now + self.interval;
        if self.points.len() >= 2 * TIMELINE_POINTS {
            let kept: Vec<_> = self.points.iter().step_by(2).copied().collect();
            self.points = kept;
            self.interval *= 2;
        }
    }

    fn finish(mut self) -> (Series, Series) {
        if self.points.len() > TIMELINE_POINTS {
            let step = self.points.len().div_ceil(TIMELINE_POINTS);
            self.points = self.points.iter().step_by(step).copied().collect();
        }
        (
            self.points.iter().map(|p| (p.0, p.1)).collect(),
            self.points.iter().map(|p| (p.0, p.2)).collect(),
        )
    }
}

fn blocks_for(tokens: u64, bs: u64) -> u64 {
    tokens.div_ceil(bs)
}

impl<'a> Server<'a> {
    fn new(cost: &'a dyn StepTime, cfg: &'a SimConfig) -> Self {
        let bs = u64::from(cfg.engine.block_size);
        let watermark = if cfg.engine.policy == Policy::PrefillFirst {
            (cfg.kv_blocks as f64 * 0.01) as u64
        } else {
            0
        };
        Server {
            cfg,
            cost,
            bs,
            total_blocks: cfg.kv_blocks,
            free_blocks: cfg.kv_blocks,
            watermark,
            reqs: Vec::new(),
            free_ids: Vec::new(),
            waiting: VecDeque::new(),
            running: BTreeMap::new(),
            prefilling: Vec::new(),
            next_order: 0,
            g: 0,
            decoders: 0,
            ctx: 0,
            buckets: vec![0; bs as usize],
            finish: BinaryHeap::new(),
            groups: Vec::new(),
            last_decode_end: 0,
            static_batch: None,
            plan: Plan::default(),
            warmup_ns: secs_to_ns(cfg.warmup_s),
            rec: Recorder::default(),
            steps: 0,
            held_until: 0,
            timeline: Timeline {
                interval: 50_000_000,
                next: 0,
                points: Vec::new(),
            },
            outstanding: 0,
            measured_sent: 0,
            last_measured_send: 0,
            sent: 0,
            emitted: 0,
            consecutive_rejects: 0,
            ended: Vec::new(),
            check: false,
        }
    }

    /// Recompute the KV blocks, decode context and limits from every running request and
    /// compare with the running totals: the invariants the O(1)-per-step bookkeeping relies on.
    fn verify(&self) -> Result<()> {
        let fail = |m: String| {
            Err(Error::Internal(format!(
                "invariant broken at step {}: {m}",
                self.steps
            )))
        };
        let (bs, g) = (self.bs, self.g);
        let (mut used, mut ctx, mut decoders) = (0u64, 0u64, 0u64);
        for &id in self.running.values() {
            let r = &self.reqs[id as usize];
            match r.state {
                State::Prefill => used += r.blocks,
                State::Decode => {
                    decoders += 1;
                    if r.paged {
                        let steps = g - r.g_join;
                        let kv_tokens = r.n_join - 1 + steps + u64::from(self.plan.decode);
                        used += blocks_for(kv_tokens, bs);
                        ctx += r.n_join + steps;
                    }
                }
                s => return fail(format!("request {id} is running in state {s:?}")),
            }
        }
        if let Some(b) = &self.static_batch {
            used += b.blocks;
        }
        if used > self.total_blocks {
            return fail(format!(
                "{used} KV blocks in use, capacity {}",
                self.total_blocks
            ));
        }
        if used != self.used_blocks() {
            return fail(format!(
                "{used} blocks held, {} counted",
                self.used_blocks()
            ));
        }
        if decoders != self.decoders {
            return fail(format!("{decoders} decoding, {} counted", self.decoders));
        }
        if self.static_batch.is_none() && ctx != self.ctx {
            return fail(format!("decode context {ctx}, {} counted", self.ctx));
        }
        if self.running.len() as u64 > u64::from(self.cfg.engine.max_num_seqs) {
            return fail(format!("{} running > max_num_seqs", self.running.len()));
        }
        let prefill: u64 = self.plan.chunks.iter().map(|c| u64::from(c.1)).sum();
        let budget = u64::from(self.cfg.engine.max_num_batched_tokens);
        let tokens = prefill + if self.plan.decode { self.decoders } else { 0 };
        let over = match self.cfg.engine.policy {
            Policy::ChunkedDecodeFirst => tokens > budget,
            Policy::PrefillFirst => self.plan.chunks.len() > 1 && tokens > budget,
            Policy::Static => false,
        };
        if over {
            return fail(format!("{tokens} tokens in one step, budget {budget}"));
        }
        Ok(())
    }

    fn used_blocks(&self) -> u64 {
        self.total_blocks - self.free_blocks
    }

    /// Account for the state held since the last call, up to `now`.
    fn hold(&mut self, now: u64) {
        let from = self.held_until.max(self.warmup_ns);
        if now > from {
            let (kv, q, r) = (
                self.used_blocks(),
                self.waiting.len() as u64,
                self.running.len() as u64,
            );
            self.rec.hold(now - from, kv, q, r);
        }
        self.held_until = self.held_until.max(now);
        let kv = self.used_blocks() as f64 / self.total_blocks as f64;
        self.timeline.sample(now, kv, self.waiting.len() as f64);
    }

    fn measuring(&self, now: u64) -> bool {
        now >= self.warmup_ns
    }

    // ---- arrivals -------------------------------------------------------------------------

    /// Why a request can never be served, if it cannot.
    fn refuse(&self, prompt: u32, output: u32) -> bool {
        let total = u64::from(prompt) + u64::from(output);
        if total > u64::from(self.cfg.max_context) {
            return true;
        }
        if blocks_for(total, self.bs) > self.total_blocks {
            return true;
        }
        if self.cfg.engine.policy == Policy::PrefillFirst {
            // vLLM V0 ignores prompts over min(max_model_len, max_num_batched_tokens) and
            // prompts that could never be allocated under the watermark.
            if prompt > self.cfg.engine.max_num_batched_tokens {
                return true;
            }
            if blocks_for(u64::from(prompt), self.bs) + self.watermark > self.total_blocks {
                return true;
            }
        }
        false
    }

    fn add_request(&mut self, now: u64, source: u32, prompt: u32, output: u32, measured: bool) {
        let req = Req {
            state: State::Waiting,
            source,
            measured,
            arrival: now,
            prompt,
            output,
            generated: 0,
            target: prompt,
            computed: 0,
            blocks: 0,
            order: 0,
            g_join: 0,
            n_join: 0,
            gen_join: 0,
            residue: 0,
            paged: true,
            first_token: NONE,
            last_token: NONE,
            version: 0,
        };
        let id = match self.free_ids.pop() {
            Some(id) => {
                let v = self.reqs[id as usize].version.wrapping_add(1);
                self.reqs[id as usize] = Req { version: v, ..req };
                id
            }
            None => {
                self.reqs.push(req);
                (self.reqs.len() - 1) as u32
            }
        };
        self.waiting.push_back(id);
    }

    // ---- decode bookkeeping ---------------------------------------------------------------

    fn add_to_group(&mut self, t: u64) {
        match self.groups.iter_mut().find(|g| g.0 == t) {
            Some(g) => g.1 += 1,
            None => self.groups.push((t, 1)),
        }
    }

    fn remove_from_group(&mut self, t: u64) {
        if let Some(i) = self.groups.iter().position(|g| g.0 == t) {
            self.groups[i].1 -= 1;
            if self.groups[i].1 == 0 {
                self.groups.swap_remove(i);
            }
        }
    }

    /// `id` has just emitted a token at `t` after a (re)prefill and starts decoding.
    fn join_decode(&mut self, id: u32, t: u64, paged: bool) {
        let bs = self.bs;
        let g = self.g;
        let r = &mut self.reqs[id as usize];
        r.state = State::Decode;
        r.g_join = g;
        r.n_join = u64::from(r.target) + 1;
        r.gen_join = r.generated;
        r.paged = paged;
        r.residue = ((1 + g % bs + bs - r.n_join % bs) % bs) as u32;
        let fin = g + u64::from(r.output - r.generated);
        let (order, version, measured, n_join, residue) =
            (r.order, r.version, r.measured, r.n_join, r.residue);
        self.decoders += 1;
        if paged {
            self.ctx += n_join;
            self.buckets[residue as usize] += 1;
        }
        self.finish.push(Reverse((fin, order, id, version)));
        if measured {
            self.add_to_group(t);
        }
    }

    /// Take a decoding sequence out of the decode set, bringing its fields up to date.
    fn leave_decode(&mut self, id: u32) {
        let (g, bs) = (self.g, self.bs);
        let r = &mut self.reqs[id as usize];
        let steps = g - r.g_join;
        r.generated = r.gen_join + steps as u32;
        let last = if steps > 0 {
            self.last_decode_end
        } else {
            r.last_token
        };
        r.last_token = last;
        let (paged, measured, residue) = (r.paged, r.measured, r.residue);
        let n_now = r.n_join + steps;
        if paged {
            r.blocks = blocks_for(r.n_join - 1 + steps, bs);
            self.ctx -= n_now;
            self.buckets[residue as usize] -= 1;
        } else {
            r.blocks = 0;
        }
        self.decoders -= 1;
        if measured {
            self.remove_from_group(last);
        }
    }

    /// Evict the newest running request (recompute: its KV is dropped, it waits at the head of
    /// the queue and later prefills its prompt and every token generated so far).
    fn preempt_newest(&mut self, now: u64) -> Option<u32> {
        let (&order, &id) = self.running.iter().next_back()?;
        self.running.remove(&order);
        match self.reqs[id as usize].state {
            State::Decode => self.leave_decode(id),
            State::Prefill => {
                if let Some(i) = self.prefilling.iter().position(|&p| p == id) {
                    self.prefilling.remove(i);
                }
            }
            _ => {}
        }
        let r = &mut self.reqs[id as usize];
        self.free_blocks += r.blocks;
        r.blocks = 0;
        r.state = State::Waiting;
        r.target = r.prompt + r.generated;
        r.computed = 0;
        self.waiting.push_front(id);
        if self.measuring(now) {
            self.rec.preemptions += 1;
        }
        Some(id)
    }

    fn admit(&mut self, id: u32) {
        let order = self.next_order;
        self.next_order += 1;
        self.running.insert(order, id);
        let r = &mut self.reqs[id as usize];
        r.order = order;
        r.state = State::Prefill;
    }

    /// Make room for this decode step's new blocks, evicting the newest requests if needed.
    fn reserve_decode_blocks(&mut self, now: u64) -> bool {
        let mut preempted = false;
        loop {
            let need = self.buckets[(self.g % self.bs) as usize];
            if self.free_blocks >= need {
                self.free_blocks -= need;
                return preempted;
            }
            if self.preempt_newest(now).is_none() {
                return preempted;
            }
            preempted = true;
        }
    }

    // ---- scheduling -----------------------------------------------------------------------

    /// Decide the next step at `now`; false when there is nothing to run.
    fn schedule(&mut self, now: u64) -> bool {
        self.plan.chunks.clear();
        self.plan.shape.clear();
        self.plan.decode = false;
        self.plan.static_prefill = false;
        match self.cfg.engine.policy {
            Policy::ChunkedDecodeFirst => self.schedule_chunked(now),
            Policy::PrefillFirst => self.schedule_prefill_first(now),
            Policy::Static => self.schedule_static(),
        }
        self.plan.decode || !self.plan.chunks.is_empty()
    }

    /// vLLM V1: running decodes first, then running partial prefills, then (if nothing was
    /// preempted) waiting requests, chunked to fit the token budget.
    fn schedule_chunked(&mut self, now: u64) {
        let e = &self.cfg.engine;
        let (max_seqs, mut budget) = (
            u64::from(e.max_num_seqs),
            u64::from(e.max_num_batched_tokens),
        );
        let mut preempted = false;
        if self.decoders > 0 {
            preempted |= self.reserve_decode_blocks(now);
            self.plan.decode = self.decoders > 0;
            budget -= self.decoders.min(budget);
        }
        let mut i = 0;
        while i < self.prefilling.len() && budget > 0 {
            let id = self.prefilling[i];
            let r = &self.reqs[id as usize];
            let chunk = u64::from(r.target - r.computed).min(budget);
            let need = blocks_for(u64::from(r.computed) + chunk, self.bs) - r.blocks;
            // Like vLLM V1, only requests not yet scheduled in this step (newer prefills) are
            // evicted to make room; if that is not enough the chunk waits for the next step.
            while self.free_blocks < need {
                let newest = self.running.values().next_back().copied();
                let later =
                    newest.is_some_and(|n| n != id && self.prefilling[i + 1..].contains(&n));
                if !later {
                    break;
                }
                self.preempt_newest(now);
                preempted = true;
            }
            if self.free_blocks < need {
                break;
            }
            self.free_blocks -= need;
            let r = &mut self.reqs[id as usize];
            r.blocks += need;
            self.plan.chunks.push((id, chunk as u32));
            self.plan.shape.push(PrefillChunk {
                new_tokens: chunk as u32,
                cached_tokens: r.computed,
            });
            budget -= chunk;
            i += 1;
        }
        if self.plan.decode && self.decoders == 0 {
            self.plan.decode = false;
        }
        if preempted {
            return;
        }
        while budget > 0 && (self.running.len() as u64) < max_seqs {
            let Some(&id) = self.waiting.front() else {
                break;
            };
            let r = &self.reqs[id as usize];
            let chunk = u64::from(r.target).min(budget);
            let need = blocks_for(chunk, self.bs);
            if self.free_blocks < need {
                break;
            }
            self.waiting.pop_front();
            self.admit(id);
            self.prefilling.push(id);
            self.free_blocks -= need;
            let r = &mut self.reqs[id as usize];
            r.blocks = need;
            self.plan.chunks.push((id, chunk as u32));
            self.plan.shape.push(PrefillChunk {
                new_tokens: chunk as u32,
                cached_tokens: 0,
            });
            budget -= chunk;
        }
    }

    /// vLLM V0 (0.5.x): if whole waiting prompts fit the token budget, the sequence limit and
    /// the KV cache (above a 1% watermark), the step prefills them and nothing else; otherwise
    /// it decodes every running sequence.
    fn schedule_prefill_first(&mut self, now: u64) {
        let e = &self.cfg.engine;
        let (max_seqs, budget) = (
            u64::from(e.max_num_seqs),
            u64::from(e.max_num_batched_tokens),
        );
        let mut tokens = 0u64;
        while let Some(&id) = self.waiting.front() {
            let target = u64::from(self.reqs[id as usize].target);
            let need = blocks_for(target, self.bs);
            let first = self.plan.chunks.is_empty();
            if !first && tokens + target > budget {
                break;
            }
            if self.running.len() as u64 >= max_seqs {
                break;
            }
            // An empty server admits a (recomputed) prompt even below the watermark, so a long
            // preempted request can always resume.
            let watermark = if first && self.running.is_empty() {
                0
            } else {
                self.watermark
            };
            if self.free_blocks < need + watermark {
                break;
            }
            self.waiting.pop_front();
            self.admit(id);
            self.free_blocks -= need;
            self.reqs[id as usize].blocks = need;
            self.plan.chunks.push((id, target as u32));
            self.plan.shape.push(PrefillChunk {
                new_tokens: target as u32,
                cached_tokens: 0,
            });
            tokens += target;
        }
        if !self.plan.chunks.is_empty() {
            return;
        }
        if self.decoders > 0 {
            self.reserve_decode_blocks(now);
            self.plan.decode = self.decoders > 0;
        }
    }

    /// Hugging Face `generate`: a batch of up to `max_num_seqs` waiting requests (prompts padded
    /// to the longest) runs until its longest output is done; nobody joins mid-batch.
    fn schedule_static(&mut self) {
        if let Some(b) = &self.static_batch {
            if self.decoders > 0 {
                self.plan.decode = true;
                return;
            }
            self.free_blocks += b.blocks;
            self.static_batch = None;
        }
        let max_seqs = u64::from(self.cfg.engine.max_num_seqs);
        let capacity = self.total_blocks * self.bs;
        let (mut size, mut pmax, mut omax) = (0u64, 0u64, 0u64);
        for &id in &self.waiting {
            if size >= max_seqs {
                break;
            }
            let r = &self.reqs[id as usize];
            let (p, o) = (pmax.max(u64::from(r.prompt)), omax.max(u64::from(r.output)));
            if (size + 1) * (p + o) > capacity {
                break;
            }
            (size, pmax, omax) = (size + 1, p, o);
        }
        if size == 0 {
            return;
        }
        let blocks = blocks_for(size * (pmax + omax), self.bs).min(self.free_blocks);
        self.free_blocks -= blocks;
        for _ in 0..size {
            let Some(id) = self.waiting.pop_front() else {
                break;
            };
            self.admit(id);
            let target = self.reqs[id as usize].target;
            self.plan.chunks.push((id, target));
            self.plan.shape.push(PrefillChunk {
                new_tokens: pmax as u32,
                cached_tokens: 0,
            });
        }
        self.plan.static_prefill = true;
        self.static_batch = Some(StaticBatch {
            size,
            pmax,
            steps: 0,
            blocks,
        });
    }

    /// Seconds of the planned step.
    fn step_ns(&self) -> Result<u64> {
        let (decode_seqs, ctx) = match (&self.static_batch, self.plan.decode) {
            (Some(b), true) => (b.size, b.size * (b.pmax + b.steps + 1)),
            (_, true) => (self.decoders, self.ctx),
            _ => (0, 0),
        };
        let shape = BatchShape {
            decode_seqs: decode_seqs as u32,
            decode_context_tokens: ctx,
            prefills: &self.plan.shape,
        };
        let s = self.cost.step_seconds(&shape);
        if !(s.is_finite() && s >= 0.0) {
            return Err(Error::Internal(format!(
                "step time {s} s for {decode_seqs} decodes and {} prefill chunks",
                shape.prefills.len()
            )));
        }
        Ok(secs_to_ns(s).max(1))
    }

    // ---- step end -------------------------------------------------------------------------

    fn finish_step(&mut self, t: u64) {
        self.steps += 1;
        if self.plan.decode {
            // Every decoding sequence gets one token at the step's end.
            for &(time, n) in &self.groups {
                self.rec.itl(t - time, n);
            }
            let total: u64 = self.groups.iter().map(|g| g.1).sum();
            self.groups.clear();
            if total > 0 {
                self.groups.push((t, total));
            }
            if self.static_batch.is_none() {
                self.ctx += self.decoders;
            }
            self.emitted += self.decoders;
            self.g += 1;
            self.last_decode_end = t;
            if let Some(b) = &mut self.static_batch {
                b.steps += 1;
            }
            while let Some(&Reverse((fin, _, id, version))) = self.finish.peek() {
                if fin > self.g {
                    break;
                }
                self.finish.pop();
                let r = &self.reqs[id as usize];
                if r.version != version
                    || r.state != State::Decode
                    || r.g_join + u64::from(r.output - r.gen_join) != fin
                {
                    continue;
                }
                self.leave_decode(id);
                self.complete(id, t);
            }
        }
        let chunks = std::mem::take(&mut self.plan.chunks);
        let static_prefill = self.plan.static_prefill;
        for &(id, chunk) in &chunks {
            let r = &mut self.reqs[id as usize];
            r.computed += chunk;
            if r.computed < r.target {
                continue;
            }
            // The prefill is complete: it samples the next token.
            r.generated += 1;
            self.emitted += 1;
            if r.first_token == NONE {
                r.first_token = t;
            } else if r.measured && r.last_token != NONE {
                let gap = t - r.last_token;
                self.rec.itl(gap, 1);
            }
            r.last_token = t;
            let done = r.generated >= r.output;
            if !static_prefill && let Some(i) = self.prefilling.iter().position(|&p| p == id) {
                self.prefilling.remove(i);
            }
            if done {
                self.complete(id, t);
            } else {
                self.join_decode(id, t, !static_prefill);
            }
        }
        self.plan.chunks = chunks;
    }

    /// `id` emitted its last token at `t`.
    fn complete(&mut self, id: u32, t: u64) {
        let r = &mut self.reqs[id as usize];
        self.running.remove(&r.order);
        self.free_blocks += r.blocks;
        r.blocks = 0;
        r.state = State::Free;
        r.last_token = t;
        let r = self.reqs[id as usize].clone();
        if r.measured {
            self.rec
                .complete(r.arrival, r.first_token, t, r.prompt, r.output);
            self.outstanding -= 1;
        }
        self.consecutive_rejects = 0;
        self.free_ids.push(id);
        self.ended.push((r.source, r.prompt, r.output, false));
    }
}

/// Run the simulation described by `cfg`.
pub(crate) fn simulate(cost: &dyn StepTime, cfg: &SimConfig, check: bool) -> Result<SimOutput> {
    let mut srv = Server::new(cost, cfg);
    srv.check = check;
    let mut sources = Sources::new(&cfg.load, &cfg.scenario, cfg.max_context, cfg.seed);
    let mut events: BinaryHeap<Reverse<(u64, u64, u32)>> = BinaryHeap::new();
    let mut seq = 0u64;
    let mut push = |events: &mut BinaryHeap<Reverse<(u64, u64, u32)>>, t: u64, src: u32| {
        events.push(Reverse((t, seq, src)));
        seq += 1;
    };
    for (t, src) in sources.initial_events() {
        push(&mut events, t, src);
    }
    let warmup = srv.warmup_ns;
    let (measure_end, limit) = match cfg.stop {
        Stop::Requests(_) => (NONE, NONE),
        Stop::Duration(d) => {
            let end = warmup + secs_to_ns(d);
            (end, end + secs_to_ns(10.0 * d + 3600.0))
        }
    };
    let mut now = 0u64;
    let mut busy_until: Option<u64> = None;
    let end = loop {
        // Events due before the step in flight ends (or, when idle, at the next instant).
        let horizon = match busy_until {
            Some(t) => t,
            None => match events.peek() {
                Some(Reverse((t, _, _))) => (*t).max(now),
                None => {
                    break now;
                }
            },
        };
        if busy_until.is_none() {
            now = horizon;
        }
        while let Some(&Reverse((t, _, src))) = events.peek() {
            if t > horizon {
                break;
            }
            events.pop();
            srv.hold(t);
            // Decide whether this source may send, and whether the request is measured.
            let (may_send, measured) = if t < warmup {
                (true, false)
            } else {
                match cfg.stop {
                    Stop::Requests(k) => (srv.measured_sent < k, srv.measured_sent < k),
                    Stop::Duration(_) => (t < limit, t < measure_end),
                }
            };
            if !may_send {
                continue;
            }
            let a = sources.arrive(t, src);
            if let Some(next) = a.next {
                push(&mut events, next, src);
            }
            srv.sent += 1;
            if measured {
                srv.measured_sent += 1;
                srv.outstanding += 1;
                srv.last_measured_send = t;
                srv.rec.note_send(t);
            }
            if srv.refuse(a.prompt, a.output) {
                if measured {
                    srv.rec.rejected += 1;
                    srv.outstanding -= 1;
                }
                srv.consecutive_rejects += 1;
                if srv.consecutive_rejects > 1_000_000 {
                    return Err(Error::BadInput(format!(
                        "every request is refused: scenario {} asks for more tokens than the server accepts (max context {} tokens, KV cache {} tokens)",
                        cfg.scenario.key,
                        cfg.max_context,
                        cfg.kv_blocks * srv.bs
                    )));
                }
                if let Some(next) = sources.done(t, src, a.prompt, a.output, true) {
                    push(&mut events, next, src);
                }
                continue;
            }
            srv.add_request(t, src, a.prompt, a.output, measured);
        }
        if let Some(t) = busy_until.take() {
            now = t;
            srv.hold(now);
            srv.finish_step(now);
            for (src, prompt, output, rejected) in std::mem::take(&mut srv.ended) {
                if let Some(next) = sources.done(now, src, prompt, output, rejected) {
                    push(&mut events, next, src);
                }
            }
        }
        // Stop once every measured request has ended and no more will be sent.
        let no_more = match cfg.stop {
            Stop::Requests(k) => srv.measured_sent >= k || sources.exhausted(),
            Stop::Duration(_) => now >= measure_end || sources.exhausted(),
        };
        if no_more && srv.outstanding == 0 && (now >= warmup || sources.exhausted()) {
            break now;
        }
        if now >= limit {
            break now;
        }
        // Events at exactly `now` are handled before the next step is planned.
        if events.peek().is_some_and(|Reverse((t, _, _))| *t <= now) {
            continue;
        }
        let scheduled = srv.schedule(now);
        if srv.check {
            srv.verify()?;
        }
        if scheduled {
            busy_until = Some(now + srv.step_ns()?);
        } else if events.is_empty() {
            if !srv.waiting.is_empty() || !srv.running.is_empty() {
                return Err(Error::Internal(format!(
                    "scheduler stalled with {} waiting and {} running requests",
                    srv.waiting.len(),
                    srv.running.len()
                )));
            }
            break now;
        }
    };
    srv.hold(end);

    let measured = describe_measurement(cfg, srv.measured_sent);
    let mut rec = srv.rec;
    let metrics = rec.finish(srv.total_blocks, srv.outstanding, srv.steps, end, measured);
    let (kv_timeline, queue_timeline) = srv.timeline.finish();
    let window_s = match cfg.stop {
        Stop::Duration(d) => d,
        Stop::Requests(_) => rec.first_send_ns.map_or(0.0, |f| {
            (srv.last_measured_send.saturating_sub(f)) as f64 * 1e-9
        }),
    };
    let load = LoadStats {
        sent: srv.sent,
        offered_requests_per_s: if window_s > 0.0 {
            srv.measured_sent as f64 / window_s
        } else {
            0.0
        },
        active_sessions: match cfg.load {
            super::Load::Users(n) => Some(super::Load::active_sessions(n, &cfg.scenario)),
            _ => None,
        },
        warmup_s: cfg.warmup_s,
        simulated_output_tokens: srv.emitted,
    };
    let sketches = Sketches {
        ttft_ms: std::mem::take(&mut rec.ttft),
        tpot_ms: std::mem::take(&mut rec.tpot),
        itl_ms: std::mem::take(&mut rec.itl),
        e2e_s: std::mem::take(&mut rec.e2e),
        request_tok_s: std::mem::take(&mut rec.rate),
    };
    Ok(SimOutput {
        metrics,
        kv_timeline,
        queue_timeline,
        load,
        sketches,
    })
}

fn describe_measurement(cfg: &SimConfig, sent: u64) -> String {
    let warm = if cfg.warmup_s > 0.0 {
        format!(
            "; requests sent during the {} s warm-up load the server but are not measured",
            cfg.warmup_s
        )
    } else {
        String::new()
    };
    match cfg.stop {
        Stop::Requests(_) => {
            format!("all {sent} requests sent after the warm-up, each until its last token{warm}")
        }
        Stop::Duration(d) => format!(
            "the {sent} requests sent in [{w}, {e}) s, each until its last token; the load keeps running while they finish{warm}",
            w = cfg.warmup_s,
            e = cfg.warmup_s + d
        ),
    }
}
