//! `--report DIR` from `plan` and `whatif`: every file is there and the HTML is self-contained.

use crate::common::{cardplan, scratch};
use std::path::{Path, PathBuf};

fn tmpdir(name: &str) -> PathBuf {
    scratch(&format!("cli-{name}"))
}

fn run(args: &[&str]) {
    let mut all = args.to_vec();
    all.extend(["--window-s", "40", "--replications", "2"]);
    let out = cardplan(&all);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn self_contained(dir: &Path) -> String {
    let html = std::fs::read_to_string(dir.join("report.html")).unwrap();
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "external reference"
    );
    assert!(!html.contains("<script") && !html.contains("<link") && !html.contains(" src="));
    assert!(html.trim_end().ends_with("</html>"));
    html
}

#[test]
fn plan_report_has_charts_with_titles_and_units() {
    let dir = tmpdir("plan");
    let d = dir.to_str().unwrap();
    run(&[
        "plan", "--users", "5000", "--gpu", "rtx3090", "--report", d, "--png",
    ]);
    let html = self_contained(&dir);
    assert_eq!(html.matches("<svg").count(), 3, "rate, TTFT and KV charts");
    for t in [
        "Per-request streaming rate vs users per card",
        "output tokens/s per request",
        "Time to first token vs users per card",
        "time to first token (s)",
        "KV cache in use at",
        "KV blocks in use (%)",
        "users per card",
        "Assumptions",
        "Sensitivity",
    ] {
        assert!(html.contains(t), "HTML lacks {t:?}");
    }
    let md = std::fs::read_to_string(dir.join("report.md")).unwrap();
    for name in ["rate_vs_users", "ttft_vs_users", "kv_over_time"] {
        assert!(md.contains(&format!("({name}.svg)")));
        assert!(dir.join(format!("{name}.svg")).is_file());
        let png = std::fs::read(dir.join(format!("{name}.png"))).unwrap();
        assert_eq!(&png[..4], b"\x89PNG");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn whatif_report_has_bar_charts() {
    let dir = tmpdir("whatif");
    let d = dir.to_str().unwrap();
    run(&[
        "whatif",
        "--users",
        "5000",
        "--gpu",
        "rtx3090,l4",
        "--quant",
        "fp16,nf4",
        "--report",
        d,
    ]);
    let html = self_contained(&dir);
    assert_eq!(html.matches("<svg").count(), 2);
    for t in [
        "Users per card within the SLO",
        "Users per dollar of monthly GPU cost",
        "users per USD per month",
        "rtx3090 nf4",
    ] {
        assert!(html.contains(t), "HTML lacks {t:?}");
    }
    assert!(dir.join("users_per_card.svg").is_file());
    assert!(dir.join("report.md").is_file());
    let _ = std::fs::remove_dir_all(&dir);
}
