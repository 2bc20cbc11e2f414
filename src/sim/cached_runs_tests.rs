use super::*;
use crate::sim::prefix::PrefixCache;
use crate::sim::rng::Rng;

const CONV: u64 = 1 << 62;

fn conv(id: u64) -> Prefix {
    Prefix {
        conv: CONV | id,
        conv_blocks: u32::MAX,
        private_from: u32::MAX,
        ..Prefix::default()
    }
}

/// A request of `blocks` full blocks under `p` runs and ends.
fn run_and_end(c: &mut RunCache, p: &Prefix, blocks: u32) {
    c.take(u64::from(blocks));
    assert_eq!(c.register(p, 0, blocks), blocks);
    assert_eq!(c.release(p, blocks, blocks, blocks), u64::from(blocks));
}

#[test]
fn eviction_takes_the_least_recently_freed_unreferenced_blocks_first() {
    let mut c = RunCache::new(6);
    let (a, b) = (conv(1), conv(2));
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
    let mut c = RunCache::new(4);
    let (a, b) = (conv(1), conv(2));
    run_and_end(&mut c, &a, 2);
    run_and_end(&mut c, &b, 2);
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
fn a_long_history_is_a_few_runs_not_one_entry_per_block() {
    let mut c = RunCache::new(10_000);
    let p = conv(7);
    for turn in 1..=6 {
        let (hits, _) = c.lookup(&p, 1000 * turn);
        assert_eq!(hits, 1000 * (turn - 1));
        c.acquire(&p, hits);
        c.take(1000);
        assert_eq!(c.register(&p, hits, hits + 1000), hits + 1000);
        c.release(&p, hits + 1000, hits + 1000, hits + 1000);
    }
    assert_eq!(c.cached(), 6000);
    assert!(c.entries.iter().map(Vec::len).sum::<usize>() <= 2);
    assert!(c.segs.len() - c.spare_segs.len() <= 3);
}

/// One running request of the differential test.
struct Running {
    p: Prefix,
    named: u32,
    blocks: u32,
}

/// Prefixes that share blocks in every way the identities can: system prompts, conversations,
/// questions, reuse of part of a session, and origins entered at different blocks.
fn prefixes() -> Vec<Prefix> {
    let mut v = Vec::new();
    for sys in [0u64, 1 << 63, (1 << 63) | 1] {
        let sb = if sys == 0 { 0 } else { 3 };
        for c in 1..=4u64 {
            let base = Prefix {
                sys,
                sys_blocks: sb,
                conv: CONV | c,
                conv_blocks: u32::MAX,
                own: 0,
                private_from: u32::MAX,
            };
            v.push(base);
            v.push(Prefix {
                conv_blocks: sb + 2 + c as u32,
                own: CONV | (100 + c + sys),
                ..base
            });
            v.push(Prefix {
                conv_blocks: sb + 4,
                own: CONV | (200 + c),
                ..base
            });
        }
    }
    // the same conversation entered at another block, and a prompt shorter than its system part
    v.push(Prefix {
        sys: 1 << 63,
        sys_blocks: 5,
        conv: CONV | 1,
        conv_blocks: 2,
        own: CONV | 300,
        private_from: 9,
    });
    v.push(Prefix::default());
    v
}

/// The two pools driven alike, with what the driver knows of them.
struct Pair {
    runs: RunCache,
    blocks: PrefixCache,
    free: u64,
    running: Vec<Running>,
    /// (blocks reused, reused from the free queue, evicted while cached, shared at some point)
    seen: (u64, u64, u64, u64),
}

fn pick(rng: &mut Rng, n: usize) -> usize {
    rng.range_inclusive(0, n as u64 - 1) as usize
}

impl Pair {
    /// A request under `p` is admitted (if it fits): reuse, new blocks, naming some of them.
    fn admit(&mut self, rng: &mut Rng, p: Prefix, ctx: &str) {
        let max = rng.range_inclusive(0, 30) as u32;
        let probe = self.runs.lookup(&p, max);
        assert_eq!(probe, self.blocks.lookup(&p, max), "{ctx}");
        let need = rng.range_inclusive(0, 6);
        if self.free < need + probe.1 {
            return;
        }
        let got = self.runs.acquire(&p, probe.0);
        assert_eq!(got, self.blocks.acquire(&p, probe.0), "{ctx}");
        self.seen.0 += u64::from(probe.0);
        self.seen.1 += got;
        self.free -= got + need;
        let before = self.runs.cached();
        self.runs.take(need);
        self.blocks.take(need);
        self.seen.2 += (before - self.runs.cached()) as u64;
        let n = probe.0 + need as u32;
        let to = rng.range_inclusive(u64::from(probe.0), u64::from(n)) as u32;
        let named = self.runs.register(&p, probe.0, to);
        assert_eq!(named, self.blocks.register(&p, probe.0, to), "{ctx}");
        self.running.push(Running {
            p,
            named,
            blocks: n,
        });
    }

    /// Running request `i` grows by a few blocks and names some of its blocks.
    fn grow(&mut self, rng: &mut Rng, i: usize, ctx: &str) {
        let k = rng.range_inclusive(0, 3);
        if self.free >= k {
            self.free -= k;
            self.runs.take(k);
            self.blocks.take(k);
            self.running[i].blocks += k as u32;
        }
        let r = &mut self.running[i];
        if r.named < r.blocks {
            let to = rng.range_inclusive(u64::from(r.named), u64::from(r.blocks)) as u32;
            let a = self.runs.register(&r.p, r.named, to);
            assert_eq!(a, self.blocks.register(&r.p, r.named, to), "{ctx}");
            r.named = a;
        }
    }

    /// Running request `i` ends (or is preempted) with some of its blocks full.
    fn release(&mut self, rng: &mut Rng, i: usize, ctx: &str) {
        let r = self.running.swap_remove(i);
        let full = rng.range_inclusive(0, u64::from(r.blocks)) as u32;
        let got = self.runs.release(&r.p, r.named, r.blocks, full);
        assert_eq!(
            got,
            self.blocks.release(&r.p, r.named, r.blocks, full),
            "{ctx}"
        );
        self.free += got;
    }
}

#[test]
fn runs_answer_exactly_as_the_per_block_pool_does() {
    let pool = prefixes();
    let mut seen = (0u64, 0u64, 0u64, 0u64);
    for seed in 0..40u64 {
        let total = [12u32, 40, 150][seed as usize % 3];
        let mut rng = Rng::stream(seed, 7);
        let mut pair = Pair {
            runs: RunCache::new(total.into()),
            blocks: PrefixCache::new(total.into()),
            free: u64::from(total),
            running: Vec::new(),
            seen,
        };
        for step in 0..3000 {
            let ctx = format!("seed {seed} step {step}");
            let busy = !pair.running.is_empty();
            let (op, i) = (
                rng.range_inclusive(0, 9),
                pick(&mut rng, pair.running.len().max(1)),
            );
            match op {
                0..=2 => {
                    let p = pool[pick(&mut rng, pool.len())];
                    pair.admit(&mut rng, p, &ctx);
                }
                3..=5 if busy => pair.grow(&mut rng, i, &ctx),
                6..=8 if busy => pair.release(&mut rng, i, &ctx),
                _ => {
                    let p = pool[pick(&mut rng, pool.len())];
                    let max = rng.range_inclusive(0, 40) as u32;
                    assert_eq!(
                        pair.runs.lookup(&p, max),
                        pair.blocks.lookup(&p, max),
                        "{ctx}"
                    );
                }
            }
            assert_eq!(pair.runs.shared, pair.blocks.shared, "{ctx}");
            pair.seen.3 += pair.runs.shared.min(1);
            assert_eq!(pair.runs.cached(), pair.blocks.cached(), "{ctx}");
        }
        // every prefix still sees the same cache at the end
        for p in &pool {
            assert_eq!(
                pair.runs.lookup(p, 40),
                pair.blocks.lookup(p, 40),
                "seed {seed}"
            );
        }
        seen = pair.seen;
    }
    // the sequences exercised reuse, reuse of free blocks, eviction and sharing, often
    assert!(
        seen.0 > 10_000 && seen.1 > 1000 && seen.2 > 1000 && seen.3 > 1000,
        "{seen:?}"
    );
}
