//! `clawverify query`: which receipts match a job, operation, item, vault, decision and time
//! range, over every log of a data dir, answered from an index.
//!
//! The index is a cache of the logs, kept per log in `<data dir>/state/index/<proxy id>/`:
//! `records.bin` (one fixed-size record per receipt: seq, time, kind, decision, status, id and
//! string numbers for job, operation, item, vault, vault name and rule), `strings.jsonl` (the
//! strings, one JSON string per line, numbered from 0) and `meta.json` (how far it covers:
//! size, the last leaf's link, and where in which segment to resume). A query first catches
//! the index up with what the proxy appended since (reading only the new lines), then scans
//! the fixed records, so a query over a million receipts reads about 72 MB and parses nothing.
//!
//! The index proves nothing by itself: it answers where to look. Lines are chained as they
//! are indexed (`seq` and `prev`), so a log that was rewritten under the index is noticed and
//! the index rebuilt; `clawverify bundle` + `verify` are what prove.
//!
//! In fleet mode the proxies also copy their receipts into PostgreSQL ([`fleet`]), so one
//! query answers for every proxy's log, wherever it lives.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::log::list_segments;
use crate::receipt::{self, GENESIS, Kind, link, parse_leaf_unverified, ts_millis};

/// Bytes per index record.
const RECORD: usize = 72;
/// No string.
const NONE: u32 = u32::MAX;

pub use claw_fleet::receipts::Filter;

/// One matching receipt.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Hit {
    /// Its log's origin.
    pub log: String,
    /// Its seq.
    pub seq: u64,
    /// Its id.
    pub id: String,
    /// Its time.
    pub ts: String,
    /// Its kind.
    pub kind: String,
    /// Its job.
    pub job: String,
    /// Its operation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub op: Option<String>,
    /// Its vault id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vault: Option<String>,
    /// Its vault's name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vault_name: Option<String>,
    /// Its item.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub item: Option<String>,
    /// `allow` or `deny`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decision: Option<String>,
    /// The deciding rule.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// The upstream status.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
}

/// The answer.
#[derive(Clone, Debug, Serialize)]
pub struct Answer {
    /// The matches, by log then seq.
    pub matches: Vec<Hit>,
    /// Receipts looked at.
    pub scanned: u64,
}

/// Why a query failed.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct QueryError {
    path: PathBuf,
    message: String,
}

fn err(path: &Path, message: impl ToString) -> QueryError {
    QueryError {
        path: path.to_owned(),
        message: message.to_string(),
    }
}

/// Answers `filter` over every log under `receipts_dir`, keeping indexes in `index_dir`.
pub fn query(receipts_dir: &Path, index_dir: &Path, filter: &Filter) -> Result<Answer, QueryError> {
    let mut answer = Answer {
        matches: Vec::new(),
        scanned: 0,
    };
    let logs = crate::log::log_dirs(receipts_dir).map_err(|e| err(receipts_dir, e))?;
    for log in logs {
        // An instance's index sits inside its proxy's index directory, as its log does.
        let index = Index::open(&index_dir.join(&log.name), &log.dir)?;
        index.scan(filter, &log.origin, &mut answer)?;
    }
    Ok(answer)
}

/// How far an index covers its log.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
struct Meta {
    size: u64,
    last: String,
    strings: u64,
    segment: u64,
    offset: u64,
}

struct Index {
    dir: PathBuf,
    meta: Meta,
    strings: Vec<String>,
}

impl Index {
    /// Opens the index of `log` in `dir`, catching it up (or rebuilding it when the log is
    /// not the one it indexed).
    fn open(dir: &Path, log: &Path) -> Result<Self, QueryError> {
        fs::create_dir_all(dir).map_err(|e| err(dir, e))?;
        let mut index = Self::load(dir).unwrap_or_else(|| Self::empty(dir));
        if index.catch_up(log).is_err() {
            index = Self::empty(dir);
            index.truncate_files()?;
            index.catch_up(log).map_err(|Stale| {
                err(log, "the log does not chain from its first line; verify it")
            })?;
        }
        index.persist()?;
        Ok(index)
    }

