//! The outbox's reserve: a preallocated file beside the database that holds back
//! a little space on its file system.
//!
//! Why: on a file system that is truly full, SQLite cannot evict older rows to make
//! room, because the eviction itself is written to the write-ahead log first and
//! the checkpoint that lets the log start over needs the database file to grow.
//! Deleting the reserve gives exactly that space back, so the outbox can evict by
//! priority and store the new messages; the file is made again once the file
//! system has room for it. See the outbox module docs for the whole sequence.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

/// The reserve file of one outbox: `<database>-reserve`, `bytes` long when held.
pub(crate) struct Reserve {
    path: PathBuf,
    bytes: u64,
    held: bool,
}

impl Reserve {
    /// The reserve for the outbox database at `db`; not held until
    /// [`Reserve::acquire`] succeeds.
    pub(crate) fn new(db: &Path, bytes: u64) -> Reserve {
        Reserve {
            path: path_for(db),
            bytes,
            held: false,
        }
    }

    /// The reserve file.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Its size when held.
    pub(crate) fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Whether the space is held back right now.
    pub(crate) fn is_held(&self) -> bool {
        self.held
    }

    /// Holds the space: keeps a file of the right size whose blocks are really
    /// allocated (left by an earlier run), otherwise allocates it afresh. On any
    /// failure (mostly `ENOSPC`) no partial file is left behind, so a failed
    /// attempt takes no space.
    pub(crate) fn acquire(&mut self) -> io::Result<()> {
        if self.held {
            return Ok(());
        }
        if std::fs::metadata(&self.path)
            .is_ok_and(|m| m.len() == self.bytes && m.blocks() * 512 >= self.bytes)
        {
            self.held = true;
            return Ok(());
        }
        let result = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&self.path)
            .and_then(|file| allocate(&file, self.bytes));
        match result {
            Ok(()) => {
                self.held = true;
                Ok(())
            }
            Err(e) => {
                let _ = std::fs::remove_file(&self.path);
                Err(e)
            }
        }
    }

    /// Deletes the file so that its space is free for the database. Returns false
    /// when it was not held (nothing to give).
    pub(crate) fn release(&mut self) -> bool {
        if !self.held {
            return false;
        }
        self.held = false;
        // A file that cannot be deleted gives no space, but the outbox goes on the
        // same way: it holds the database at its size and evicts.
        if let Err(e) = std::fs::remove_file(&self.path) {
            log::warn!(
                "cannot delete the outbox reserve {}: {e}",
                self.path.display()
            );
        }
        true
    }
}

/// `<database>-reserve`, beside SQLite's own `-wal` and `-shm` files.
pub(crate) fn path_for(db: &Path) -> PathBuf {
    let mut p = db.as_os_str().to_owned();
    p.push("-reserve");
    PathBuf::from(p)
}

/// Allocates `bytes` of real blocks to `file` (`posix_fallocate`, which the C
/// library emulates by writing where the file system cannot allocate), so that
/// the space is taken now and not on the first write as with a sparse file.
fn allocate(file: &File, bytes: u64) -> io::Result<()> {
    let len = libc::off_t::try_from(bytes)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "reserve too large"))?;
    // SAFETY: a valid open file descriptor and a non-negative length.
    let rc = unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, len) };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acquire_allocates_keeps_and_release_deletes() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("outbox.sqlite");
        let mut reserve = Reserve::new(&db, 100_000);
        assert!(!reserve.is_held());
        reserve.acquire().unwrap();
        let meta = std::fs::metadata(reserve.path()).unwrap();
        assert_eq!(meta.len(), 100_000);
        assert!(
            meta.blocks() * 512 >= 100_000,
            "sparse: {} blocks",
            meta.blocks()
        );
        // An existing, allocated file of the right size is kept as it is.
        let mut again = Reserve::new(&db, 100_000);
        again.acquire().unwrap();
        assert!(again.is_held());
        assert!(reserve.release());
        assert!(!reserve.path().exists());
        assert!(!reserve.release());
    }

    #[test]
    fn a_failed_acquire_leaves_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut reserve = Reserve::new(&dir.path().join("missing/outbox.sqlite"), 4096);
        assert!(reserve.acquire().is_err());
        assert!(!reserve.is_held());
        assert!(!reserve.path().exists());
    }
}
