//! Which central node is active (`[7.5-1]`, `[7.5-2]`): central nodes that share a data
//! dir take turns holding an exclusive lock on `active.lock` in it. The holder serves the
//! API and deploys to sites; the others answer `503 NOT_ACTIVE` and keep trying, so when
//! the active node dies (the OS drops its lock) a standby takes over within a second.

use fs4::fs_std::FileExt;
use std::fs::File;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// How often a standby node tries to become active.
const POLL: Duration = Duration::from_millis(500);

/// Takes the lease now if it is free; otherwise keeps trying on a background thread.
/// `active` is set once this node holds it (and stays set: the lock lives as long as the
/// process).
pub(crate) fn acquire(data_dir: &Path, active: Arc<AtomicBool>) -> std::io::Result<()> {
    std::fs::create_dir_all(data_dir)?;
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(data_dir.join("active.lock"))?;
    if file.try_lock_exclusive()? {
        active.store(true, Ordering::SeqCst);
        hold(file);
        return Ok(());
    }
    tracing::info!(dir = %data_dir.display(), "another central node is active; this one is on standby");
    std::thread::Builder::new()
        .name("central-standby".into())
        .spawn(move || {
            loop {
                match file.try_lock_exclusive() {
                    Ok(true) => {
                        active.store(true, Ordering::SeqCst);
                        tracing::warn!("the active central node is gone; this node is now active");
                        hold(file);
                        return;
                    }
                    Ok(false) => std::thread::sleep(POLL),
                    Err(e) => {
                        tracing::error!(error = %e, "cannot try the active lock; retrying");
                        std::thread::sleep(POLL);
                    }
                }
            }
        })?;
    Ok(())
}

/// Keeps the lock for the life of the process.
fn hold(file: File) {
    std::mem::forget(file);
}