    fn empty(dir: &Path) -> Self {
        Self {
            dir: dir.to_owned(),
            meta: Meta {
                last: GENESIS.to_owned(),
                ..Meta::default()
            },
            strings: Vec::new(),
        }
    }

    fn load(dir: &Path) -> Option<Self> {
        let meta: Meta = serde_json::from_slice(&fs::read(dir.join("meta.json")).ok()?).ok()?;
        let text = fs::read_to_string(dir.join("strings.jsonl")).ok()?;
        let strings: Vec<String> = text
            .lines()
            .take(meta.strings as usize)
            .map(serde_json::from_str)
            .collect::<Result<_, _>>()
            .ok()?;
        let records = fs::metadata(dir.join("records.bin")).ok()?.len();
        if strings.len() as u64 != meta.strings || records < meta.size * RECORD as u64 {
            return None;
        }
        Some(Self {
            dir: dir.to_owned(),
            meta,
            strings,
        })
    }

    fn truncate_files(&self) -> Result<(), QueryError> {
        for name in ["records.bin", "strings.jsonl"] {
            let path = self.dir.join(name);
            File::create(&path).map_err(|e| err(&path, e))?;
        }
        Ok(())
    }

    /// Indexes the lines appended since `meta`, or says the log changed under the index.
    fn catch_up(&mut self, log: &Path) -> Result<(), Stale> {
        let records_path = self.dir.join("records.bin");
        let strings_path = self.dir.join("strings.jsonl");
        let records = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&records_path)
            .map_err(|_| Stale)?;
        // A crash may have left bytes beyond what meta covers: cut them.
        records
            .set_len(self.meta.size * RECORD as u64)
            .map_err(|_| Stale)?;
        let mut strings_file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&strings_path)
            .map_err(|_| Stale)?;
        let kept = string_bytes(&mut strings_file, self.meta.strings).map_err(|_| Stale)?;
        strings_file.set_len(kept).map_err(|_| Stale)?;
        strings_file.seek(SeekFrom::End(0)).map_err(|_| Stale)?;
        let mut records = BufWriter::with_capacity(1 << 20, records);
        let mut strings_out = BufWriter::new(strings_file);
        let mut numbers: HashMap<String, u32> = self
            .strings
            .iter()
            .enumerate()
            .map(|(i, s)| (s.clone(), i as u32))
            .collect();
        let segments = list_segments(log).map_err(|_| Stale)?;
        if self.meta.size > 0
            && !segments
                .iter()
                .any(|(first, _)| *first == self.meta.segment)
        {
            return Err(Stale);
        }
        for (first, path) in segments {
            let is_resume = first == self.meta.segment && self.meta.size > 0;
            if self.meta.size > 0 && first < self.meta.segment {
                continue;
            }
            let file = File::open(&path).map_err(|_| Stale)?;
            let mut reader = BufReader::with_capacity(256 * 1024, file);
            let mut offset = 0u64;
            if is_resume {
                reader
                    .seek(SeekFrom::Start(self.meta.offset))
                    .map_err(|_| Stale)?;
                offset = self.meta.offset;
            } else if first != self.meta.size {
                return Err(Stale);
            }
            let mut line = Vec::new();
            loop {
                line.clear();
                let read = reader.read_until(b'\n', &mut line).map_err(|_| Stale)?;
                if read == 0 || line.last() != Some(&b'\n') {
                    // The end, or a line still being written: index it next time.
                    break;
                }
                line.pop();
                let Ok(checked) = parse_leaf_unverified(&line) else {
                    return Err(Stale);
                };
                let r = checked.receipt();
                if r.seq != self.meta.size || r.prev != self.meta.last {
                    return Err(Stale);
                }
                let mut number = |text: Option<&str>| -> Result<u32, Stale> {
                    let Some(text) = text else { return Ok(NONE) };
                    if let Some(n) = numbers.get(text) {
                        return Ok(*n);
                    }
                    let n = self.strings.len() as u32;
                    serde_json::to_writer(&mut strings_out, text).map_err(|_| Stale)?;
                    strings_out.write_all(b"\n").map_err(|_| Stale)?;
                    self.strings.push(text.to_owned());
                    numbers.insert(text.to_owned(), n);
                    Ok(n)
                };
                let op = r.op.as_ref();
                let record = Record {
                    seq: r.seq,
                    ts: ts_millis(&r.ts).unwrap_or(0),
                    job: number(Some(&r.job))?,
                    op: number(op.map(|o| o.name.as_str()))?,
                    item: number(op.and_then(|o| o.item.as_deref()))?,
                    vault: number(op.and_then(|o| o.vault.as_deref()))?,
                    vault_name: number(op.and_then(|o| o.vault_name.as_deref()))?,
                    rule: number(r.decision.as_ref().map(|d| d.rule.as_str()))?,
                    kind: kind_code(r.kind),
                    decision: r.decision.as_ref().map_or(2, |d| u8::from(d.allow)),
                    status: r.resp.as_ref().map_or(0, |p| p.status),
                    id: r.id.as_bytes().try_into().map_err(|_| Stale)?,
                };
                records.write_all(&record.encode()).map_err(|_| Stale)?;
                offset += read as u64;
                self.meta.size += 1;
                self.meta.last = link(&checked.leaf_hash());
                self.meta.segment = first;
                self.meta.offset = offset;
            }
        }
        records.flush().map_err(|_| Stale)?;
        strings_out.flush().map_err(|_| Stale)?;
        self.meta.strings = self.strings.len() as u64;
        Ok(())
    }

    fn persist(&self) -> Result<(), QueryError> {
        let path = self.dir.join("meta.json");
        let tmp = self.dir.join("meta.json.tmp");
        let bytes = serde_json::to_vec(&self.meta).map_err(|e| err(&path, e))?;
        fs::write(&tmp, bytes).map_err(|e| err(&tmp, e))?;
        fs::rename(&tmp, &path).map_err(|e| err(&path, e))
    }

    fn number_of(&self, text: &Option<String>) -> Option<Option<u32>> {
        text.as_ref()
            .map(|t| self.strings.iter().position(|s| s == t).map(|n| n as u32))
    }

    fn scan(&self, filter: &Filter, origin: &str, answer: &mut Answer) -> Result<(), QueryError> {
        answer.scanned += self.meta.size;
        // A wanted string that never occurs matches nothing; skip the scan.
        let wanted = [&filter.job, &filter.op, &filter.item].map(|f| self.number_of(f));
        if wanted.iter().any(|w| matches!(w, Some(None))) {
            return Ok(());
        }
        let [job, op, item] = wanted.map(|w| w.flatten());
        let vault = filter.vault.as_ref().map(|v| {
            self.strings
                .iter()
                .position(|s| s == v)
                .map_or(NONE - 1, |n| n as u32)
        });
        let path = self.dir.join("records.bin");
        let file = File::open(&path).map_err(|e| err(&path, e))?;
        let mut reader =
            BufReader::with_capacity(1 << 20, file.take(self.meta.size * RECORD as u64));
        let mut buf = [0u8; RECORD];
        for _ in 0..self.meta.size {
            reader.read_exact(&mut buf).map_err(|e| err(&path, e))?;
            let r = Record::decode(&buf);
            let keep = job.is_none_or(|j| r.job == j)
                && op.is_none_or(|o| r.op == o)
                && item.is_none_or(|i| r.item == i)
                && vault.is_none_or(|v| r.vault == v || r.vault_name == v)
                && filter.allow.is_none_or(|a| r.decision == u8::from(a))
                && filter.since_ms.is_none_or(|s| r.ts >= s)
                && filter.until_ms.is_none_or(|u| r.ts <= u);
            if keep {
                answer.matches.push(self.hit(&r, origin));
            }
        }
        Ok(())
    }

    fn hit(&self, r: &Record, origin: &str) -> Hit {
        let text = |n: u32| {
            (n != NONE)
                .then(|| self.strings.get(n as usize).cloned())
                .flatten()
        };
        Hit {
            log: origin.to_owned(),
            seq: r.seq,
            id: String::from_utf8_lossy(&r.id).into_owned(),
            ts: format_ms(r.ts),
            kind: KINDS
                .get(usize::from(r.kind))
                .map_or("?", |k| k.as_str())
                .to_owned(),
            job: text(r.job).unwrap_or_default(),
            op: text(r.op),
            vault: text(r.vault),
            vault_name: text(r.vault_name),
            item: text(r.item),
            decision: match r.decision {
                0 => Some("deny".into()),
                1 => Some("allow".into()),
                _ => None,
            },
            rule: text(r.rule),
            status: (r.status != 0).then_some(r.status),
        }
    }
}

