//! Load generators: closed-loop clients, an open-loop arrival process, a population of users in
//! sessions, or a recorded trace. Each source draws from its own random stream.

use rand_distr::Gamma;
use serde::{Serialize, Serializer};

use super::prefix::{Identities, Prefix};
use super::rng::Rng;
use super::sample::Sample;
use super::time::Nanos;
use super::trace::TraceRequest;
use crate::catalog::scenario::Scenario;
use crate::error::{Error, Result};

/// How requests are generated.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Load {
    /// Closed loop: N clients, each sends its next request as soon as its last one ends.
    Concurrency(u32),
    /// Open loop: arrivals at `rate` requests/s with gamma-distributed gaps of shape
    /// `burstiness` (1 = Poisson), as `vllm bench serve --request-rate --burstiness`.
    Rate { rate: f64, burstiness: f64 },
    /// A population of N users; the scenario's session model says how many are in a session at
    /// the peak, how many turns a session has and how long users think between turns.
    Users(u64),
    /// A recorded trace, replayed at its arrival times.
    Trace(TraceLoad),
}

/// A trace and where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceLoad {
    pub path: String,
    pub requests: Vec<TraceRequest>,
}

impl Serialize for TraceLoad {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("TraceLoad", 2)?;
        st.serialize_field("path", &self.path)?;
        st.serialize_field("requests", &self.requests.len())?;
        st.end()
    }
}

impl Load {
    pub fn validate(&self) -> Result<()> {
        match self {
            Load::Concurrency(n) if *n == 0 || *n > 10_000_000 => Err(Error::BadInput(format!(
                "load: concurrency must be 1..=10000000, got {n}"
            ))),
            Load::Rate { rate, burstiness } => {
                crate::error::check_range("load: rate", *rate, 1e-9, 1e9)?;
                crate::error::check_range("load: burstiness", *burstiness, 1e-3, 1e3)?;
                Ok(())
            }
            Load::Users(n) if *n == 0 || *n > 1_000_000_000 => Err(Error::BadInput(format!(
                "load: users must be 1..=1000000000, got {n}"
            ))),
            Load::Trace(t) if t.requests.is_empty() => Err(Error::BadInput(format!(
                "trace {} holds no requests",
                t.path
            ))),
            _ => Ok(()),
        }
    }

    /// Users in a session at the peak for `--users N`: `max(1, round(N × active_share))`.
    pub fn active_sessions(users: u64, scenario: &Scenario) -> u64 {
        ((users as f64 * scenario.session.active_share).round() as u64).max(1)
    }

    /// A warm-up long enough for the load to reach its steady state: one average session
    /// (turns × think time + the gap between sessions) for `--users`, none otherwise.
    pub fn default_warmup_s(&self, scenario: &Scenario) -> f64 {
        match self {
            Load::Users(_) => {
                let s = &scenario.session;
                let gap = s.gap_s.as_ref().map_or(s.think_time_s.mean(), |g| g.mean());
                (s.turns.mean() * s.think_time_s.mean() + gap).round()
            }
            _ => 0.0,
        }
    }
}

/// What an arrival produces: a request's lengths and, for open-loop sources, when the source's
/// next arrival is due.
pub(crate) struct Arrival {
    pub prompt: u32,
    pub output: u32,
    /// Where the prompt's tokens come from (for prefix caching).
    pub prefix: Prefix,
    pub next: Option<Nanos>,
}

/// Per-source state.
pub(crate) struct Sources<'a> {
    scenario: &'a Scenario,
    max_context: u32,
    ids: Identities,
    kind: Kind<'a>,
}

enum Kind<'a> {
    Closed {
        clients: Vec<Rng>,
    },
    Open {
        gaps: Rng,
        lengths: Rng,
        /// Gaps between arrivals, seconds: gamma with the rate's mean and the burstiness as
        /// shape (shape 1 is exponential: Poisson arrivals).
        gap: Gamma<f64>,
        t: f64,
    },
    Users {
        slots: Vec<Slot>,
    },
    Trace {
        requests: &'a [TraceRequest],
        next: usize,
    },
}

