//! The event loop: load sources send requests at their events, the server runs one engine
//! step at a time, and nothing happens between an event and the next.

use super::events::{EventKind, EventQueue};
use super::load::Sources;
use super::output::{RunEnd, sim_output};
use super::request::Arrived;
use super::sched::{ChunkedDecodeFirst, PrefillFirst, Scheduler, Static};
use super::server::Server;
use super::time::Nanos;
use super::{GiveUp, SimConfig, SimOutput, Stop};
use crate::catalog::engine::Policy;
use crate::error::{Error, Result};
use crate::step::StepTime;

/// Run the simulation described by `cfg`; with `check`, verify the server's bookkeeping after
/// every scheduling decision; with `give_up`, end early once it says the SLO verdict is lost.
pub(crate) fn simulate(
    cost: &dyn StepTime,
    cfg: &SimConfig,
    check: bool,
    progress: &dyn Fn(f64),
    give_up: Option<GiveUp>,
) -> Result<SimOutput> {
    match cfg.engine.policy {
        Policy::ChunkedDecodeFirst => {
            Run::new(cost, cfg, ChunkedDecodeFirst, check, give_up)?.run(progress)
        }
        Policy::PrefillFirst => Run::new(cost, cfg, PrefillFirst, check, give_up)?.run(progress),
        Policy::Static => Run::new(cost, cfg, Static::default(), check, give_up)?.run(progress),
    }
}

/// Steps between two progress reports (cheap enough not to show in the hot loop).
const PROGRESS_EVERY: u64 = 1 << 14;

/// The last instant anything may happen: events at the horizon are never handled.
const LAST_INSTANT: Nanos = Nanos(Nanos::HORIZON.0 - 1);

/// When sending stops and what is measured.
#[derive(Debug, Clone, Copy)]
enum StopRule {
    /// Measure this many requests sent after the warm-up.
    Requests(u64),
    /// Measure requests sent before `end`; give up at `limit` whatever is still running.
    Window { end: Nanos, limit: Nanos },
}

impl StopRule {
    fn new(stop: Stop, warmup: Nanos) -> StopRule {
        match stop {
            Stop::Requests(k) => StopRule::Requests(k),
            Stop::Duration(d) => {
                let end = warmup + Nanos::from_secs(d);
                let limit = end + Nanos::from_secs(10.0 * d + 3600.0);
                StopRule::Window { end, limit }
            }
        }
    }

    /// Whether a source may send at `t` (after the warm-up), and whether that request is measured.
    fn admits(self, t: Nanos, measured_sent: u64) -> (bool, bool) {
        match self {
            StopRule::Requests(k) => (measured_sent < k, measured_sent < k),
            StopRule::Window { end, limit } => (t < limit, t < end),
        }
    }

    /// Whether no more measured requests will be sent.
    fn sent_all(self, now: Nanos, measured_sent: u64) -> bool {
        match self {
            StopRule::Requests(k) => measured_sent >= k,
            StopRule::Window { end, .. } => now >= end,
        }
    }

    fn past_limit(self, now: Nanos) -> bool {
        matches!(self, StopRule::Window { limit, .. } if now >= limit)
    }
}

/// One run in progress.
struct Run<'a, S> {
    srv: Server<'a>,
    sched: S,
    sources: Sources<'a>,
    events: EventQueue,
    stop: StopRule,
    warmup: Nanos,
    now: Nanos,
    /// When the step in flight ends, if one is.
    busy_until: Option<Nanos>,
    /// When the last step started and ended (async scheduling planned the next one at its start).
    last_step: (Nanos, Nanos),
    check: bool,
}

enum Flow {
    Continue,
    Stop,
}

impl<'a, S: Scheduler> Run<'a, S> {
    fn new(
        cost: &'a dyn StepTime,
        cfg: &'a SimConfig,
        sched: S,
        check: bool,
        give_up: Option<GiveUp>,
    ) -> Result<Self> {
        let mut sources = Sources::new(
            &cfg.load,
            &cfg.scenario,
            cfg.max_context,
            cfg.engine.block_size,
            cfg.seed,
        )?;
        let mut events = EventQueue::default();
        for (t, source) in sources.initial_events() {
            events.push(t, EventKind::Send { source });
        }
        let warmup = Nanos::from_secs(cfg.warmup_s);
        let mut srv = Server::new::<S>(cost, cfg);
        if let Some(g) = give_up {
            srv.rec.give_up(g);
        }
        Ok(Run {
            srv,
            sched,
            sources,
            events,
            stop: StopRule::new(cfg.stop, warmup),
            warmup,
            now: Nanos::ZERO,
            busy_until: None,
            last_step: (Nanos::ZERO, Nanos::ZERO),
            check,
        })
    }

    fn run(mut self, progress: &dyn Fn(f64)) -> Result<SimOutput> {
        let end = self.event_loop(progress)?;
        progress(1.0);
        self.srv.hold(end);
        let end = RunEnd {
            kv_capacity: self.srv.kv.total(),
            steps: self.srv.steps,
            at: end,
            prefix_caching: self.srv.kv.caching(),
        };
        Ok(sim_output(self.srv.rec, self.srv.cfg, &end))
    }

