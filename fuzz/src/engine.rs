//! The fuzzing loop: seeds first, then mutate, execute, keep what behaved newly.
//!
//! Every execution runs under `catch_unwind`. A panic saves the input to
//! `<artifacts>/<target>/crash-<hash>` and is then re-raised, so the run fails loudly with the
//! reproducer on disk. With a timeout set, a watchdog thread saves an input that runs longer
//! to `hang-<hash>` and ends the process (a hung parser cannot be interrupted in-thread).

use std::collections::HashSet;
use std::fmt;
use std::io;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::mutate::mutate;
use crate::rng::Rng;

/// One fuzz target: a library entry point fed arbitrary bytes.
pub struct Target {
    /// The name on the command line and of its corpus and artifact folders.
    pub name: &'static str,
    /// What it exercises, in one line.
    pub about: &'static str,
    /// Inputs are capped at this many bytes (mutations never grow past it), so no input can
    /// be slow merely by being large.
    pub max_len: usize,
    /// Tokens the mutator inserts, besides [`crate::mutate::COMMON`].
    pub dictionary: &'static [&'static [u8]],
    /// Runs the input; panics on a broken invariant; records what it saw in the trace.
    pub run: fn(&[u8], &mut Trace),
}

impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Target").field("name", &self.name).finish()
    }
}

/// Print every trace label to stderr (`--print-labels`): to see why a target finds too many
/// "new" outcomes, i.e. which label echoes its input.
pub static PRINT_LABELS: AtomicBool = AtomicBool::new(false);

/// What one execution saw (which steps accepted, which kinds of error refused), folded into a
/// 64-bit FNV-1a signature. An input with a signature not seen before joins the corpus.
#[derive(Clone, Debug)]
pub struct Trace(u64);

impl Default for Trace {
    fn default() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }
}

impl Trace {
    /// Records a label as is.
    pub fn step(&mut self, label: &str) {
        if PRINT_LABELS.load(Ordering::Relaxed) {
            eprintln!("label: {label}");
        }
        for b in label.bytes().chain([0xff]) {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }

    /// Records a step's result: `step:ok`, or `step:` and the error's message without what
    /// echoes the input (so `unknown key "x"` and `unknown key "y"` are one outcome).
    pub fn outcome<T, E: fmt::Display>(&mut self, step: &str, result: &Result<T, E>) {
        match result {
            Ok(_) => self.step(&format!("{step}:ok")),
            Err(e) => self.step(&format!("{step}:{}", shape(&e.to_string()))),
        }
    }

    /// The signature.
    pub fn value(&self) -> u64 {
        self.0
    }
}

/// An error message without what echoes the input. Each `: `-separated part of the message
/// (errors chain their causes so) is cut at its first quote or bracket, where quoted input,
/// JSON or a field name would begin, and only words of plain letters are kept (no numbers,
/// hosts or paths); at most 96 characters.
fn shape(message: &str) -> String {
    let mut out = String::new();
    for part in message.split(": ") {
        let end = part.find(['"', '`', '\'', '{', '[']).unwrap_or(part.len());
        for word in part[..end].split_whitespace() {
            let word = word.trim_matches(|c: char| ",.;:()".contains(c));
            if word.is_empty() || !word.chars().all(|c| c.is_ascii_alphabetic() || c == '_') {
                continue;
            }
            if out.len() + word.len() >= 96 {
                return out;
            }
            out.push_str(word);
            out.push(' ');
        }
        out.push('|');
    }
    out
}

/// How long and how to run.
#[derive(Clone, Debug)]
pub struct Options {
    /// Stop after this long (seeds are always run, whatever the time).
    pub duration: Duration,
    /// Stop after this many executions, seeds included.
    pub max_iterations: Option<u64>,
    /// Seeds the PRNG (mixed with the target's name).
    pub seed: u64,
    /// Where crash and hang inputs go (`<dir>/<target>/`); `None` writes nothing.
    pub artifacts: Option<PathBuf>,
    /// Where inputs with a new signature are also written; `None` keeps them in memory only.
    pub save_new: Option<PathBuf>,
    /// Inputs running longer than this are saved as hangs and end the process.
    pub timeout: Option<Duration>,
    /// The most inputs kept in memory (seeds are never evicted).
    pub max_corpus: usize,
}

impl Options {
    /// Runs for `duration`, writing crash artifacts under `fuzz/artifacts/`, nothing else.
    pub fn for_duration(duration: Duration) -> Self {
        Self {
            duration,
            max_iterations: None,
            seed: 0,
            artifacts: Some(artifacts_dir()),
            save_new: None,
            timeout: None,
            max_corpus: 4096,
        }
    }
}

/// What a run did.
#[derive(Clone, Debug)]
pub struct Stats {
    /// Executions, seeds included.
    pub iterations: u64,
    /// Wall time.
    pub elapsed: Duration,
    /// Seed inputs.
    pub seeds: usize,
    /// Inputs in memory at the end.
    pub corpus: usize,
    /// Distinct signatures seen.
    pub outcomes: usize,
    /// The longest single execution.
    pub slowest: Duration,
    /// Length of that input.
    pub slowest_len: usize,
}

impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.elapsed.as_secs_f64();
        write!(
            f,
            "{} iterations in {:.1} s ({:.0}/s), {} distinct outcomes, corpus {} -> {}, \
             slowest {:.2} ms ({} bytes)",
            self.iterations,
            secs,
            self.iterations as f64 / secs.max(1e-9),
            self.outcomes,
            self.seeds,
            self.corpus,
            self.slowest.as_secs_f64() * 1000.0,
            self.slowest_len,
        )
    }
}

