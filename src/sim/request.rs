//! Requests inside the server: their state and a slab that reuses the slots of finished ones,
//! so memory follows the requests in flight, not the requests simulated.

use super::prefix::Prefix;
use super::time::Nanos;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    Free,
    Waiting,
    Prefill,
    Decode,
}

/// One request. While it decodes, `generated` and `blocks` are not kept current: its progress
/// follows from the decode-step counter (see [`super::decode`]) and is written back when it
/// leaves the decode set.
#[derive(Debug, Clone)]
pub(crate) struct Req {
    pub state: State,
    /// The load source that sent it, told when it ends.
    pub source: u32,
    pub measured: bool,
    pub arrival: Nanos,
    /// Prompt tokens as sent (history included).
    pub prompt: u32,
    pub output: u32,
    /// Tokens emitted so far.
    pub generated: u32,
    /// Tokens the current (re)prefill must compute: prompt + tokens generated before a preemption.
    pub target: u32,
    pub computed: u32,
    /// KV blocks held.
    pub blocks: u64,
    /// Where its tokens come from (block identities for prefix caching).
    pub prefix: Prefix,
    /// Leading blocks held through the prefix cache (reused or named by this request).
    pub named: u32,
    /// Whether its prompt has been looked up in the prefix cache (counted once for the hit rate).
    pub looked_up: bool,
    /// The last prefix-cache lookup that found too few free blocks to admit it: (hits, free
    /// blocks among them), or None. While free blocks stay short of what it showed, the request
    /// waits without another lookup (O(prompt blocks) each step otherwise).
    pub probe: Option<(u32, u64)>,
    /// Admission order: the largest is the newest, evicted first.
    pub order: u64,
    /// Decode-step counter, token count and emitted tokens when it joined the decode set.
    pub g_join: u64,
    pub n_join: u64,
    pub gen_join: u32,
    /// `g mod block_size` at which this sequence needs a new block.
    pub residue: u32,
    pub first_token: Option<Nanos>,
    pub last_token: Option<Nanos>,
    /// Bumped when the slot is reused, so stale entries in the finish heap are recognised.
    pub version: u32,
}

impl Req {
    /// A request just arrived, waiting for admission.
    #[inline]
    pub fn waiting(arrival: Nanos, source: u32, a: Arrived, measured: bool) -> Req {
        Req {
            state: State::Waiting,
            source,
            measured,
            arrival,
            prompt: a.prompt,
            output: a.output,
            generated: 0,
            target: a.prompt,
            computed: 0,
            blocks: 0,
            prefix: a.prefix,
            named: 0,
            looked_up: false,
            probe: None,
            order: 0,
            g_join: 0,
            n_join: 0,
            gen_join: 0,
            residue: 0,
            first_token: None,
            last_token: None,
            version: 0,
        }
    }
}

/// What a source sends: lengths and where the prompt's tokens come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Arrived {
    pub prompt: u32,
    pub output: u32,
    pub prefix: Prefix,
}

/// A request that ended: what its source must hear.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Finished {
    pub source: u32,
    pub prompt: u32,
    pub output: u32,
}

/// Requests by id; ids of finished requests are reused.
#[derive(Debug, Default)]
pub(crate) struct Requests {
    slots: Vec<Req>,
    free_ids: Vec<u32>,
}

impl Requests {
    /// Store `req` in a free slot (the most recently freed first) and return its id.
    #[inline]
    pub fn insert(&mut self, req: Req) -> u32 {
        match self.free_ids.pop() {
            Some(id) => {
                let slot = &mut self.slots[id as usize];
                let version = slot.version.wrapping_add(1);
                *slot = Req { version, ..req };
                id
            }
            None => {
                self.slots.push(req);
                (self.slots.len() - 1) as u32
            }
        }
    }

    /// Give `id`'s slot back; the request must be [`State::Free`] already.
    #[inline]
    pub fn release(&mut self, id: u32) {
        self.free_ids.push(id);
    }

    #[inline]
    pub fn get(&self, id: u32) -> &Req {
        &self.slots[id as usize]
    }

    #[inline]
    pub fn get_mut(&mut self, id: u32) -> &mut Req {
        &mut self.slots[id as usize]
    }
}
