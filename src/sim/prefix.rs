//! Automatic prefix caching as vLLM V1 does it: a full block's identity is a hash chain over
//! the tokens up to its end, a request reuses the cached blocks of its longest cached prefix,
//! and blocks nobody references stay cached in a free queue, evicted least recently freed
//! first when a block is needed.
//!
//! The simulator has no tokens, so a block's identity is built from where its tokens came
//! from ([`Prefix`]): blocks wholly inside a shared system prompt are named by (system prompt,
//! block index), every later block by (conversation, block index): two requests share block
//! `i` exactly when their first `(i + 1) × block_size` tokens are the same.
//!
//! Physical blocks are tracked one by one only here, in fixed arrays sized once per run: the
//! hot path allocates nothing.

#[cfg(test)]
use std::collections::HashMap;
#[cfg(test)]
use std::hash::BuildHasherDefault;
use std::hash::Hasher;

use super::rng::Rng;
use crate::catalog::scenario::Scenario;

/// No block / end of the free queue.
#[cfg(test)]
const NIL: u32 = u32::MAX;

/// Where a request's tokens come from, for block identities.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Prefix {
    /// The shared system prompt (0: none).
    pub sys: u64,
    /// Blocks wholly inside the system prompt.
    pub sys_blocks: u32,
    /// The conversation (or repeated question) the next tokens belong to.
    pub conv: u64,
    /// Blocks wholly inside the system prompt and the conversation (`u32::MAX` for a
    /// conversation, whose answers the next turn resends).
    pub conv_blocks: u32,
    /// This request alone: the answer to a repeated question is its own.
    pub own: u64,
    /// Blocks from this one on can only ever be reused by this request itself (after a
    /// preemption): they are named only then, which spares the hashing of every private block.
    pub private_from: u32,
}

impl Prefix {
    /// The identity of block `i` (never 0), as the per-block reference pool names it.
    #[cfg(test)]
    #[inline]
    pub fn key(&self, i: u32) -> u64 {
        let id = if i < self.sys_blocks {
            self.sys
        } else if i < self.conv_blocks {
            self.conv
        } else {
            self.own
        };
        mix(id ^ u64::from(i).wrapping_mul(0x9E37_79B9_7F4A_7C15)) | 1
    }
}

/// Namespaces of identities, so a system prompt, a conversation, a question and a request
/// never share one.
const SYS: u64 = 1 << 63;
const CONV: u64 = 1 << 62;
const QUESTION: u64 = 1 << 61;

/// Hands out the identities of the requests a load sends, per the scenario's system prompts
/// and repeated questions.
#[derive(Debug)]
pub(crate) struct Identities {
    block_size: u32,
    sys_tokens: u32,
    prompts: u32,
    questions: Option<u32>,
    next: u64,
}

impl Identities {
    pub fn new(scenario: &Scenario, block_size: u32) -> Identities {
        Identities {
            block_size: block_size.max(1),
            sys_tokens: scenario.system_prompt_tokens,
            prompts: scenario.system_prompts.max(1),
            questions: scenario.questions_per_system_prompt,
            next: 0,
        }
    }

    /// Tokens of the system prompt every first prompt starts with.
    #[inline]
    pub fn system_tokens(&self) -> u32 {
        self.sys_tokens
    }

    /// The system prompt of a new session or request: drawn only when there are several, so a
    /// scenario without them draws exactly what it drew before they existed.
    #[inline]
    pub fn pick_system(&self, rng: &mut Rng) -> u32 {
        match self.prompts {
            0 | 1 => 0,
            n => rng.range_inclusive(0, u64::from(n) - 1) as u32,
        }
    }

    fn fresh(&mut self) -> u64 {
        self.next += 1;
        self.next
    }

    fn base(&self, sys: u32) -> Prefix {
        let has_sys = self.sys_tokens > 0;
        Prefix {
            sys: if has_sys { SYS | u64::from(sys) } else { 0 },
            sys_blocks: if has_sys {
                self.sys_tokens / self.block_size
            } else {
                0
            },
            ..Prefix::default()
        }
    }

