//! The malformed and absurd inputs of `tests/fuzz/cases.txt`, run against the binary: each must
//! exit 0 with an answer, or 2 (usage) or 3 (bad input) with one clear line; none may panic, run
//! past 10 s, or leave a file behind.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const LIMIT: Duration = Duration::from_secs(10);

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz")
}

/// The cases, with `{files}` and `{out}` filled in.
fn cases(out: &Path) -> Vec<Vec<String>> {
    let text = std::fs::read_to_string(fuzz_dir().join("cases.txt")).expect("cases.txt");
    let files = fuzz_dir().join("files");
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            l.split(' ')
                .map(|a| {
                    a.replace("{files}", &files.to_string_lossy())
                        .replace("{out}", &out.to_string_lossy())
                })
                .collect()
        })
        .collect()
}

/// What went wrong with one case, if anything.
fn check(args: &[String], cwd: &Path) -> Option<String> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_cardplan"))
        .args(args)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary starts");
    // drain both pipes while waiting, or a large answer fills the pipe and the wait never ends
    let read = |pipe: Option<Box<dyn std::io::Read + Send>>| {
        std::thread::spawn(move || {
            let mut text = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut text);
            }
            String::from_utf8_lossy(&text).into_owned()
        })
    };
    let out_pipe = read(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
    );
    let err_pipe = read(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
    );
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if start.elapsed() > LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            return Some("ran past 10 s".into());
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stdout = out_pipe.join().unwrap_or_default();
    let stderr = err_pipe.join().unwrap_or_default();
    if stderr.contains("panicked") || stderr.contains("internal error") {
        return Some(format!("panicked: {stderr}"));
    }
    match status.code() {
        Some(0) if stdout.trim().is_empty() => Some("exit 0 with nothing printed".into()),
        Some(0) => None,
        Some(2 | 3) => {
            let lines: Vec<&str> = stderr.trim().lines().collect();
            let one_line = lines.len() == 1 && lines[0].starts_with("error: ");
            // clap's usage errors come with its usage and a hint: the first line is the error
            let clap =
                lines.first().is_some_and(|l| l.starts_with("error: ")) && status.code() == Some(2);
            if one_line || clap {
                None
            } else {
                Some(format!("not one clear line: {stderr}"))
            }
        }
        other => Some(format!("exit {other:?}: {stderr}")),
    }
}

#[test]
fn every_absurd_input_gets_a_clear_answer() {
    let root = crate::common::temp_dir("fuzz");
    let out = root.join("out");
    std::fs::create_dir_all(&out).unwrap();
    let cwd = root.join("cwd");
    std::fs::create_dir_all(&cwd).unwrap();
    let cases = cases(&out);
    assert!(cases.len() > 50, "the corpus is there");
    // a few at a time: each case is a whole process
    let failures: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = cases
            .chunks(cases.len().div_ceil(4))
            .map(|chunk| {
                let cwd = &cwd;
                s.spawn(move || {
                    chunk
                        .iter()
                        .filter_map(|args| {
                            check(args, cwd).map(|e| format!("{}: {e}", args.join(" ")))
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    let left: Vec<_> = [&cwd, &out]
        .iter()
        .flat_map(|d| std::fs::read_dir(d).unwrap().map(|e| e.unwrap().path()))
        .collect();
    let _ = std::fs::remove_dir_all(&root);
    assert!(
        failures.is_empty(),
        "{} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(left.is_empty(), "files left behind: {left:?}");
}
