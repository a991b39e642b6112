//! Helpers shared by the benches that measure each side in its own process.

use std::process::Command;

pub type Res<T> = Result<T, Box<dyn std::error::Error>>;

/// This process's peak resident memory (VmHWM), MiB.
pub fn peak_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).map(str::to_string))
        })
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Runs `cmd` and parses the last line of its stdout that starts with `{`.
pub fn run_json(cmd: &mut Command) -> Res<serde_json::Value> {
    let out = cmd.output()?;
    if !out.status.success() {
        return Err(format!(
            "{:?} failed ({}): {}",
            cmd.get_program(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .ok_or("no JSON line in the output")?;
    Ok(serde_json::from_str(line)?)
}
