//! What a run measures, accumulated as it goes in bounded memory: the measured requests'
//! latencies (sketches, no record per request), the server's occupancy over time, and what the
//! load sent.

use super::TIMELINE_POINTS;
use super::request::Req;
use super::sketch::Sketch;
use super::time::Nanos;

/// The measured requests.
#[derive(Debug, Clone, Default)]
pub(crate) struct Outcomes {
    pub ttft: Sketch,
    pub tpot: Sketch,
    pub itl: Sketch,
    pub e2e: Sketch,
    pub rate: Sketch,
    pub stream: Sketch,
    pub requests: u64,
    pub rejected: u64,
    pub output_tokens: u64,
    pub prompt_tokens: u64,
    pub first_send: Option<Nanos>,
    pub last_token: Nanos,
    pub preemptions: u64,
    /// Prompt tokens of measured requests looked up in the prefix cache, and those found.
    pub prefix_queried: u64,
    pub prefix_hits: u64,
}

impl Outcomes {
    /// A measured request finished.
    fn complete(&mut self, send: Nanos, first: Nanos, last: Nanos, prompt: u32, output: u32) {
        let ttft = (first - send).secs();
        let e2e = (last - send).secs();
        self.ttft.add(ttft * 1e3);
        self.e2e.add(e2e);
        if output > 1 {
            let tpot = (e2e - ttft) / f64::from(output - 1);
            self.tpot.add(tpot * 1e3);
            if tpot > 0.0 {
                self.stream.add(1.0 / tpot);
            }
        }
        if e2e > 0.0 {
            self.rate.add(f64::from(output) / e2e);
        }
        self.requests += 1;
        self.output_tokens += u64::from(output);
        self.prompt_tokens += u64::from(prompt);
        self.note_send(send);
        self.last_token = self.last_token.max(last);
    }

    fn note_send(&mut self, send: Nanos) {
        self.first_send = Some(self.first_send.map_or(send, |f| f.min(send)));
    }
}

/// The server's state integrated over the measured time, and its timeline over the whole run.
#[derive(Debug, Clone)]
pub(crate) struct Occupancy {
    /// Time before this is warm-up: not integrated.
    warmup: Nanos,
    /// Time up to which the state has been accounted for.
    held_until: Nanos,
    pub kv_peak_blocks: u64,
    pub kv_block_ns: f64,
    pub queue_peak: u64,
    pub queue_ns: f64,
    pub running_ns: f64,
    pub measured: Nanos,
    pub timeline: Timeline,
}

/// How the server is occupied at an instant.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ServerState {
    pub kv_blocks: u64,
    pub kv_capacity: u64,
    pub waiting: u64,
    pub running: u64,
}

impl Occupancy {
    fn new(warmup: Nanos) -> Occupancy {
        Occupancy {
            warmup,
            held_until: Nanos::ZERO,
            kv_peak_blocks: 0,
            kv_block_ns: 0.0,
            queue_peak: 0,
            queue_ns: 0.0,
            running_ns: 0.0,
            measured: Nanos::ZERO,
            timeline: Timeline::new(Nanos(50_000_000)),
        }
    }

    /// The server was in state `s` from the last call until `now`.
    #[inline(always)]
    pub fn hold(&mut self, now: Nanos, s: ServerState) {
        let from = self.held_until.max(self.warmup);
        if now > from {
            let dt = now - from;
            let w = dt.0 as f64;
            self.kv_block_ns += w * s.kv_blocks as f64;
            self.queue_ns += w * s.waiting as f64;
            self.running_ns += w * s.running as f64;
            self.measured = self.measured + dt;
            self.kv_peak_blocks = self.kv_peak_blocks.max(s.kv_blocks);
            self.queue_peak = self.queue_peak.max(s.waiting);
        }
        self.held_until = self.held_until.max(now);
        let kv = s.kv_blocks as f64 / s.kv_capacity as f64;
        self.timeline.sample(now, kv, s.waiting as f64);
    }
}

/// (time s, value) samples.
pub(crate) type Series = Vec<(f64, f64)>;

/// KV use and queue length sampled at most every `interval`; when the samples reach twice
/// [`TIMELINE_POINTS`], every other one is dropped and the interval doubles, so memory stays
/// bounded however long the run.
#[derive(Debug, Clone)]
pub(crate) struct Timeline {
    interval: Nanos,
    next: Nanos,
    /// (time s, KV share, queue length)
    points: Vec<(f64, f64, f64)>,
}

impl Timeline {
    fn new(interval: Nanos) -> Timeline {
        Timeline {
            interval,
            next: Nanos::ZERO,
            points: Vec::new(),
        }
    }

