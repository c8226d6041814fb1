//! Local mode keeps each budget's spend in a small file, so a restart does not forget it.
//! Written atomically (temporary file, fsync, rename, fsync of the directory) every flush
//! interval and at shutdown: a crash loses at most one interval of spend.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use sluice_crds::{MicroUsd, ObjectKey};
use tokio_util::sync::CancellationToken;

use super::Budgets;
pub use crate::durable::StateError;
use crate::durable::{self, Access};

/// The file's content.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct StateFile {
    /// Spend of each budget's current period, by `namespace/name`.
    budgets: BTreeMap<String, Entry>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Entry {
    period_start: Timestamp,
    #[serde(rename = "spentUSD")]
    spent: MicroUsd,
}

/// Restores the spend recorded in `path` into `budgets`; a missing file is an empty one.
/// Returns how many budgets got their spend back.
pub fn restore(path: &Path, budgets: &Budgets, now: Timestamp) -> Result<usize, StateError> {
    let file = read_file(path)?;
    let mut restored = 0;
    for account in budgets.all() {
        if let Some(entry) = file.budgets.get(&account.key().to_string())
            && account.restore(entry.period_start, entry.spent, now)
        {
            restored += 1;
        }
    }
    Ok(restored)
}

/// Reads the file without a live config, for `sluice-sidecar status`.
pub fn read(path: &Path) -> Result<BTreeMap<ObjectKey, (Timestamp, MicroUsd)>, StateError> {
    Ok(read_file(path)?
        .budgets
        .into_iter()
        .filter_map(|(key, e)| {
            let (namespace, name) = key.split_once('/')?;
            Some((
                ObjectKey {
                    namespace: namespace.into(),
                    name: name.into(),
                },
                (e.period_start, e.spent),
            ))
        })
        .collect())
}

/// The file's content; a missing file is an empty one.
fn read_file(path: &Path) -> Result<StateFile, StateError> {
    durable::load_json(path).map(Option::unwrap_or_default)
}

/// Writes every budget's current spend to `path`, atomically and durably.
pub fn write(path: &Path, budgets: &Budgets, now: Timestamp) -> Result<(), StateError> {
    let file = StateFile {
        budgets: budgets
            .all()
            .iter()
            .map(|a| {
                let (period_start, spent) = a.spent_in_period(now);
                (a.key().to_string(), Entry { period_start, spent })
            })
            .collect(),
    };
    durable::save_json(path, &file, Access::Default)
}

/// Flushes every `interval` until `shutdown`, then once more.
pub async fn flush_until(path: PathBuf, budgets: Arc<Budgets>, interval: Duration, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = shutdown.cancelled() => break,
        }
        flush(&path, &budgets).await;
    }
    flush(&path, &budgets).await;
}

async fn flush(path: &Path, budgets: &Arc<Budgets>) {
    let (path, budgets) = (path.to_owned(), budgets.clone());
    let result = tokio::task::spawn_blocking(move || write(&path, &budgets, Timestamp::now())).await;
    match result {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::error!(error = %e, "could not save budget spend"),
        Err(e) => tracing::error!(error = %e, "budget flush task failed"),
    }
}
