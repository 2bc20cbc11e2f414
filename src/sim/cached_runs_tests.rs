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

#[test]
fn runs_answer_exactly_as_the_per_block_pool_does() {
    let pool = prefixes();
    // (blocks reused, reused from the free queue, evicted while cached, shared at some point)
    let mut seen = (0u64, 0u64, 0u64, 0u64);
    for seed in 0..40u64 {
        let total = [12u32, 40, 150][seed as usize % 3];
        let mut rng = Rng::stream(seed, 7);
        let (mut runs, mut blocks) = (RunCache::new(total.into()), PrefixCache::new(total.into()));
        let mut free = u64::from(total);
        let mut running: Vec<Running> = Vec::new();
        let pick = |rng: &mut Rng, n: usize| rng.range_inclusive(0, n as u64 - 1) as usize;
        for step in 0..3000 {
            let ctx = format!("seed {seed} step {step}");
            match rng.range_inclusive(0, 9) {
                0..=2 => {
                    let p = pool[pick(&mut rng, pool.len())];
                    let max = rng.range_inclusive(0, 30) as u32;
                    let probe = runs.lookup(&p, max);
                    assert_eq!(probe, blocks.lookup(&p, max), "{ctx}");
                    let need = rng.range_inclusive(0, 6);
                    if free < need + probe.1 {
                        continue;
                    }
                    let got = runs.acquire(&p, probe.0);
                    assert_eq!(got, blocks.acquire(&p, probe.0), "{ctx}");
                    seen.0 += u64::from(probe.0);
                    seen.1 += got;
                    free -= got + need;
                    let before = runs.cached();
                    runs.take(need);
                    blocks.take(need);
                    seen.2 += (before - runs.cached()) as u64;
                    let n = probe.0 + need as u32;
                    let to = rng.range_inclusive(u64::from(probe.0), u64::from(n)) as u32;
                    let named = runs.register(&p, probe.0, to);
                    assert_eq!(named, blocks.register(&p, probe.0, to), "{ctx}");
                    running.push(Running {
                        p,
                        named,
                        blocks: n,
                    });
                }
                3..=5 if !running.is_empty() => {
                    let i = pick(&mut rng, running.len());
                    let k = rng.range_inclusive(0, 3);
                    if free >= k {
                        free -= k;
                        runs.take(k);
                        blocks.take(k);
                        running[i].blocks += k as u32;
                    }
                    let r = &mut running[i];
                    if r.named < r.blocks {
                        let to =
                            rng.range_inclusive(u64::from(r.named), u64::from(r.blocks)) as u32;
                        let a = runs.register(&r.p, r.named, to);
                        assert_eq!(a, blocks.register(&r.p, r.named, to), "{ctx}");
                        r.named = a;
                    }
                }
                6..=8 if !running.is_empty() => {
                    let r = running.swap_remove(pick(&mut rng, running.len()));
                    let full = rng.range_inclusive(0, u64::from(r.blocks)) as u32;
                    let got = runs.release(&r.p, r.named, r.blocks, full);
                    assert_eq!(got, blocks.release(&r.p, r.named, r.blocks, full), "{ctx}");
                    free += got;
                }
                _ => {
                    let p = pool[pick(&mut rng, pool.len())];
                    let max = rng.range_inclusive(0, 40) as u32;
                    assert_eq!(runs.lookup(&p, max), blocks.lookup(&p, max), "{ctx}");
                }
            }
            assert_eq!(runs.shared, blocks.shared, "{ctx}");
            seen.3 += runs.shared.min(1);
            assert_eq!(runs.cached(), blocks.cached(), "{ctx}");
        }
        // every prefix still sees the same cache at the end
        for p in &pool {
            assert_eq!(runs.lookup(p, 40), blocks.lookup(p, 40), "seed {seed}");
        }
    }
    // the sequences exercised reuse, reuse of free blocks, eviction and sharing, often
    assert!(
        seen.0 > 10_000 && seen.1 > 1000 && seen.2 > 1000 && seen.3 > 1000,
        "{seen:?}"
    );
}
