//! Reading a log: segments streamed in order, every line verified (signature, canonical form,
//! kind rules) and chained (`seq`, `prev`, `job_seq`, `job_prev`, time order), per-job
//! iteration, and the checkpoint history.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use claw_policy::keys::Purpose;
use claw_policy::trust::TrustStore;

use super::segment::list_segments;
use crate::checkpoint::{self, Checkpoint, NoteVerifier};
use crate::merkle::{CompactRange, Hash};
use crate::receipt::{
    self, CheckedReceipt, GENESIS, Kind, Receipt, ReceiptError, link, parse_leaf_unverified,
};

/// Longest line a reader accepts (a receipt is well under 64 KiB; a longer line is damage).
const MAX_LINE: usize = 1 << 20;

/// Why a log could not be read.
#[derive(Clone, Debug, Eq, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    /// The file system failed.
    #[error("{file}: {message}")]
    Io {
        /// The file or directory.
        file: String,
        /// What failed.
        message: String,
    },
    /// A line is not a valid receipt (bad signature, not canonical, malformed, …).
    #[error("{file}:{line}: receipt at seq {seq}: {source}")]
    Receipt {
        /// The segment.
        file: String,
        /// 1-based line number.
        line: u64,
        /// The seq this line should have had.
        seq: u64,
        /// What is wrong.
        source: ReceiptError,
    },
    /// A valid receipt in the wrong place: gap, duplicate, reorder, fork or time going back.
    #[error("{file}:{line}: chain broken at seq {seq}: {message}")]
    Chain {
        /// The segment.
        file: String,
        /// 1-based line number.
        line: u64,
        /// The seq expected at this line.
        seq: u64,
        /// What is wrong.
        message: String,
    },
    /// A segment's name or framing is wrong.
    #[error("{file}: {message}")]
    Segment {
        /// The segment.
        file: String,
        /// What is wrong.
        message: String,
    },
    /// The last segment ends in an incomplete line (a write in progress, or a crash mid-write).
    #[error("{file}: incomplete last line at byte {offset} ({bytes} bytes)")]
    Torn {
        /// The segment.
        file: String,
        /// Where the incomplete line starts.
        offset: u64,
        /// Its length.
        bytes: u64,
    },
}

impl ReadError {
    /// The seq the error is about, when there is one.
    pub fn seq(&self) -> Option<u64> {
        match self {
            ReadError::Receipt { seq, .. } | ReadError::Chain { seq, .. } => Some(*seq),
            _ => None,
        }
    }
}

/// One entry of the checkpoint history.
#[derive(Clone, Debug, Eq, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointRecord {
    /// The signed note, verbatim.
    pub note: String,
    /// Its tree size (also inside the note; here to search without parsing notes).
    pub size: u64,
}

/// What a full pass over a log found (for bundles and queries).
#[derive(Clone, Debug, Default)]
pub struct LogSummary {
    /// Leaf hashes by seq (the tree, for inclusion and consistency proofs).
    pub leaves: Vec<Hash>,
    /// Per job: its seqs in order, whether it has a `job_close`, and its last leaf link.
    pub jobs: BTreeMap<String, JobSummary>,
    /// The tree over all leaves.
    pub range: CompactRange,
}

/// One job within a log.
#[derive(Clone, Debug, Default, Eq, PartialEq)]
pub struct JobSummary {
    /// The seqs of the job's receipts, in order (`job_seq` = index).
    pub seqs: Vec<u64>,
    /// Whether a `job_close` ends it.
    pub closed: bool,
    /// `sha256:` link of its last receipt.
    pub last: String,
}

/// A reader over one log directory (`receipts/<proxy id>`), checking against `trust`.
#[derive(Clone, Debug)]
pub struct LogReader {
    dir: PathBuf,
    trust: TrustStore,
}

impl LogReader {
    /// A reader of `dir` whose receipts must verify under proxy keys in `trust`.
    pub fn new(dir: impl Into<PathBuf>, trust: TrustStore) -> Self {
        Self {
            dir: dir.into(),
            trust,
        }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Streams every receipt in order, each verified and chained. The iterator stops after
    /// the first error. A torn last line (a write in progress) ends it with
    /// [`ReadError::Torn`]; readers of a live log may treat that as the end.
    pub fn receipts(&self) -> Result<Receipts<'_>, ReadError> {
        Receipts::new(&self.dir, &self.trust, true)
    }

