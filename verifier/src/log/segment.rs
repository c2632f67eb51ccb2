//! Segment files: `seg-<first seq, 20 digits>.jsonl`, one JCS leaf per line.

use std::io;
use std::path::{Path, PathBuf};

/// The file name of the segment whose first receipt has `first_seq`.
pub fn segment_name(first_seq: u64) -> String {
    format!("seg-{first_seq:020}.jsonl")
}

/// The path of a segment in `dir`.
pub fn segment_path(dir: &Path, first_seq: u64) -> PathBuf {
    dir.join(segment_name(first_seq))
}

/// The first seq a segment file name declares (exactly `seg-` + 20 digits + `.jsonl`).
pub fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_prefix("seg-")?.strip_suffix(".jsonl")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The segments in `dir`, by first seq. Any other `seg-*` name is an error (a file someone
/// renamed or a stray copy must not be silently skipped); other files are ignored.
pub(crate) fn list_segments(dir: &Path) -> io::Result<Vec<(u64, PathBuf)>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if !name.starts_with("seg-") {
            continue;
        }
        match parse_segment_name(name) {
            Some(seq) => out.push((seq, entry.path())),
            None => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "{}: not a segment name (seg-<20 digits>.jsonl)",
                        entry.path().display()
                    ),
                ));
            }
        }
    }
    out.sort();
    Ok(out)
}
