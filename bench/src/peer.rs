//! What render-bench and deep-bench share: the default data, the Mapnik peer
//! and how it is run, and this process's memory.

use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};
use serde_json::Value;

/// The interpreter that sees Debian's `python3-mapnik` module.
pub const PYTHON: &str = "/usr/bin/python3";
pub const DEFAULT_SCRIPT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../shared/peers/mapnik_render.py"
);
pub const DATA_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/data");
pub const DEFAULT_DATA: [&str; 2] = ["wa_countries_50m.geojson", "wa_coastline_10m_lines.geojson"];

/// Runs the Mapnik peer `script` on `data` into `dir` (zooms `zmin`-`zmax`,
/// metatiles of `metatile`, `procs` processes) and returns the JSON it prints
/// on its last line, which holds at least `tiles_per_s`.
pub fn run_mapnik_peer(
    script: &Path,
    data: &Path,
    dir: &Path,
    (zmin, zmax): (u8, u8),
    metatile: u32,
    procs: u32,
) -> Result<Value> {
    let out = Command::new(PYTHON)
        .arg(script)
        .arg(data)
        .arg(dir)
        .args(["--zmin", &zmin.to_string()])
        .args(["--zmax", &zmax.to_string()])
        .args(["--metatile", &metatile.to_string()])
        .args(["--procs", &procs.to_string()])
        .arg("--json")
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("cannot run {PYTHON} {}", script.display()))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!(
            "the Mapnik peer failed on {} ({}); its output:\n{stdout}",
            data.display(),
            out.status
        );
    }
    let line = stdout
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .context("the Mapnik peer printed nothing")?;
    let result: Value = serde_json::from_str(line).with_context(|| {
        format!("the last line of the Mapnik peer's output is not JSON: {line:?}")
    })?;
    if result.get("tiles_per_s").and_then(Value::as_f64).is_none() {
        bail!("the Mapnik peer's JSON has no tiles_per_s: {line}");
    }
    Ok(result)
}

/// A `/proc/self/status` field given in kB (`VmHWM`, `VmRSS`), in MB.
pub fn proc_status_mb(field: &str) -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status
        .lines()
        .find(|l| l.split(':').next() == Some(field))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}