    /// Streams every receipt in order, chained and canonical, checking no signature: for
    /// gathering evidence that a verifier checks in full anyway.
    pub fn chained(&self) -> Result<Receipts<'_>, ReadError> {
        let mut receipts = Receipts::new(&self.dir, &self.trust, false)?;
        receipts.verify_tail = false;
        Ok(receipts)
    }

    /// The receipts of one job, in order, each verified and chained.
    pub fn job<'a>(
        &'a self,
        job: &'a str,
    ) -> Result<impl Iterator<Item = Result<CheckedReceipt, ReadError>> + 'a, ReadError> {
        Ok(self
            .receipts()?
            .filter(move |r| r.as_ref().map_or(true, |r| r.receipt().job == job)))
    }

    /// Reads everything once: leaf hashes, the tree and the per-job index.
    pub fn summary(&self) -> Result<LogSummary, ReadError> {
        let mut out = LogSummary::default();
        for r in self.receipts()? {
            let r = r?;
            out.leaves.push(r.leaf_hash());
            out.range.append(r.leaf_hash());
            let job = out.jobs.entry(r.receipt().job.clone()).or_default();
            job.seqs.push(r.receipt().seq);
            job.closed |= r.receipt().kind == Kind::JobClose;
            job.last = link(&r.leaf_hash());
        }
        Ok(out)
    }

    /// The checkpoint history (oldest first), unverified.
    pub fn checkpoint_history(&self) -> Result<Vec<CheckpointRecord>, ReadError> {
        read_checkpoint_history(&self.dir)
    }

    /// Every checkpoint in the history, each signature verified under the trusted proxy key
    /// of this log (note name = origin); sizes must never decrease.
    pub fn checkpoints(&self) -> Result<Vec<Checkpoint>, ReadError> {
        let history = self.checkpoint_history()?;
        let file = self.dir.join("checkpoints").display().to_string();
        let mut out: Vec<Checkpoint> = Vec::with_capacity(history.len());
        for (i, record) in history.iter().enumerate() {
            let bad = |message: String| ReadError::Segment {
                file: file.clone(),
                message: format!("entry {}: {message}", i + 1),
            };
            let origin = record.note.lines().next().unwrap_or_default();
            let verifiers = note_verifiers(&self.trust, origin);
            let cp = checkpoint::open_checkpoint(&record.note, &verifiers)
                .map_err(|e| bad(e.to_string()))?;
            if out.last().is_some_and(|last| last.origin != cp.origin) {
                return Err(bad(format!(
                    "a checkpoint of {:?} among another log's",
                    cp.origin
                )));
            }
            if cp.size != record.size {
                return Err(bad(format!(
                    "size {} but the note says {}",
                    record.size, cp.size
                )));
            }
            if out.last().is_some_and(|last| last.size > cp.size) {
                return Err(bad("checkpoint sizes go backwards".into()));
            }
            out.push(cp);
        }
        Ok(out)
    }

    /// The latest checkpoint (`checkpoint` file), verified, if there is one.
    pub fn latest_checkpoint(&self) -> Result<Option<(Checkpoint, String)>, ReadError> {
        let path = self.dir.join("checkpoint");
        let note = match std::fs::read_to_string(&path) {
            Ok(note) => note,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_error(&path, &e)),
        };
        // Opened under the origin it names; callers compare that with the log they expect.
        let origin = note.lines().next().unwrap_or_default();
        let verifiers = note_verifiers(&self.trust, origin);
        let cp =
            checkpoint::open_checkpoint(&note, &verifiers).map_err(|e| ReadError::Segment {
                file: path.display().to_string(),
                message: e.to_string(),
            })?;
        Ok(Some((cp, note)))
    }
}

/// The trusted verifiers of the checkpoints of log `origin`: every proxy key whose proxy the
/// origin belongs to (its own log or an instance's), under the key name `origin`.
pub fn note_verifiers(trust: &TrustStore, origin: &str) -> Vec<NoteVerifier> {
    trust
        .by_purpose(Purpose::Proxy)
        .filter(|k| receipt::is_origin_of(origin, &k.name))
        .map(|k| NoteVerifier::new(origin, k.key))
        .collect()
}

