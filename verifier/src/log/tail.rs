//! Following a log as it grows: the receipts after a [`Cursor`], read from the segment files
//! line by line and chained as they are read.
//!
//! Readers that keep a copy of what a log holds (the fleet's receipt index) resume from where
//! they stopped instead of reading the log again. The chain (`seq` and `prev`) is checked on
//! every line, so a log replaced or rewritten under a reader is noticed
//! ([`TailError::Diverged`]) rather than copied. Signatures are not checked: a follower
//! answers where to look, and `clawverify verify` is what proves.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use super::segment::list_segments;
use crate::receipt::{CheckedReceipt, GENESIS, link, parse_leaf_unverified};

/// Where a follower stands in a log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cursor {
    /// The seq of the next receipt to read (how many were read before it).
    pub next: u64,
    /// The link (`sha256:<hex>`) of the receipt before it; [`GENESIS`] at the start.
    pub last: String,
    /// The first seq of the segment that holds (or will hold) the next receipt.
    pub segment: u64,
    /// Where the next receipt's line starts in that segment.
    pub offset: u64,
}

impl Default for Cursor {
    /// The start of a log.
    fn default() -> Self {
        Self {
            next: 0,
            last: GENESIS.to_owned(),
            segment: 0,
            offset: 0,
        }
    }
}

/// Why a log could not be followed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TailError {
    /// A segment could not be listed or read.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What failed.
        source: io::Error,
    },
    /// The log does not continue the receipts the follower read: it was replaced, rewritten
    /// or cut. Start again from [`Cursor::default`].
    #[error("{dir}: the log does not continue at seq {seq} as it was read before")]
    Diverged {
        /// The log directory.
        dir: PathBuf,
        /// Where it stopped chaining.
        seq: u64,
    },
}

/// Reads the complete receipts after `cursor` with a seq below `until`, at most `max` of them,
/// and moves the cursor past them. A line still being written is left for the next call.
pub fn read(
    dir: &Path,
    cursor: &mut Cursor,
    until: u64,
    max: usize,
) -> Result<Vec<CheckedReceipt>, TailError> {
    let io_err = |path: &Path| {
        let path = path.to_owned();
        move |source| TailError::Io { path, source }
    };
    let diverged = |seq| TailError::Diverged {
        dir: dir.to_owned(),
        seq,
    };
    let mut out = Vec::new();
    if cursor.next >= until || max == 0 {
        return Ok(out);
    }
    let segments = list_segments(dir).map_err(io_err(dir))?;
    let Some(mut at) = segments.iter().position(|(f, _)| *f == cursor.segment) else {
        return match segments.first() {
            None if cursor.next == 0 => Ok(out),
            _ => Err(diverged(cursor.next)),
        };
    };
    let mut reader = open_at(&segments[at].1, cursor.offset).map_err(io_err(&segments[at].1))?;
    let mut line = Vec::new();
    while out.len() < max && cursor.next < until {
        line.clear();
        let n = reader
            .read_until(b'\n', &mut line)
            .map_err(io_err(&segments[at].1))?;
        if n == 0 || line.last() != Some(&b'\n') {
            // The end of this segment as it stands. The log goes on in the next segment only
            // when that one starts exactly here.
            match segments.get(at + 1) {
                Some((first, path)) if *first == cursor.next && n == 0 => {
                    at += 1;
                    cursor.segment = *first;
                    cursor.offset = 0;
                    reader = open_at(path, 0).map_err(io_err(path))?;
                    continue;
                }
                Some(_) => return Err(diverged(cursor.next)),
                None => break,
            }
        }
        line.pop();
        let checked = parse_leaf_unverified(&line).map_err(|_| diverged(cursor.next))?;
        if checked.seq != cursor.next || checked.prev != cursor.last {
            return Err(diverged(cursor.next));
        }
        cursor.next += 1;
        cursor.last = link(&checked.leaf_hash());
        cursor.offset += n as u64;
        out.push(checked);
    }
    Ok(out)
}

/// A cursor just after the receipt at `seq`, which must have the id `id`: where a follower that
/// copied the log up to that receipt resumes. Reads the segment holding it from its start.
pub fn after(dir: &Path, seq: u64, id: &str) -> Result<Cursor, TailError> {
    let diverged = || TailError::Diverged {
        dir: dir.to_owned(),
        seq,
    };
    let segments = list_segments(dir).map_err(|source| TailError::Io {
        path: dir.to_owned(),
        source,
    })?;
    let (first, path) = segments
        .iter()
        .rev()
        .find(|(first, _)| *first <= seq)
        .ok_or_else(diverged)?;
    // The segment's first line names the link before it; from there the chain is checked.
    let mut first_line = Vec::new();
    open_at(path, 0)
        .and_then(|mut r| r.read_until(b'\n', &mut first_line))
        .map_err(|source| TailError::Io {
            path: path.clone(),
            source,
        })?;
    let head = parse_leaf_unverified(first_line.strip_suffix(b"\n").ok_or_else(diverged)?)
        .map_err(|_| diverged())?;
    let mut cursor = Cursor {
        next: *first,
        last: head.prev.clone(),
        segment: *first,
        offset: 0,
    };
    loop {
        let read = read(dir, &mut cursor, seq + 1, 4096)?;
        match read.last() {
            None => return Err(diverged()),
            Some(last) if cursor.next == seq + 1 => {
                return if last.id == id {
                    Ok(cursor)
                } else {
                    Err(diverged())
                };
            }
            Some(_) => {}
        }
    }
}

fn open_at(path: &Path, offset: u64) -> io::Result<BufReader<File>> {
    let mut file = File::open(path)?;
    file.seek(SeekFrom::Start(offset))?;
    Ok(BufReader::with_capacity(256 * 1024, file))
}