    /// A new conversation under system prompt `sys`: its later turns extend it.
    pub fn conversation(&mut self, sys: u32) -> Prefix {
        Prefix {
            conv: CONV | self.fresh(),
            conv_blocks: u32::MAX,
            private_from: u32::MAX,
            ..self.base(sys)
        }
    }

    /// A request under system prompt `sys` whose tokens after the system prompt nobody resends.
    pub fn single(&mut self, sys: u32) -> Prefix {
        let p = self.conversation(sys);
        Prefix {
            private_from: p.sys_blocks,
            ..p
        }
    }

    /// A request that shares nothing (a trace line: its prompt's origin is unknown).
    pub fn unique(&mut self) -> Prefix {
        Prefix {
            conv: CONV | self.fresh(),
            conv_blocks: u32::MAX,
            ..Prefix::default()
        }
    }

    /// A request of session `session` (from [`Identities::conversation`]) whose first `shared`
    /// tokens after the system prompt repeat the start of the session's context: requests of
    /// one session share blocks up to the shorter of their two shared parts.
    pub fn reuse(&mut self, session: Prefix, shared: u32) -> Prefix {
        let blocks = (self.sys_tokens.saturating_add(shared)) / self.block_size;
        Prefix {
            conv_blocks: blocks,
            own: CONV | self.fresh(),
            private_from: blocks,
            ..session
        }
    }

    /// A single request of `prompt` tokens under system prompt `sys`: a question drawn from the
    /// scenario's repeated set if it has one, else a new conversation.
    pub fn request(&mut self, sys: u32, prompt: u32, rng: &mut Rng) -> Prefix {
        let Some(q) = self.questions else {
            return self.single(sys);
        };
        let question = rng.range_inclusive(0, u64::from(q.max(1)) - 1);
        Prefix {
            conv: QUESTION | (u64::from(sys) << 32) | question,
            conv_blocks: prompt / self.block_size,
            own: CONV | self.fresh(),
            private_from: prompt / self.block_size,
            ..self.base(sys)
        }
    }
}

/// SplitMix64's finaliser: keys are spread, so the map hashes them as they are.
#[inline]
pub(crate) fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Keys are already mixed: hash them as themselves.
#[derive(Default)]
pub(crate) struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, x: u64) {
        self.0 = x;
    }
}

#[cfg(test)]
#[derive(Debug, Clone, Copy)]
struct Node {
    /// Identity of the cached content (0: none).
    key: u64,
    /// Running requests holding this block through the cache.
    refs: u32,
    prev: u32,
    next: u32,
}

/// The physical blocks: a free queue in eviction order, the cached identities, and the blocks
/// running requests hold without an identity. The simulator uses [`super::cached_runs::RunCache`],
/// which keeps them as runs; this one-by-one pool is the reference its tests compare with.
#[cfg(test)]
#[derive(Debug, Clone)]
pub(crate) struct PrefixCache {
    nodes: Vec<Node>,
    head: u32,
    tail: u32,
    map: HashMap<u64, u32, BuildHasherDefault<KeyHasher>>,
    /// Blocks held by running requests that carry no identity (any order: interchangeable).
    anon: Vec<u32>,
    /// Σ (refs − 1) over blocks held by more than one request: requests count their blocks
    /// one by one, the pool counts a shared block once.
    pub shared: u64,
}

#[cfg(test)]
impl PrefixCache {
    pub fn new(total: u64) -> PrefixCache {
        let n = u32::try_from(total).unwrap_or(NIL - 1).min(NIL - 1);
        let nodes = (0..n)
            .map(|i| Node {
                key: 0,
                refs: 0,
                prev: if i == 0 { NIL } else { i - 1 },
                next: if i + 1 == n { NIL } else { i + 1 },
            })
            .collect();
        let mut map = HashMap::default();
        map.reserve(n as usize);
        PrefixCache {
            nodes,
            head: if n == 0 { NIL } else { 0 },
            tail: if n == 0 { NIL } else { n - 1 },
            map,
            anon: Vec::with_capacity(n as usize),
            shared: 0,
        }
    }