    /// Run until every measured request has ended (or the time limit); returns the end time.
    fn event_loop(&mut self, progress: &dyn Fn(f64)) -> Result<Nanos> {
        loop {
            if self.srv.steps % PROGRESS_EVERY == PROGRESS_EVERY - 1 {
                progress(self.done_share());
            }
            // Events due before the step in flight ends (or, when idle, at the next instant).
            let horizon = match self.busy_until {
                Some(t) => t,
                None => match self.events.next_at() {
                    Some(t) => t.max(self.now),
                    None => return Ok(self.now),
                },
            };
            if self.busy_until.is_none() {
                self.now = horizon;
            }
            while let Some(ev) = self.events.pop_due(horizon.min(LAST_INSTANT)) {
                self.srv.hold(ev.at);
                match ev.kind {
                    EventKind::Send { source } => self.send(ev.at, source)?,
                }
            }
            if let Some(t) = self.busy_until.take() {
                self.end_step(t);
            }
            if self.done() {
                return Ok(self.now);
            }
            // Events at exactly `now` are handled before the next step is planned.
            if self.events.next_at().is_some_and(|t| t <= self.now) {
                continue;
            }
            if let Flow::Stop = self.start_step()? {
                return Ok(self.now);
            }
        }
    }

    /// Source `src` is due to send at `t`.
    fn send(&mut self, t: Nanos, src: u32) -> Result<()> {
        let (may_send, measured) = if t < self.warmup {
            (true, false)
        } else {
            self.stop.admits(t, self.srv.rec.traffic.measured_sent)
        };
        if !may_send {
            return Ok(());
        }
        let a = self.sources.arrive(t, src);
        if let Some(next) = a.next {
            self.events.push(next, EventKind::Send { source: src });
        }
        self.srv.rec.sent(t, measured);
        if self.srv.refuses(a.prompt, a.output, &self.sched) {
            self.srv.reject(measured)?;
            if let Some(next) = self.sources.done(t, src, a.prompt, a.output, true) {
                self.events.push(next, EventKind::Send { source: src });
            }
            return Ok(());
        }
        let arrived = Arrived {
            prompt: a.prompt,
            output: a.output,
            prefix: a.prefix,
        };
        self.srv.add_request(t, src, arrived, measured);
        Ok(())
    }

    /// The step in flight ends at `t`; sources of the requests it completed hear about it.
    fn end_step(&mut self, t: Nanos) {
        self.now = t;
        self.srv.hold(t);
        self.srv.finish_step(t, &mut self.sched);
        // Taken and handed back, so the buffer is reused: no allocation per step.
        let mut ended = std::mem::take(&mut self.srv.ended);
        for e in ended.drain(..) {
            if let Some(next) = self.sources.done(t, e.source, e.prompt, e.output, false) {
                self.events.push(next, EventKind::Send { source: e.source });
            }
        }
        self.srv.ended = ended;
    }

    /// The share of the measured requests sent so far (or of the measured window passed).
    fn done_share(&self) -> f64 {
        let share = match self.stop {
            StopRule::Requests(k) => self.srv.rec.traffic.measured_sent as f64 / k.max(1) as f64,
            StopRule::Window { end, .. } => self.now.0 as f64 / end.0.max(1) as f64,
        };
        share.clamp(0.0, 1.0)
    }

    /// Whether every measured request has ended and no more will be sent, or time is up.
    fn done(&self) -> bool {
        let exhausted = self.sources.exhausted();
        let sent_all = self
            .stop
            .sent_all(self.now, self.srv.rec.traffic.measured_sent)
            || exhausted;
        let drained = self.srv.rec.traffic.outstanding == 0;
        (sent_all && drained && (self.now >= self.warmup || exhausted))
            || self.stop.past_limit(self.now)
            || self.now >= Nanos::HORIZON
            || self.srv.rec.gave_up()
    }

    /// Plan and start the next step at `now`; `Stop` when nothing will ever run again.
    fn start_step(&mut self) -> Result<Flow> {
        // With async scheduling, a step that follows another back to back was planned when
        // that one started.
        let (started, ended) = self.last_step;
        let visible = if self.srv.cfg.engine.async_scheduling && ended == self.now {
            started
        } else {
            self.now
        };
        let scheduled = self.srv.plan_step(&mut self.sched, self.now, visible);
        if self.check {
            self.srv.verify(&self.sched)?;
        }
        if scheduled {
            let end = self.now + self.srv.step_time(&self.sched)?;
            self.busy_until = Some(end);
            self.last_step = (self.now, end);
            return Ok(Flow::Continue);
        }
        if !self.events.is_empty() {
            return Ok(Flow::Continue);
        }
        if !self.srv.waiting.is_empty() || !self.srv.running.is_empty() {
            return Err(Error::Internal(format!(
                "scheduler stalled with {} waiting and {} running requests",
                self.srv.waiting.len(),
                self.srv.running.len()
            )));
        }
        Ok(Flow::Stop)
    }
}