/// Reads and verifies a whole log signed by `key`, whose directory is named for its proxy id
/// (`receipts/<proxy id>`): every receipt in order (a torn last line is an error here).
pub fn read_log(dir: &Path, key: &ed25519_dalek::VerifyingKey) -> Result<Vec<Receipt>, ReadError> {
    let proxy_id = dir
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| ReadError::Io {
            file: dir.display().to_string(),
            message: "the log directory must be named for its proxy id".into(),
        })?;
    let mut trust = TrustStore::default();
    trust.add(Purpose::Proxy, proxy_id, *key);
    LogReader::new(dir, trust)
        .receipts()?
        .map(|r| r.map(CheckedReceipt::into_receipt))
        .collect()
}

/// Reads the `checkpoints` history file of a log directory.
pub fn read_checkpoint_history(dir: &Path) -> Result<Vec<CheckpointRecord>, ReadError> {
    let path = dir.join("checkpoints");
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_error(&path, &e)),
    };
    text.lines()
        .enumerate()
        .map(|(i, line)| {
            claw_policy::canonical::from_slice_strict(line.as_bytes()).map_err(|e| {
                ReadError::Segment {
                    file: path.display().to_string(),
                    message: format!("entry {}: {e}", i + 1),
                }
            })
        })
        .collect()
}

/// The chain state after some receipts: what the next one must link to.
#[derive(Clone, Debug, Default)]
pub(crate) struct Chain {
    pub(crate) range: CompactRange,
    pub(crate) prev: Option<String>,
    pub(crate) jobs: HashMap<String, JobState>,
    pub(crate) last_ts: String,
    pub(crate) log: Option<String>,
}

/// One job's chain within the log.
#[derive(Clone, Debug)]
pub(crate) struct JobState {
    pub(crate) next: u64,
    pub(crate) last: String,
    pub(crate) closed: bool,
}

impl Chain {
    pub(crate) fn size(&self) -> u64 {
        self.range.size()
    }

    pub(crate) fn prev(&self) -> &str {
        self.prev.as_deref().unwrap_or(GENESIS)
    }

    /// `(job_seq, job_prev, closed)` the next receipt of `job` gets.
    pub(crate) fn job_link(&self, job: &str) -> (u64, &str, bool) {
        match self.jobs.get(job) {
            Some(s) => (s.next, s.last.as_str(), s.closed),
            None => (0, GENESIS, false),
        }
    }

    /// Why `r` cannot be the next receipt, if it cannot.
    pub(crate) fn check(&self, r: &Receipt) -> Result<(), String> {
        if r.seq != self.size() {
            return Err(format!(
                "found seq {} where {} was expected",
                r.seq,
                self.size()
            ));
        }
        if r.prev != self.prev() {
            return Err("prev is not the leaf hash of the previous receipt".into());
        }
        if let Some(log) = &self.log
            && *log != r.log
        {
            return Err(format!("log {:?} in a log of {log:?}", r.log));
        }
        if r.ts < self.last_ts {
            return Err(format!("ts {} is earlier than {}", r.ts, self.last_ts));
        }
        let (next, last, closed) = self.job_link(&r.job);
        if closed {
            return Err(format!("a receipt of job {:?} after its job_close", r.job));
        }
        if r.job_seq != next {
            return Err(format!(
                "job {:?}: found job_seq {} where {next} was expected",
                r.job, r.job_seq
            ));
        }
        if r.job_prev != last {
            return Err(format!(
                "job {:?}: job_prev is not the leaf hash of the job's previous receipt",
                r.job
            ));
        }
        Ok(())
    }

    /// Adds a receipt already known to fit.
    pub(crate) fn push(&mut self, r: &Receipt, leaf_hash: Hash) {
        let link = link(&leaf_hash);
        self.range.append(leaf_hash);
        self.prev = Some(link.clone());
        self.last_ts.clone_from(&r.ts);
        if self.log.is_none() {
            self.log = Some(r.log.clone());
        }
        self.jobs.insert(
            r.job.clone(),
            JobState {
                next: r.job_seq + 1,
                last: link,
                closed: r.kind == Kind::JobClose,
            },
        );
    }
}