    fn unlink(&mut self, b: u32) {
        let Node { prev, next, .. } = self.nodes[b as usize];
        match prev {
            NIL => self.head = next,
            p => self.nodes[p as usize].next = next,
        }
        match next {
            NIL => self.tail = prev,
            n => self.nodes[n as usize].prev = prev,
        }
        let node = &mut self.nodes[b as usize];
        node.prev = NIL;
        node.next = NIL;
    }

    fn push_tail(&mut self, b: u32) {
        let node = &mut self.nodes[b as usize];
        node.prev = self.tail;
        node.next = NIL;
        match self.tail {
            NIL => self.head = b,
            t => self.nodes[t as usize].next = b,
        }
        self.tail = b;
    }

    /// Take `n` blocks from the front of the free queue (evicting what they cached) for a
    /// request to fill; the caller has checked that `n` are free.
    pub fn take(&mut self, n: u64) {
        for _ in 0..n {
            let b = self.head;
            if b == NIL {
                debug_assert!(false, "free queue empty");
                return;
            }
            self.unlink(b);
            let key = std::mem::take(&mut self.nodes[b as usize].key);
            if key != 0 {
                self.map.remove(&key);
            }
            self.anon.push(b);
        }
    }

    /// (cached leading blocks of `p`, up to `max`; how many of them sit in the free queue).
    pub fn lookup(&self, p: &Prefix, max: u32) -> (u32, u64) {
        let (mut hits, mut evictable) = (0, 0);
        while hits < max {
            let Some(&b) = self.map.get(&p.key(hits)) else {
                break;
            };
            evictable += u64::from(self.nodes[b as usize].refs == 0);
            hits += 1;
        }
        (hits, evictable)
    }

    /// Reference the first `hits` blocks of `p` (found by [`Self::lookup`]); returns how many
    /// left the free queue.
    pub fn acquire(&mut self, p: &Prefix, hits: u32) -> u64 {
        let mut from_free = 0;
        for i in 0..hits {
            let Some(&b) = self.map.get(&p.key(i)) else {
                debug_assert!(false, "acquired block {i} is not cached");
                break;
            };
            if self.nodes[b as usize].refs == 0 {
                self.unlink(b);
                from_free += 1;
            } else {
                self.shared += 1;
            }
            self.nodes[b as usize].refs += 1;
        }
        from_free
    }

    /// Name blocks `from..to` of `p`, which a request holds without identity, as it schedules
    /// their tokens (vLLM hashes a block once it is full); stops at the first block already
    /// cached elsewhere. Returns the end of the named run.
    pub fn register(&mut self, p: &Prefix, from: u32, to: u32) -> u32 {
        let mut i = from;
        while i < to {
            let key = p.key(i);
            if self.map.contains_key(&key) {
                break;
            }
            let Some(b) = self.anon.pop() else {
                debug_assert!(false, "no anonymous block to name");
                break;
            };
            let node = &mut self.nodes[b as usize];
            node.key = key;
            node.refs = 1;
            self.map.insert(key, b);
            i += 1;
        }
        i
    }

    /// A request that held `blocks` blocks, the first `named` through the cache, with `full`
    /// blocks full of computed tokens, lets go of them. Like vLLM, the last block goes to the
    /// free queue first (evicted first) and the first block last; full blocks keep their
    /// identity. Returns the blocks that joined the free queue.
    pub fn release(&mut self, p: &Prefix, named: u32, blocks: u32, full: u32) -> u64 {
        let mut freed = 0;
        for i in (named..blocks).rev() {
            let Some(b) = self.anon.pop() else {
                debug_assert!(false, "request released more blocks than it held");
                break;
            };
            if i < full {
                let key = p.key(i);
                if let std::collections::hash_map::Entry::Vacant(v) = self.map.entry(key) {
                    v.insert(b);
                    self.nodes[b as usize].key = key;
                }
            }
            self.push_tail(b);
            freed += 1;
        }
        for i in (0..named).rev() {
            let Some(&b) = self.map.get(&p.key(i)) else {
                debug_assert!(false, "named block {i} is not cached");
                continue;
            };
            let node = &mut self.nodes[b as usize];
            node.refs -= 1;
            if node.refs == 0 {
                self.push_tail(b);
                freed += 1;
            } else {
                self.shared -= 1;
            }
        }
        freed
    }

