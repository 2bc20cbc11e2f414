//! Reports are written whole: Markdown, self-contained HTML, SVG charts (and PNG on request).

use std::path::PathBuf;

use cardplan::report::chart::{Bar, ChartSpec, RefLine, Series};
use cardplan::report::doc::{Document, write_report};

fn tmpdir(name: &str) -> PathBuf {
    crate::common::scratch(name)
}

fn sample() -> Document {
    let mut d = Document::new("Plan for 5,000 users");
    d.heading("Verdict");
    d.table(
        vec!["".into(), "".into()],
        vec![vec!["cards needed".into(), "5 (6 with one spare)".into()]],
    );
    d.chart(
        "rate_vs_users",
        ChartSpec::Lines {
            title: "Per-request streaming rate vs users per card".into(),
            x_label: "users per card".into(),
            y_label: "output tokens/s per request".into(),
            series: vec![Series {
                name: "p05".into(),
                points: (1..10)
                    .map(|i| (i as f64 * 100.0, 50.0 - i as f64 * 5.0))
                    .collect(),
                markers: true,
            }],
            hlines: vec![RefLine {
                at: 10.0,
                label: "SLO p05 >= 10 tok/s".into(),
            }],
            vlines: vec![RefLine {
                at: 750.0,
                label: "capacity 750 users".into(),
            }],
            y_range: None,
        },
    );
    d.chart(
        "users_per_card",
        ChartSpec::Bars {
            title: "Users per card within the SLO".into(),
            x_label: "users per card".into(),
            bars: vec![
                Bar {
                    label: "rtx3090 fp16".into(),
                    value: 750.0,
                    highlight: false,
                },
                Bar {
                    label: "rtx4090 fp16".into(),
                    value: 900.0,
                    highlight: true,
                },
            ],
        },
    );
    d
}

#[test]
fn writes_markdown_html_and_svg_without_external_references() {
    let dir = tmpdir("report-svg");
    let w = write_report(&dir, &sample(), false).unwrap();
    let md = std::fs::read_to_string(&w.markdown).unwrap();
    let html = std::fs::read_to_string(&w.html).unwrap();
    assert_eq!(w.charts.len(), 2);
    for c in &w.charts {
        let svg = std::fs::read_to_string(c).unwrap();
        assert!(svg.contains("<svg"), "{}", c.display());
        let name = c.file_name().unwrap().to_string_lossy().into_owned();
        assert!(md.contains(&format!("]({name})")), "markdown links {name}");
    }
    // Self-contained: inline charts, no URLs of any kind, no external files.
    assert_eq!(html.matches("<svg").count(), 2);
    assert!(!html.contains("http://") && !html.contains("https://"));
    assert!(!html.contains("src=") && !html.contains("<link"));
    for text in [
        "Plan for 5,000 users",
        "Per-request streaming rate vs users per card",
        "users per card",
        "output tokens/s per request",
        "SLO p05 &gt;= 10 tok/s",
        "Users per card within the SLO",
        "rtx4090 fp16",
    ] {
        assert!(html.contains(text), "HTML lacks {text}");
    }
    // No temporary files left behind.
    let stray: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(stray.is_empty(), "{stray:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn png_on_request() {
    let dir = tmpdir("report-png");
    let w = write_report(&dir, &sample(), true).unwrap();
    let pngs: Vec<_> = w
        .charts
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "png"))
        .collect();
    assert_eq!(pngs.len(), 2);
    for p in pngs {
        let b = std::fs::read(p).unwrap();
        assert_eq!(&b[..8], b"\x89PNG\r\n\x1a\n", "{}", p.display());
        assert!(
            b.len() > 5_000,
            "a chart with text is more than a blank image"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_unwritable_folder_is_an_error_not_a_panic() {
    let dir = tmpdir("report-blocked");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("not-a-dir");
    std::fs::write(&file, b"x").unwrap();
    let e = write_report(&file, &sample(), false).unwrap_err();
    assert_eq!(e.exit_code(), 3, "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}
