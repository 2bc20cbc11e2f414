//! Helpers shared by the integration tests: run the binary, read its output, scratch folders.

use std::path::PathBuf;
use std::process::{Command, Output};

/// Run the binary with `args`; never panics on a non-zero exit.
pub fn cardplan(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cardplan"))
        .args(args)
        .output()
        .expect("the cardplan binary runs")
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A path under the system temp dir for one test, unique to this process; nothing is left there.
pub fn scratch(name: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!("cardplan-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&path);
    let _ = std::fs::remove_file(&path);
    path
}

/// A fresh, empty folder under the system temp dir for one test.
pub fn temp_dir(name: &str) -> PathBuf {
    let dir = scratch(name);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}
