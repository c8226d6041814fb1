//! The usage journal: every delta the ledger takes, appended to a file in the state directory
//! before the request's answer completes, so usage a sidecar settled survives its process being
//! killed (DESIGN §6.3: "a delta is on disk from the moment its request settles").
//!
//! One line of JSON per settled request, in files numbered by generation
//! (`usage-journal.<generation>.jsonl`). When the reporter cuts the ledger into a report, the
//! ledger starts the next generation in the same locked step ([`UsageLedger::cut`]); once the
//! report queue holding that cut is saved (with the generation it covers up to, its `journal
//! floor`), the generations below the floor are deleted. At start the generations at or above
//! the saved floor are replayed into the ledger: a delta is either in the saved queue or in a
//! journal file at or above its floor, never in both and never in neither.
//!
//! The durability bought, honestly: an append is one `write(2)` of about 300 bytes into the
//! page cache, made while the ledger's lock is held and before the answer completes (no
//! `fsync` on the request path). It survives the process being killed (SIGKILL, OOM, panic) and
//! the container restarting, which is what an `emptyDir` survives too; a crash of the node's
//! kernel can lose the appends of the last report interval, but such a crash takes the pod and
//! its `emptyDir` with it anyway. What was cut into the report queue is `fsync`ed.
//!
//! A torn last line (the process killed inside a write) is skipped at replay. A journal that
//! cannot be written is logged once and usage stays in memory only, as before the journal.
//!
//! Size: the journal grows by one line per request between two cuts (one report interval, or
//! the whole time the sidecar has no pod identity yet).

use std::{
    fs::{File, OpenOptions},
    io::Write,
    path::{Path, PathBuf},
};

use sluice_crds::UsageDelta;

use crate::accounting::ledger::Journal;

const PREFIX: &str = "usage-journal.";
const SUFFIX: &str = ".jsonl";

/// The journal file of `generation`.
pub fn path(dir: &Path, generation: u64) -> PathBuf {
    dir.join(format!("{PREFIX}{generation}{SUFFIX}"))
}

/// The journal generations present in `dir`, ascending.
pub fn generations(dir: &Path) -> Vec<u64> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut found: Vec<u64> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name();
            let name = name.to_str()?;
            name.strip_prefix(PREFIX)?.strip_suffix(SUFFIX)?.parse().ok()
        })
        .collect();
    found.sort_unstable();
    found
}

/// The deltas journalled in generations `floor` and above, and the first generation above all
/// of them (where appending goes on).
pub fn replay(dir: &Path, floor: u64) -> (Vec<UsageDelta>, u64) {
    let mut deltas = Vec::new();
    let mut next = floor;
    for generation in generations(dir).into_iter().filter(|g| *g >= floor) {
        next = generation + 1;
        let path = path(dir, generation);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) => {
                tracing::warn!(file = %path.display(), error = %e, "cannot read the usage journal; its usage is lost");
                continue;
            }
        };
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            match serde_json::from_str::<UsageDelta>(line) {
                Ok(delta) => deltas.push(delta),
                Err(e) => tracing::warn!(file = %path.display(), error = %e, "skipped a torn usage journal line"),
            }
        }
    }
    (deltas, next)
}

/// Deletes the generations below `floor`: what they held is in the saved report queue.
pub fn remove_below(dir: &Path, floor: u64) {
    for generation in generations(dir).into_iter().filter(|g| *g < floor) {
        let path = path(dir, generation);
        if let Err(e) = std::fs::remove_file(&path)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(file = %path.display(), error = %e, "cannot delete a reported usage journal");
        }
    }
}

/// The journal files of one state directory.
#[derive(Debug)]
pub struct FileJournal {
    dir: PathBuf,
    generation: u64,
    file: Option<File>,
    /// A write failed: logged once, then usage is kept in memory only until a write succeeds.
    failing: bool,
}

impl FileJournal {
    /// Appends to generation `generation` of `dir`.
    pub fn new(dir: &Path, generation: u64) -> Self {
        Self {
            dir: dir.to_owned(),
            generation,
            file: None,
            failing: false,
        }
    }

    fn write(&mut self, line: &[u8]) -> std::io::Result<()> {
        if self.file.is_none() {
            std::fs::create_dir_all(&self.dir)?;
            let mut options = OpenOptions::new();
            options.append(true).create(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                options.mode(0o600);
            }
            self.file = Some(options.open(path(&self.dir, self.generation))?);
        }
        match self.file.as_mut() {
            Some(file) => file.write_all(line),
            None => Ok(()),
        }
    }
}

impl Journal for FileJournal {
    fn append(&mut self, delta: &UsageDelta) {
        let mut line = match serde_json::to_vec(delta) {
            Ok(line) => line,
            Err(e) => {
                tracing::warn!(error = %e, "cannot encode a usage delta for the journal");
                return;
            }
        };
        line.push(b'\n');
        // One write of the whole line: a kill leaves it whole or absent (or torn only by a
        // write the kernel split, which replay skips).
        match self.write(&line) {
            Ok(()) => self.failing = false,
            Err(e) => {
                self.file = None;
                if !self.failing {
                    tracing::warn!(dir = %self.dir.display(), error = %e,
                        "cannot write the usage journal; usage settled now is lost if the sidecar is killed before it is reported");
                }
                self.failing = true;
            }
        }
    }

    fn rotate(&mut self) -> u64 {
        self.file = None;
        self.generation += 1;
        self.generation
    }
}
