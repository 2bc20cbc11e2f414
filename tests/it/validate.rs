//! Issue 7: predictions next to published measurements.

use crate::common::{cardplan, stdout};
use cardplan::validate;

#[test]
fn backprop_mean_tok_s_within_15_percent() {
    let rows = validate::run_all().unwrap();
    let backprop: Vec<_> = rows.iter().filter(|r| r.gpu == "rtx3090").collect();
    assert_eq!(backprop.len(), 8, "the Backprop table has 8 rows");
    for r in backprop {
        let err = r
            .error_of("request_tok_s.mean")
            .expect("mean tok/s compared");
        assert!(
            err.abs() <= 0.15,
            "{}: predicted mean tok/s off by {:+.1}%",
            r.name,
            100.0 * err
        );
    }
}

#[test]
fn every_row_compares_its_published_figures() {
    for set in validate::sets().unwrap() {
        for row in &set.rows {
            let r = validate::run_row(&set, row).unwrap();
            assert!(!r.errors.is_empty(), "{}", r.name);
            for e in &r.errors {
                assert!(
                    e.predicted.is_finite() && e.predicted > 0.0,
                    "{}: {}",
                    r.name,
                    e.figure
                );
            }
        }
    }
}

#[test]
fn validate_json_has_rows_with_measured_and_predicted() {
    let out = cardplan(&["validate", "--json"]);
    assert_eq!(out.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let rows = v["rows"].as_array().unwrap();
    let sets = validate::sets().unwrap();
    assert_eq!(rows.len(), sets.iter().map(|s| s.rows.len()).sum::<usize>());
    for r in rows {
        assert!(r["name"].is_string());
        let (m, p) = (&r["measured"], &r["predicted"]);
        let figures = m.as_object().unwrap();
        assert!(!figures.is_empty(), "{r}");
        for (k, want) in figures {
            match want {
                serde_json::Value::Object(stats) => {
                    for s in stats.keys() {
                        assert!(p[k][s].is_number(), "{r}: {k}.{s}");
                    }
                }
                _ => assert!(p[k].is_number(), "{r}: {k}"),
            }
        }
    }
}

/// The README's Accuracy table is generated, never hand-edited: it must equal the command's output.
#[test]
fn readme_accuracy_table_matches_validate_output() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let out = cardplan(&["validate", "--markdown"]);
    assert_eq!(out.status.code(), Some(0));
    let table = stdout(&out);
    assert!(
        readme.contains(table.trim()),
        "README.md's Accuracy section is stale: run scripts/update-readme-accuracy.sh"
    );
}