    fn sample(&mut self, now: Nanos, kv: f64, queue: f64) {
        if now < self.next {
            return;
        }
        self.points.push((now.secs(), kv, queue));
        self.next = now + self.interval;
        if self.points.len() >= 2 * TIMELINE_POINTS {
            let kept: Vec<_> = self.points.iter().step_by(2).copied().collect();
            self.points = kept;
            self.interval = self.interval + self.interval;
        }
    }

    /// (KV share, queue length) series of at most [`TIMELINE_POINTS`] samples each.
    pub fn finish(mut self) -> (Series, Series) {
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

/// What the load sent and the server generated, measured or not.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Traffic {
    pub sent: u64,
    pub measured_sent: u64,
    /// Measured requests sent and not yet finished or rejected.
    pub outstanding: u64,
    pub last_measured_send: Nanos,
    /// Tokens emitted.
    pub emitted: u64,
}

/// Everything a run records.
#[derive(Debug, Clone)]
pub(crate) struct Recorder {
    pub outcomes: Outcomes,
    pub occupancy: Occupancy,
    pub traffic: Traffic,
    /// With [`super::GiveUp`]: (TTFT bucket, how many measured requests above it end the run).
    give_up: Option<(i64, u64)>,
    /// Measured requests whose TTFT fell above that bucket.
    slow_ttfts: u64,
}

impl Recorder {
    /// Requests sent before `warmup` load the server but are not measured.
    pub fn new(warmup: Nanos) -> Recorder {
        Recorder {
            outcomes: Outcomes::default(),
            occupancy: Occupancy::new(warmup),
            traffic: Traffic::default(),
            give_up: None,
            slow_ttfts: 0,
        }
    }

    /// End the run once `g.count` measured requests had a TTFT two sketch buckets or more above
    /// `g.ttft_ms`'s bucket (so above `g.ttft_ms` by at least the sketch's resolution).
    pub fn give_up(&mut self, g: super::GiveUp) {
        let bucket = self
            .outcomes
            .ttft
            .bucket_of(g.ttft_ms)
            .unwrap_or(i64::MIN / 2);
        self.give_up = Some((bucket + 1, g.count));
    }

    /// Whether enough slow first tokens were seen to end the run.
    #[inline]
    pub fn gave_up(&self) -> bool {
        self.give_up.is_some_and(|(_, n)| self.slow_ttfts >= n)
    }

    #[inline]
    pub fn measuring(&self, now: Nanos) -> bool {
        now >= self.occupancy.warmup
    }

    #[inline]
    pub fn sent(&mut self, t: Nanos, measured: bool) {
        self.traffic.sent += 1;
        if measured {
            self.traffic.measured_sent += 1;
            self.traffic.outstanding += 1;
            self.traffic.last_measured_send = t;
            self.outcomes.note_send(t);
        }
    }

    /// A request was refused on arrival.
    #[inline]
    pub fn rejected(&mut self, measured: bool) {
        if measured {
            self.outcomes.rejected += 1;
            self.traffic.outstanding -= 1;
        }
    }

    /// A request emitted its last token at `last`.
    #[inline]
    pub fn completed(&mut self, r: &Req, last: Nanos) {
        if r.measured {
            let first = r.first_token.unwrap_or(last);
            self.outcomes
                .complete(r.arrival, first, last, r.prompt, r.output);
            if let Some((bucket, _)) = self.give_up {
                // the value the TTFT sketch was just given, in its bucket
                let ttft_ms = (first - r.arrival).secs() * 1e3;
                let b = self.outcomes.ttft.bucket_of(ttft_ms);
                self.slow_ttfts += u64::from(b.is_some_and(|b| b > bucket));
            }
            self.traffic.outstanding -= 1;
        }
    }

    /// `n` measured token gaps of `gap` each.
    #[inline]
    pub fn itl(&mut self, gap: Nanos, n: u64) {
        self.outcomes.itl.add_n(gap.millis(), n);
    }

    #[inline]
    pub fn preempted(&mut self, now: Nanos) {
        if self.measuring(now) {
            self.outcomes.preemptions += 1;
        }
    }

    /// A request's prompt of `tokens` tokens was looked up in the prefix cache at its first
    /// admission and `hits` of them were found.
    #[inline]
    pub fn prefix_lookup(&mut self, measured: bool, tokens: u32, hits: u32) {
        if measured {
            self.outcomes.prefix_queried += u64::from(tokens);
            self.outcomes.prefix_hits += u64::from(hits);
        }
    }

    #[inline]
    pub fn emitted(&mut self, tokens: u64) {
        self.traffic.emitted += tokens;
    }
}