/// The committed corpus of a target: `fuzz/corpus/<name>/`.
pub fn corpus_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(name)
}

/// Where crashes and hangs are saved: `fuzz/artifacts/`.
pub fn artifacts_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("artifacts")
}

/// Every file of a corpus folder, in name order (dot files skipped).
pub fn load_corpus(dir: &Path) -> io::Result<Vec<Vec<u8>>> {
    let mut paths = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let hidden = entry.file_name().to_string_lossy().starts_with('.');
        if !hidden && entry.file_type()?.is_file() {
            paths.push(entry.path());
        }
    }
    paths.sort();
    paths.iter().map(std::fs::read).collect()
}

/// Fuzzes `target` from `seeds` as `options` say. Panics (re-raised from the target, after
/// saving the input) on the first crash.
pub fn run(target: &Target, seeds: &[Vec<u8>], options: &Options) -> Stats {
    let watchdog = options
        .timeout
        .map(|t| Watchdog::start(target.name, t, options.artifacts.clone()));
    let artifacts = options.artifacts.as_deref();
    let exec = |input: &[u8]| execute(target, input, artifacts, watchdog.as_ref());

    let started = Instant::now();
    let mut seen = HashSet::new();
    let mut corpus: Vec<Vec<u8>> = Vec::new();
    let mut slowest = (Duration::ZERO, 0);
    let mut iterations = 0u64;
    let mut timed = |input: &[u8], iterations: &mut u64| {
        let t = Instant::now();
        let signature = exec(input);
        let took = t.elapsed();
        if took > slowest.0 {
            slowest = (took, input.len());
        }
        *iterations += 1;
        signature
    };
    for seed in seeds {
        let seed = &seed[..seed.len().min(target.max_len)];
        seen.insert(timed(seed, &mut iterations));
        corpus.push(seed.to_vec());
    }
    if corpus.is_empty() {
        corpus.push(Vec::new());
    }
    let pinned = corpus.len();

    let mut name_hash = Trace::default();
    name_hash.step(target.name);
    let mut rng = Rng::new(options.seed ^ name_hash.value());
    let mut data = Vec::with_capacity(target.max_len);
    while started.elapsed() < options.duration
        && options.max_iterations.is_none_or(|max| iterations < max)
    {
        data.clear();
        let base = rng.below(corpus.len());
        data.extend_from_slice(&corpus[base]);
        let other = rng.below(corpus.len());
        mutate(
            &mut rng,
            &mut data,
            &corpus[other],
            target.dictionary,
            target.max_len,
        );
        if seen.insert(timed(&data, &mut iterations)) {
            if corpus.len() < options.max_corpus {
                corpus.push(data.clone());
            } else {
                let evict = pinned + rng.below(corpus.len() - pinned);
                corpus[evict].clone_from(&data);
            }
            if let Some(dir) = &options.save_new
                && let Err(e) = save(&dir.join(target.name), "new", &data)
            {
                eprintln!("{}: cannot save a new input: {e}", target.name);
            }
        }
    }
    Stats {
        iterations,
        elapsed: started.elapsed(),
        seeds: seeds.len(),
        corpus: corpus.len(),
        outcomes: seen.len(),
        slowest: slowest.0,
        slowest_len: slowest.1,
    }
}

/// Runs one input; on a panic saves it and re-raises.
fn execute(
    target: &Target,
    input: &[u8],
    artifacts: Option<&Path>,
    watchdog: Option<&Watchdog>,
) -> u64 {
    if let Some(w) = watchdog {
        w.begin(input);
    }
    let result = panic::catch_unwind(AssertUnwindSafe(|| {
        let mut trace = Trace::default();
        (target.run)(input, &mut trace);
        trace.value()
    }));
    if let Some(w) = watchdog {
        w.end();
    }
    match result {
        Ok(signature) => signature,
        Err(payload) => {
            if let Some(dir) = artifacts {
                match save(&dir.join(target.name), "crash", input) {
                    Ok(path) => eprintln!(
                        "{}: crashing input ({} bytes) saved to {}",
                        target.name,
                        input.len(),
                        path.display()
                    ),
                    Err(e) => eprintln!("{}: cannot save the crashing input: {e}", target.name),
                }
            }
            panic::resume_unwind(payload)
        }
    }
}