struct Slot {
    rng: Rng,
    turn: u32,
    turns: u32,
    /// Tokens of the conversation so far (prompts and answers), resent with the next turn.
    history: u64,
    /// The session's system prompt and conversation.
    sys: u32,
    conv: Prefix,
}

impl<'a> Sources<'a> {
    pub fn new(
        load: &'a Load,
        scenario: &'a Scenario,
        max_context: u32,
        block_size: u32,
        seed: u64,
    ) -> Result<Self> {
        let mut ids = Identities::new(scenario, block_size);
        let kind = match load {
            Load::Concurrency(n) => Kind::Closed {
                clients: (0..u64::from(*n))
                    .map(|i| Rng::stream(seed, 2 + i))
                    .collect(),
            },
            Load::Rate { rate, burstiness } => Kind::Open {
                gaps: Rng::stream(seed, 0),
                lengths: Rng::stream(seed, 1),
                gap: Gamma::new(*burstiness, 1.0 / rate / burstiness).map_err(|e| {
                    Error::BadInput(format!("--rate {rate} with --burstiness {burstiness}: {e}"))
                })?,
                t: 0.0,
            },
            Load::Users(n) => Kind::Users {
                slots: (0..Load::active_sessions(*n, scenario))
                    .map(|i| {
                        let mut rng = Rng::stream(seed, 2 + i);
                        let turns = scenario.session.turns.sample_count(&mut rng);
                        let sys = ids.pick_system(&mut rng);
                        Slot {
                            rng,
                            turn: 0,
                            turns,
                            history: 0,
                            sys,
                            conv: ids.conversation(sys),
                        }
                    })
                    .collect(),
            },
            Load::Trace(t) => Kind::Trace {
                requests: &t.requests,
                next: 0,
            },
        };
        Ok(Sources {
            scenario,
            max_context,
            ids,
            kind,
        })
    }

    /// The first event of every source: (time ns, source).
    pub fn initial_events(&mut self) -> Vec<(Nanos, u32)> {
        match &mut self.kind {
            Kind::Closed { clients } => {
                let gap = self.scenario.client_gap_s.as_ref();
                clients
                    .iter_mut()
                    .enumerate()
                    .map(|(i, rng)| {
                        (
                            gap.map_or(Nanos::ZERO, |g| Nanos::from_secs(g.sample(rng))),
                            i as u32,
                        )
                    })
                    .collect()
            }
            Kind::Open { .. } => vec![(Nanos::ZERO, 0)],
            Kind::Users { slots } => {
                // Stagger the first turns over one think time so users do not start in lockstep.
                let spread = self.scenario.session.think_time_s.mean();
                slots
                    .iter_mut()
                    .enumerate()
                    .map(|(i, s)| (Nanos::from_secs(spread * s.rng.f64()), i as u32))
                    .collect()
            }
            Kind::Trace { requests, .. } => vec![(Nanos::from_secs(requests[0].arrival_s), 0)],
        }
    }