/// A streaming, verifying iterator over a log's receipts.
pub struct Receipts<'a> {
    trust: &'a TrustStore,
    segments: std::vec::IntoIter<(u64, PathBuf)>,
    current: Option<Segment>,
    chain: Chain,
    done: bool,
    /// Verify signatures in every segment (`false`: only in the last one).
    verify_all: bool,
    /// Verify signatures in the last segment (`false` with `verify_all` false: none at all).
    verify_tail: bool,
    /// Set when the iterator ended on a torn last line.
    pub(crate) torn: Option<(PathBuf, u64, u64)>,
}

struct Segment {
    path: PathBuf,
    reader: BufReader<File>,
    offset: u64,
    line: u64,
    first_seq: u64,
    last: bool,
}

impl<'a> Receipts<'a> {
    pub(crate) fn new(
        dir: &Path,
        trust: &'a TrustStore,
        verify_all: bool,
    ) -> Result<Self, ReadError> {
        let segments = list_segments(dir).map_err(|e| io_error(dir, &e))?;
        Ok(Self {
            trust,
            segments: segments.into_iter(),
            current: None,
            chain: Chain::default(),
            done: false,
            verify_all,
            verify_tail: true,
            torn: None,
        })
    }

    /// The chain state after everything read so far.
    pub(crate) fn chain_state(&self) -> &Chain {
        &self.chain
    }

    pub(crate) fn into_chain(self) -> Chain {
        self.chain
    }

    fn open_next(&mut self) -> Result<bool, ReadError> {
        let Some((first_seq, path)) = self.segments.next() else {
            return Ok(false);
        };
        if first_seq != self.chain.size() {
            return Err(ReadError::Segment {
                file: path.display().to_string(),
                message: format!(
                    "segment starts at seq {first_seq} but the log before it ends at seq {}",
                    self.chain.size()
                ),
            });
        }
        let file = File::open(&path).map_err(|e| io_error(&path, &e))?;
        self.current = Some(Segment {
            path,
            reader: BufReader::with_capacity(256 * 1024, file),
            offset: 0,
            line: 0,
            first_seq,
            last: self.segments.len() == 0,
        });
        Ok(true)
    }

    fn step(&mut self) -> Result<Option<CheckedReceipt>, ReadError> {
        loop {
            if self.current.is_none() && !self.open_next()? {
                return Ok(None);
            }
            let Some(segment) = self.current.as_mut() else {
                continue;
            };
            let mut line = Vec::new();
            let read = (&mut segment.reader)
                .take(MAX_LINE as u64 + 1)
                .read_until(b'\n', &mut line)
                .map_err(|e| io_error(&segment.path, &e))?;
            let file = segment.path.display().to_string();
            if read == 0 {
                if segment.line == 0 && !segment.last {
                    return Err(ReadError::Segment {
                        file,
                        message: "empty segment before the last one".into(),
                    });
                }
                let _ = segment.first_seq;
                self.current = None;
                continue;
            }
            let offset = segment.offset;
            segment.offset += read as u64;
            segment.line += 1;
            if line.last() != Some(&b'\n') {
                if segment.last && read <= MAX_LINE {
                    self.torn = Some((segment.path.clone(), offset, read as u64));
                    return Err(ReadError::Torn {
                        file,
                        offset,
                        bytes: read as u64,
                    });
                }
                return Err(ReadError::Segment {
                    file,
                    message: format!("line {} is incomplete or longer than 1 MiB", segment.line),
                });
            }
            line.pop();
            let seq = self.chain.size();
            let verify = self.verify_all || (segment.last && self.verify_tail);
            let checked = if verify {
                receipt::verify_leaf(&line, self.trust)
            } else {
                parse_leaf_unverified(&line)
            };
            let checked = checked.map_err(|source| ReadError::Receipt {
                file: file.clone(),
                line: segment.line,
                seq,
                source,
            })?;
            let line_no = segment.line;
            self.chain
                .check(checked.receipt())
                .map_err(|message| ReadError::Chain {
                    file,
                    line: line_no,
                    seq,
                    message,
                })?;
            self.chain.push(checked.receipt(), checked.leaf_hash());
            return Ok(Some(checked));
        }
    }
}

impl Iterator for Receipts<'_> {
    type Item = Result<CheckedReceipt, ReadError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.step() {
            Ok(Some(r)) => Some(Ok(r)),
            Ok(None) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

pub(crate) fn io_error(path: &Path, e: &io::Error) -> ReadError {
    ReadError::Io {
        file: path.display().to_string(),
        message: e.to_string(),
    }
}