/// A receipt time (ms since the epoch) as receipts write it.
fn format_ms(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .map(receipt::format_ts)
        .unwrap_or_default()
}

/// The log is not the one the index covers (rewritten, truncated, replaced).
struct Stale;

/// Bytes taken by the first `count` lines of the strings file.
fn string_bytes(file: &mut File, count: u64) -> io::Result<u64> {
    file.seek(SeekFrom::Start(0))?;
    let mut reader = BufReader::new(&mut *file);
    let mut bytes = 0u64;
    let mut line = Vec::new();
    for _ in 0..count {
        line.clear();
        bytes += reader.read_until(b'\n', &mut line)? as u64;
    }
    Ok(bytes)
}

const KINDS: [Kind; 7] = [
    Kind::Request,
    Kind::Call,
    Kind::TunnelOpen,
    Kind::TunnelClose,
    Kind::JobClose,
    Kind::Recovery,
    Kind::KeyRotation,
];

fn kind_code(kind: Kind) -> u8 {
    KINDS
        .iter()
        .position(|k| *k == kind)
        .map_or(u8::MAX, |i| i as u8)
}

/// One receipt in the index.
struct Record {
    seq: u64,
    ts: i64,
    job: u32,
    op: u32,
    item: u32,
    vault: u32,
    vault_name: u32,
    rule: u32,
    kind: u8,
    /// 0 deny, 1 allow, 2 no decision.
    decision: u8,
    status: u16,
    id: [u8; 26],
}