    /// Source `src` sends a request at `now`.
    pub fn arrive(&mut self, now: Nanos, src: u32) -> Arrival {
        let sc = self.scenario;
        let ids = &mut self.ids;
        match &mut self.kind {
            Kind::Closed { clients } => {
                let rng = &mut clients[src as usize];
                single(sc, ids, rng, None)
            }
            Kind::Open {
                gaps,
                lengths,
                gap,
                t,
            } => {
                let mut a = single(sc, ids, lengths, None);
                *t += gaps.sample(gap);
                a.next = Some(Nanos::from_secs(*t).max(now));
                a
            }
            Kind::Users { slots } => {
                let s = &mut slots[src as usize];
                let new = sc.prompt_tokens.sample_count(&mut s.rng);
                let output = sc.output_tokens.sample_count(&mut s.rng);
                let mut prompt = u64::from(new);
                // The first turn starts with the system prompt; later ones resend it in the history.
                let mut prefix = s.conv;
                if sc.session.context_growth && s.turn > 0 {
                    prompt += s.history;
                    // Front-ends truncate the oldest history to fit the model's context: the
                    // conversation's tokens shift, and nothing after the system prompt is reused.
                    let room = u64::from(self.max_context.saturating_sub(output));
                    if prompt > room {
                        prompt = room.max(u64::from(new));
                        s.conv = ids.conversation(s.sys);
                        prefix = s.conv;
                    }
                } else {
                    prompt += u64::from(ids.system_tokens());
                    let reuse = sc.session.prompt_reuse;
                    if reuse > 0.0 {
                        prefix = ids.reuse(s.conv, (f64::from(new) * reuse) as u32);
                    } else if !sc.session.context_growth {
                        prefix = ids.single(s.sys);
                    }
                }
                Arrival {
                    prompt: prompt.min(u64::from(u32::MAX)) as u32,
                    output,
                    prefix,
                    next: None,
                }
            }
            Kind::Trace { requests, next } => {
                let r = requests[*next];
                *next += 1;
                Arrival {
                    prompt: r.prompt_tokens,
                    output: r.output_tokens,
                    prefix: ids.unique(),
                    next: requests
                        .get(*next)
                        .map(|n| Nanos::from_secs(n.arrival_s).max(now)),
                }
            }
        }
    }

    /// A request of source `src` ended at `now` (completed, or rejected with `rejected`); returns
    /// when this source sends its next request, for closed-loop sources.
    pub fn done(
        &mut self,
        now: Nanos,
        src: u32,
        prompt: u32,
        output: u32,
        rejected: bool,
    ) -> Option<Nanos> {
        let session = &self.scenario.session;
        match &mut self.kind {
            Kind::Closed { clients } => {
                let gap = self.scenario.client_gap_s.as_ref();
                let rng = &mut clients[src as usize];
                Some(now + gap.map_or(Nanos::ZERO, |g| Nanos::from_secs(g.sample(rng))))
            }
            Kind::Open { .. } | Kind::Trace { .. } => None,
            Kind::Users { slots } => {
                let s = &mut slots[src as usize];
                if !rejected {
                    s.history = u64::from(prompt) + u64::from(output);
                }
                s.turn += 1;
                if s.turn < s.turns {
                    let think = session.think_time_s.sample(&mut s.rng);
                    return Some(now + Nanos::from_secs(think));
                }
                // The session is over: the next user takes the slot after a gap.
                s.turn = 0;
                s.history = 0;
                s.turns = session.turns.sample_count(&mut s.rng);
                s.sys = self.ids.pick_system(&mut s.rng);
                s.conv = self.ids.conversation(s.sys);
                let gap = match &session.gap_s {
                    Some(g) => g.sample(&mut s.rng),
                    None => session.think_time_s.sample(&mut s.rng),
                };
                Some(now + Nanos::from_secs(gap))
            }
        }
    }

    /// Whether sources can never send another request (a trace that has been replayed).
    pub fn exhausted(&self) -> bool {
        matches!(&self.kind, Kind::Trace { requests, next } if *next >= requests.len())
    }
}

/// A request of a single-request source (closed or open loop): its lengths, its system prompt
/// and, if the scenario repeats questions, its question.
fn single(sc: &Scenario, ids: &mut Identities, rng: &mut Rng, next: Option<Nanos>) -> Arrival {
    let new = sc.prompt_tokens.sample_count(rng);
    let output = sc.output_tokens.sample_count(rng);
    let sys = ids.pick_system(rng);
    let prompt = new.saturating_add(ids.system_tokens());
    Arrival {
        prompt,
        output,
        prefix: ids.request(sys, prompt, rng),
        next,
    }
}