    /// Blocks that hold a cached identity (referenced or not).
    pub fn cached(&self) -> usize {
        self.map.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conv(id: u64) -> Prefix {
        Prefix {
            conv: CONV | id,
            conv_blocks: u32::MAX,
            private_from: u32::MAX,
            ..Prefix::default()
        }
    }

    /// A request of `blocks` full blocks under `p` runs and ends.
    fn run_and_end(c: &mut PrefixCache, p: &Prefix, blocks: u32) {
        c.take(u64::from(blocks));
        assert_eq!(c.register(p, 0, blocks), blocks);
        assert_eq!(c.release(p, blocks, blocks, blocks), u64::from(blocks));
    }

    #[test]
    fn eviction_takes_the_least_recently_freed_unreferenced_blocks_first() {
        let mut c = PrefixCache::new(6);
        let (a, b) = (conv(1), conv(2));
        // 2 empty blocks are freed first of all (at start), then a's 2, then b's 2.
        run_and_end(&mut c, &a, 2);
        run_and_end(&mut c, &b, 2);
        assert_eq!((c.lookup(&a, 2), c.lookup(&b, 2)), ((2, 2), (2, 2)));
        // The 2 never-used blocks go first: nothing cached is lost.
        c.take(2);
        assert_eq!(
            (c.lookup(&a, 2).0, c.lookup(&b, 2).0, c.cached()),
            (2, 2, 4)
        );
        // Then a's blocks, its last block first (vLLM frees a request's tail first).
        c.take(1);
        assert_eq!((c.lookup(&a, 2).0, c.lookup(&b, 2).0), (1, 2));
        c.take(1);
        assert_eq!((c.lookup(&a, 2).0, c.lookup(&b, 2).0), (0, 2));
    }

    #[test]
    fn referenced_blocks_are_never_evicted_and_reuse_refreshes_them() {
        let mut c = PrefixCache::new(4);
        let (a, b) = (conv(1), conv(2));
        run_and_end(&mut c, &a, 2);
        run_and_end(&mut c, &b, 2);
        // A new request reuses a's blocks: they leave the free queue.
        assert_eq!(c.lookup(&a, 2), (2, 2));
        assert_eq!(c.acquire(&a, 2), 2);
        c.take(2);
        assert_eq!((c.lookup(&a, 2).0, c.lookup(&b, 2).0), (2, 0));
        // A second request shares them: counted once in the pool.
        assert_eq!(c.lookup(&a, 2), (2, 0));
        assert_eq!(c.acquire(&a, 2), 0);
        assert_eq!(c.shared, 2);
        assert_eq!(c.release(&a, 2, 2, 2), 0);
        assert_eq!(c.release(&a, 2, 2, 2), 2);
        assert_eq!(c.shared, 0);
    }

    #[test]
    fn a_question_shares_its_prompt_blocks_but_not_its_answer() {
        let sc = crate::catalog::scenario::Scenario::load("sharegpt").unwrap();
        let sc = Scenario {
            system_prompt_tokens: 40,
            questions_per_system_prompt: Some(1),
            ..sc
        };
        let mut ids = Identities::new(&sc, 16);
        let mut rng = Rng::stream(1, 1);
        let (p, q) = (ids.request(0, 100, &mut rng), ids.request(0, 100, &mut rng));
        assert_eq!(p.sys_blocks, 2);
        for i in 0..6 {
            assert_eq!(p.key(i), q.key(i), "prompt block {i}");
        }
        assert_ne!(p.key(6), q.key(6), "answers differ");
        let other = ids.conversation(0);
        assert_eq!(other.key(1), p.key(1), "system prompt shared");
        assert_ne!(other.key(2), p.key(2));
    }
}
