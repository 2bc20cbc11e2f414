//! `whatif --shard K/N` and `cardplan merge`: the shards, merged, print exactly what one run
//! prints; bad shard specs and incomplete or mixed shard sets are clear errors.

use crate::common::{cardplan, scratch, stderr, stdout, temp_dir};

/// A small grid (2 GPUs × 2 schemes × 2 TP sizes, fp16 not fitting TP 1) with short windows.
const GRID: &[&str] = &[
    "whatif",
    "--users",
    "3000",
    "--gpu",
    "rtx3090,l4",
    "--quant",
    "fp16,nf4",
    "--model",
    "qwen2.5-14b",
    "--tp",
    "1,2",
    "--replications",
    "2",
    "--window-requests",
    "300",
];

fn run_ok(args: &[&str]) -> String {
    let out = cardplan(args);
    assert_eq!(out.status.code(), Some(0), "{args:?}: {}", stderr(&out));
    stdout(&out)
}

/// Write shards 1..=n of GRID (plus `extra` flags) to files; paths in reverse order, so that
/// merge is seen not to depend on the order of its arguments.
fn shards(name: &str, n: usize, extra: &[&str]) -> Vec<String> {
    let mut paths = Vec::new();
    for k in 1..=n {
        let spec = format!("{k}/{n}");
        let mut args = GRID.to_vec();
        args.extend_from_slice(extra);
        args.extend_from_slice(&["--shard", &spec, "--json"]);
        let path = scratch(&format!("{name}-{k}.json"));
        std::fs::write(&path, run_ok(&args)).unwrap();
        paths.push(path.to_string_lossy().into_owned());
    }
    paths.reverse();
    paths
}

fn merge(paths: &[String], extra: &[&str]) -> std::process::Output {
    let mut args = vec!["merge"];
    args.extend(paths.iter().map(String::as_str));
    args.extend_from_slice(extra);
    cardplan(&args)
}

fn cleanup(paths: &[String]) {
    for p in paths {
        let _ = std::fs::remove_file(p);
    }
}

#[test]
fn merged_shards_equal_one_run_byte_for_byte() {
    let table = run_ok(GRID);
    let mut json_args = GRID.to_vec();
    json_args.push("--json");
    let json = run_ok(&json_args);
    assert!(json.contains("\"plans\""));
    // 3 shards of 8 positions (3, 3 and 2 each); 9 shards leave the 9th empty.
    for n in [3, 9] {
        let paths = shards(&format!("merge{n}"), n, &[]);
        let m = merge(&paths, &[]);
        assert_eq!(m.status.code(), Some(0), "{}", stderr(&m));
        assert_eq!(stdout(&m), table, "table, {n} shards");
        let m = merge(&paths, &["--json"]);
        assert_eq!(m.status.code(), Some(0), "{}", stderr(&m));
        assert_eq!(stdout(&m), json, "JSON, {n} shards");
        // a shard holds only its own positions: k-1, k-1+n, ...
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&paths[0]).unwrap()).unwrap();
        let idx: Vec<u64> = v["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["index"].as_u64().unwrap())
            .collect();
        let want: Vec<u64> = (0..8u64).filter(|i| i % n as u64 == n as u64 - 1).collect();
        assert_eq!(v["shard"], n as u64);
        assert_eq!(idx, want);
        cleanup(&paths);
    }
}

#[test]
fn merged_report_equals_one_run_report() {
    let (one, merged) = (temp_dir("shard-rep-one"), temp_dir("shard-rep-merged"));
    let mut args = GRID.to_vec();
    args.extend_from_slice(&["--report", one.to_str().unwrap()]);
    run_ok(&args);
    let paths = shards("rep", 2, &[]);
    let m = merge(&paths, &["--report", merged.to_str().unwrap()]);
    assert_eq!(m.status.code(), Some(0), "{}", stderr(&m));
    for f in ["report.md", "report.html", "users_per_card.svg"] {
        let (a, b) = (one.join(f), merged.join(f));
        assert_eq!(
            std::fs::read(&a).unwrap(),
            std::fs::read(&b).unwrap(),
            "{f}"
        );
    }
    cleanup(&paths);
    let _ = std::fs::remove_dir_all(&one);
    let _ = std::fs::remove_dir_all(&merged);
}

