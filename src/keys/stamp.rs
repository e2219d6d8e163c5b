//! Telling whether a file changed: its modification time and size, as the
//! key-file and TLS-certificate reloaders poll them. A stamp is taken
//! before the read it stands for, so a change during or after that read
//! shows as a different stamp at the next poll.

use std::path::Path;
use std::time::SystemTime;

/// A file's modification time and size; `None` when it cannot be read.
pub(crate) type Stamp = Option<(SystemTime, u64)>;

/// The stamp of `path` now.
pub(crate) fn stamp(path: &Path) -> Stamp {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}
