//! The file source: a JSON Lines list on local disk, checked every
//! `refresh_seconds` and read again when it changed. Reads the file; keeps
//! nothing of its own (the entries go to the store).
//!
//! Decisions:
//! - **Changed = another stamp** (modification time and size, as key files,
//!   `keys::stamp`), taken before the read it stands for, so a change during
//!   the read shows at the next check. The stamp follows symlinks: a Vault
//!   Agent render (a temporary file renamed over the list) and a Kubernetes
//!   ConfigMap update (a new timestamped folder, then the `..data` symlink
//!   swapped) both give the path a new stamp, and the read after it opens
//!   the new file whole.
//! - **Every 5 s by default** (`refresh_seconds`): a stat is a few
//!   microseconds, and 5 s is as fast as a ConfigMap propagates anyway (the
//!   kubelet syncs every ~60 s). An unchanged stamp counts as a sync.
//! - **Bounded read**: at most `max_list_bytes` (16 MiB by default, ~160,000
//!   entries) are read, checked while reading, so a file growing meanwhile
//!   cannot make jwtd read more.
//! - **A file that cannot be read keeps the last list** (a render in
//!   progress, a missing mount): the source fails its syncs and turns stale
//!   after `max_stale_seconds`. A file missing at start is not a start
//!   error either (a sidecar may render it a moment later); `check-config`
//!   does require it.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::keys::stamp::{Stamp, stamp};
use crate::revocation::entry::{ParsedList, parse_list};
use crate::revocation::store::Source;
use crate::revocation::{RevocationError, report_list};
use crate::verifier::clock::Clock;

/// Reads and parses the list at `path`, refusing more than `max_bytes`.
pub async fn read_list(path: &Path, max_bytes: usize) -> Result<ParsedList, RevocationError> {
    let owned = path.to_owned();
    let read = tokio::task::spawn_blocking(move || read_capped(&owned, max_bytes))
        .await
        .map_err(|e| RevocationError::Read {
            path: path.display().to_string(),
            reason: e.to_string(),
        })??;
    Ok(parse_list(&read))
}

fn read_capped(path: &Path, max_bytes: usize) -> Result<Vec<u8>, RevocationError> {
    let failed = |e: std::io::Error| RevocationError::Read {
        path: path.display().to_string(),
        reason: e.to_string(),
    };
    let file = std::fs::File::open(path).map_err(failed)?;
    let mut bytes = Vec::new();
    file.take(max_bytes as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(failed)?;
    if bytes.len() > max_bytes {
        return Err(RevocationError::TooLarge {
            what: path.display().to_string(),
            max: max_bytes,
        });
    }
    Ok(bytes)
}

/// The file source's task: checks the stamp every `every`, reads the list
/// when it changed, and records each sync.
pub(crate) async fn run(
    source: Arc<Source>,
    path: PathBuf,
    every: Duration,
    max_bytes: usize,
    clock: Arc<dyn Clock>,
) {
    let mut last: Stamp = None;
    let mut failures = 0u32;
    loop {
        let now_stamp = stamp(&path);
        let outcome = match now_stamp {
            Some(_) if now_stamp == last => Ok(()),
            _ => read_list(&path, max_bytes).await.map(|list| {
                report_list(&source, &list);
                let applied = source.replace(list.entries, clock.now());
                tracing::info!(
                    source = "file",
                    path = %path.display(),
                    entries = applied.kept,
                    expired = applied.expired,
                    over_cap = applied.over_cap,
                    "revocation list loaded"
                );
                last = now_stamp;
            }),
        };
        match outcome {
            Ok(()) => {
                failures = 0;
                source.synced();
            }
            Err(e) => {
                failures = failures.saturating_add(1);
                source.failed();
                if failures.is_power_of_two() {
                    tracing::warn!(
                        source = "file",
                        failures,
                        "revocation list not read, keeping the last one: {e}"
                    );
                }
            }
        }
        tokio::time::sleep(every).await;
    }
}