#[test]
fn bad_shard_specs_are_usage_errors() {
    for spec in ["0/4", "5/4", "a/b", "1/0", "3", "1/4/2", "2.5/4"] {
        let mut args = GRID.to_vec();
        args.extend_from_slice(&["--shard", spec, "--json"]);
        let out = cardplan(&args);
        assert_eq!(out.status.code(), Some(2), "--shard {spec}");
        assert!(stderr(&out).contains("K/N"), "{spec}: {}", stderr(&out));
    }
    // a shard is JSON for merge: the table or a report of one shard is refused
    let mut args = GRID.to_vec();
    args.extend_from_slice(&["--shard", "1/2"]);
    let out = cardplan(&args);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--json"), "{}", stderr(&out));
}

#[test]
fn merge_refuses_missing_repeated_and_foreign_shards() {
    let paths = shards("bad", 3, &[]);
    // one missing (the files are in reverse order: shards 3 and 2)
    let out = merge(&paths[..2], &[]);
    assert_eq!(out.status.code(), Some(3));
    assert!(
        stderr(&out).contains("missing shard(s) 1 of 3"),
        "{}",
        stderr(&out)
    );
    // one twice
    let twice = vec![paths[0].clone(), paths[1].clone(), paths[1].clone()];
    let out = merge(&twice, &[]);
    assert_eq!(out.status.code(), Some(3));
    assert!(stderr(&out).contains("given twice"), "{}", stderr(&out));
    // a shard of another command (another seed)
    let other = shards("bad-seed", 3, &["--seed", "7"]);
    let mixed = vec![paths[0].clone(), paths[1].clone(), other[0].clone()];
    let out = merge(&mixed, &[]);
    assert_eq!(out.status.code(), Some(3));
    assert!(
        stderr(&out).contains("not a shard of the same command"),
        "{}",
        stderr(&out)
    );
    // plain whatif JSON and a missing file name the file
    let plain = scratch("plain.json");
    std::fs::write(&plain, "{\"users\": 1}").unwrap();
    let p = plain.to_string_lossy().into_owned();
    for f in [p.clone(), format!("{p}.nope")] {
        let out = merge(std::slice::from_ref(&f), &[]);
        assert_eq!(out.status.code(), Some(3));
        assert!(stderr(&out).contains(&f), "{}", stderr(&out));
    }
    let _ = std::fs::remove_file(&plain);
    cleanup(&paths);
    cleanup(&other);
}

#[test]
fn models_and_scenarios_extend_the_grid_and_shard_like_the_rest() {
    let grid = [
        "whatif",
        "--users",
        "3000",
        "--gpu",
        "rtx3090",
        "--quant",
        "nf4",
        "--model",
        "llama-3.1-8b,qwen2.5-7b",
        "--scenario",
        "chat,code-assist",
        "--replications",
        "2",
        "--window-requests",
        "300",
    ];
    let mut json_args = grid.to_vec();
    json_args.push("--json");
    let one: serde_json::Value = serde_json::from_str(&run_ok(&json_args)).unwrap();
    // scenarios outermost, then models
    let order: Vec<(String, String)> = one["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let s = |k: &str| r[k].as_str().unwrap().to_string();
            (s("scenario"), s("model"))
        })
        .collect();
    let want: Vec<(String, String)> = [
        ("chat", "llama-3.1-8b"),
        ("chat", "qwen2.5-7b"),
        ("code-assist", "llama-3.1-8b"),
        ("code-assist", "qwen2.5-7b"),
    ]
    .iter()
    .map(|(s, m)| (s.to_string(), m.to_string()))
    .collect();
    assert_eq!(order, want);
    let table = run_ok(&grid);
    assert!(table.contains("SLO for code-assist"), "{table}");
    let mut paths = Vec::new();
    for k in 1..=3 {
        let spec = format!("{k}/3");
        let mut args = grid.to_vec();
        args.extend_from_slice(&["--shard", &spec, "--json"]);
        let path = scratch(&format!("ms-{k}.json"));
        std::fs::write(&path, run_ok(&args)).unwrap();
        paths.push(path.to_string_lossy().into_owned());
    }
    let m = merge(&paths, &[]);
    assert_eq!(m.status.code(), Some(0), "{}", stderr(&m));
    assert_eq!(stdout(&m), table);
    cleanup(&paths);
}