/// Writes `input` to `<dir>/<kind>-<first 16 hex of its BLAKE3>`.
pub fn save(dir: &Path, kind: &str, input: &[u8]) -> io::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join(format!("{kind}-{}", &blake3::hash(input).to_hex()[..16]));
    std::fs::write(&path, input)?;
    Ok(path)
}

/// Ends the process when one execution runs past the timeout, saving its input first.
struct Watchdog {
    state: Arc<WatchState>,
    thread: Option<JoinHandle<()>>,
}

struct WatchState {
    epoch: Instant,
    /// Milliseconds since `epoch` + 1 when the current execution began; 0 when idle.
    began: AtomicU64,
    input: Mutex<Vec<u8>>,
    stop: AtomicBool,
}

impl Watchdog {
    fn start(name: &'static str, timeout: Duration, artifacts: Option<PathBuf>) -> Self {
        let state = Arc::new(WatchState {
            epoch: Instant::now(),
            began: AtomicU64::new(0),
            input: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
        });
        let watched = Arc::clone(&state);
        let tick = (timeout / 4).clamp(Duration::from_millis(10), Duration::from_millis(250));
        let thread = std::thread::spawn(move || {
            while !watched.stop.load(Ordering::Relaxed) {
                std::thread::sleep(tick);
                let began = watched.began.load(Ordering::Acquire);
                let now = watched.epoch.elapsed().as_millis() as u64 + 1;
                if began == 0 || now.saturating_sub(began) <= timeout.as_millis() as u64 {
                    continue;
                }
                let input = watched
                    .input
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .clone();
                eprintln!(
                    "{name}: one input ran over {} ms ({} bytes)",
                    timeout.as_millis(),
                    input.len()
                );
                if let Some(dir) = &artifacts {
                    match save(&dir.join(name), "hang", &input) {
                        Ok(path) => eprintln!("{name}: hanging input saved to {}", path.display()),
                        Err(e) => eprintln!("{name}: cannot save the hanging input: {e}"),
                    }
                }
                std::process::exit(3);
            }
        });
        Self {
            state,
            thread: Some(thread),
        }
    }

    fn begin(&self, input: &[u8]) {
        let mut current = self.state.input.lock().unwrap_or_else(|e| e.into_inner());
        current.clear();
        current.extend_from_slice(input);
        drop(current);
        let now = self.state.epoch.elapsed().as_millis() as u64 + 1;
        self.state.began.store(now, Ordering::Release);
    }

    fn end(&self) {
        self.state.began.store(0, Ordering::Release);
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn picky(input: &[u8], trace: &mut Trace) {
        trace.step(if input.starts_with(b"{") {
            "object"
        } else {
            "other"
        });
        assert!(!input.windows(3).any(|w| w == b"BUG"), "found the bug");
    }

    const PICKY: Target = Target {
        name: "engine-selftest",
        about: "panics on BUG",
        max_len: 64,
        dictionary: &[b"BUG"],
        run: picky,
    };

    #[test]
    fn a_planted_bug_is_found_and_re_raised() {
        let dir = std::env::temp_dir().join(format!("claw-fuzz-selftest-{}", std::process::id()));
        let options = Options {
            artifacts: Some(dir.clone()),
            max_iterations: Some(1_000_000),
            ..Options::for_duration(Duration::from_secs(3600))
        };
        let crashed = panic::catch_unwind(|| run(&PICKY, &[b"{}".to_vec()], &options));
        assert!(crashed.is_err(), "the dictionary token BUG must be found");
        let saved = load_corpus(&dir.join("engine-selftest")).unwrap();
        assert!(
            saved
                .iter()
                .any(|input| input.windows(3).any(|w| w == b"BUG")),
            "the crashing input was saved"
        );
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn new_outcomes_grow_the_corpus_and_iterations_are_counted() {
        let options = Options {
            artifacts: None,
            max_iterations: Some(500),
            ..Options::for_duration(Duration::from_secs(3600))
        };
        let target = Target {
            dictionary: &[],
            run: |input, trace| trace.step(&format!("{}", input.first().copied().unwrap_or(0))),
            ..PICKY
        };
        let stats = run(&target, &[b"a".to_vec()], &options);
        assert_eq!(stats.iterations, 500);
        assert!(
            stats.outcomes > 10 && stats.corpus == stats.outcomes,
            "{stats:?}"
        );
    }

    #[test]
    fn shapes_drop_quoted_text_and_digits() {
        assert_eq!(
            shape("unknown key \"abc\" at line 12"),
            shape("unknown key \"xyz\" at line 3")
        );
        assert_eq!(
            shape("unknown field `a`b`, expected one of `x`"),
            shape("unknown field `q`")
        );
        assert_eq!(
            shape(
                r#"malformed receipt at "/req": invalid JSON at line 1, column 5: expected value"#
            ),
            "malformed receipt at |invalid JSON at line column |expected value |"
        );
        assert_eq!(
            shape("request names evil.example inside a tunnel to h:443"),
            "request names inside a tunnel to |"
        );
        assert_eq!(shape("{\"a\":[1]} is not 'x'"), "|");
        assert_ne!(shape("unknown key"), shape("expired"));
    }
}
