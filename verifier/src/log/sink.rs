//! Where segment bytes go: a trait, so tests can fail a write, fail an fsync or stall the disk.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;

/// An append-only byte sink for one segment.
pub trait Sink: Send + 'static {
    /// Appends all of `bytes` (one call per batch).
    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()>;
    /// Makes everything written so far durable (`fdatasync` for files).
    fn sync(&mut self) -> io::Result<()>;
}

/// Opens sinks and makes directory entries durable.
pub trait Storage: Send + Sync + 'static {
    /// Opens `path` for appending, creating it if needed. Each call must return an independent
    /// handle (its own open file description), so concurrent syncs each see every write-back
    /// error (Linux reports an error once per open file description).
    fn open(&self, path: &Path) -> io::Result<Box<dyn Sink>>;
    /// `fsync` of a directory, after a file was created in it.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
}

/// The real file system.
#[derive(Clone, Copy, Debug, Default)]
pub struct FileStorage;

impl Storage for FileStorage {
    fn open(&self, path: &Path) -> io::Result<Box<dyn Sink>> {
        Ok(Box::new(FileSink(open_append(path)?)))
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }
}

/// A segment file opened for appending.
#[derive(Debug)]
pub struct FileSink(File);

impl Sink for FileSink {
    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.0.write_all(bytes)
    }

    fn sync(&mut self) -> io::Result<()> {
        self.0.sync_data()
    }
}

/// Opens a file for appending (created 0600: receipts are evidence, not for everyone).
pub(crate) fn open_append(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
}
