#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The third-party test material (`../shared/data/real`, or what tools/fetch-real-data.sh got).
pub fn real_data() -> PathBuf {
    if let Some(p) = std::env::var_os("MGSCOPE_REAL_DATA") {
        return PathBuf::from(p);
    }
    let beside = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/real");
    assert!(
        beside.is_dir(),
        "real test data not found: set MGSCOPE_REAL_DATA or run tools/fetch-real-data.sh DIR"
    );
    beside
}

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

pub fn mgscope(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mgscope"))
        .args(args)
        .env("MGSCOPE_AUTHOR", "test")
        .output()
        .expect("spawn mgscope")
}

/// Runs mgscope, asserts success, returns stdout.
pub fn ok(args: &[&str]) -> String {
    let out = mgscope(args);
    assert!(
        out.status.success(),
        "mgscope {args:?} failed:\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs mgscope, asserts failure without a panic, returns stderr.
pub fn fails(args: &[&str]) -> String {
    let out = mgscope(args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "mgscope {args:?} should have failed");
    assert!(
        !stderr.contains("panicked"),
        "mgscope {args:?} panicked: {stderr}"
    );
    stderr
}

pub fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}