impl Record {
    fn encode(&self) -> [u8; RECORD] {
        let mut b = [0u8; RECORD];
        b[0..8].copy_from_slice(&self.seq.to_le_bytes());
        b[8..16].copy_from_slice(&self.ts.to_le_bytes());
        for (i, n) in [
            self.job,
            self.op,
            self.item,
            self.vault,
            self.vault_name,
            self.rule,
        ]
        .into_iter()
        .enumerate()
        {
            b[16 + 4 * i..20 + 4 * i].copy_from_slice(&n.to_le_bytes());
        }
        b[40] = self.kind;
        b[41] = self.decision;
        b[42..44].copy_from_slice(&self.status.to_le_bytes());
        b[44..70].copy_from_slice(&self.id);
        b
    }

    fn decode(b: &[u8; RECORD]) -> Self {
        let u32_at = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let mut id = [0u8; 26];
        id.copy_from_slice(&b[44..70]);
        Self {
            seq: u64::from_le_bytes(b[0..8].try_into().expect("8 bytes")),
            ts: i64::from_le_bytes(b[8..16].try_into().expect("8 bytes")),
            job: u32_at(16),
            op: u32_at(20),
            item: u32_at(24),
            vault: u32_at(28),
            vault_name: u32_at(32),
            rule: u32_at(36),
            kind: b[40],
            decision: b[41],
            status: u16::from_le_bytes([b[42], b[43]]),
            id,
        }
    }
}

pub mod fleet;
#[cfg(test)]
mod tests;
