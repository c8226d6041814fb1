//! The bench's own servers bind port 0 and report where they listen (`--address-file`), and the
//! driver starts them that way: no port is probed free and handed over.

use std::path::{Path, PathBuf};

use anyhow::{Result, ensure};
use sluice_bench::driver::procs;

/// A fresh directory for one test's address files and logs.
fn scratch(name: &str) -> Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("sluice-bench-{name}-{}", std::process::id()));
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

#[tokio::test]
async fn the_upstream_and_the_floor_bind_port_zero_and_the_driver_reads_where() -> Result<()> {
    let dir = scratch("ports")?;
    let (_upstream, up_addr) = procs::start_server(
        "bench-upstream",
        Path::new(env!("CARGO_BIN_EXE_bench-upstream")),
        &["--threads".into(), "1".into()],
        &dir.join("upstream.addresses.json"),
        "/healthz",
        &dir.join("upstream.log"),
    )
    .await?;
    ensure!(up_addr.port() != 0, "the upstream reported port 0");
    let (_floor, floor_addr) = procs::start_server(
        "bench-floor",
        Path::new(env!("CARGO_BIN_EXE_bench-floor")),
        &[
            "--threads".into(),
            "1".into(),
            "--upstream".into(),
            format!("http://{up_addr}"),
        ],
        &dir.join("floor.addresses.json"),
        "/healthz",
        &dir.join("floor.log"),
    )
    .await?;
    ensure!(floor_addr != up_addr, "the floor reported the upstream's address");
    // The floor forwards to the upstream it was given: its answer is the upstream's.
    ensure!(procs::get_text(floor_addr, "/healthz").await? == "ok");
    let written = std::fs::read_to_string(dir.join("floor.addresses.json"))?;
    ensure!(
        written == format!(r#"{{"listen":"{floor_addr}"}}"#),
        "unexpected address file {written}"
    );
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

#[tokio::test]
async fn a_server_that_exits_before_reporting_its_address_fails_its_start_and_names_its_log() -> Result<()> {
    let dir = scratch("exits")?;
    let log = dir.join("floor.log");
    // An upstream with no host:port: the floor exits before it binds.
    let started = procs::start_server(
        "bench-floor",
        Path::new(env!("CARGO_BIN_EXE_bench-floor")),
        &["--upstream".into(), "/no-host".into()],
        &dir.join("floor.addresses.json"),
        "/healthz",
        &log,
    )
    .await;
    let Err(err) = started else {
        anyhow::bail!("a floor with no upstream host started");
    };
    let message = format!("{err:#}");
    ensure!(message.contains("exited"), "{message}");
    ensure!(message.contains("before it wrote its address file"), "{message}");
    ensure!(message.contains(&log.display().to_string()), "{message}");
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
