//! `sluice-operator`: for now it emits the CRD manifests; the controllers grow here.

use std::{io::Write, path::PathBuf};

use anyhow::Context;
use clap::{Parser, Subcommand};

/// Command line of the operator binary.
#[derive(Debug, Parser)]
#[command(name = "sluice-operator", version, about = "The Sluice operator")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the CRD manifests (or write them into a directory with --out).
    Crds {
        /// Directory to write `modelroute.yaml` and `budget.yaml` into.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Crds { out } => emit_crds(out),
    }
}

fn emit_crds(out: Option<PathBuf>) -> anyhow::Result<()> {
    let manifests = sluice_crds::crd_manifests().context("serializing the CRDs")?;
    match out {
        Some(dir) => {
            for (file, yaml) in manifests {
                let path = dir.join(file);
                std::fs::write(&path, yaml).with_context(|| format!("writing {}", path.display()))?;
            }
        }
        None => {
            let mut stdout = std::io::stdout().lock();
            for (i, (_, yaml)) in manifests.iter().enumerate() {
                if i > 0 {
                    writeln!(stdout, "---")?;
                }
                stdout.write_all(yaml.as_bytes())?;
            }
        }
    }
    Ok(())
}
