//! `claw-fuzz`: runs one fuzz target, or all of them, for a while.
//!
//! ```text
//! cargo run -p claw-fuzz --release -- all --seconds 60
//! cargo run -p claw-fuzz --release -- token --seconds 300 --save-new
//! cargo run -p claw-fuzz --release -- token --input fuzz/artifacts/token/crash-0123456789abcdef
//! ```

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use claw_fuzz::engine::{Options, Target, Trace, artifacts_dir};
use claw_fuzz::{corpus_dir, load_corpus, targets};

/// Stable-Rust mutation fuzzing of clawproxy's parsers. A crashing input is saved under
/// fuzz/artifacts/<target>/ and the panic is re-raised (exit code 101).
#[derive(Parser)]
#[command(name = "claw-fuzz")]
struct Cli {
    /// A target name, `all`, or `list` to print the targets.
    target: String,
    /// Seconds per target.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// PRNG seed (runs with the same seed and build repeat exactly).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Also write inputs with a new outcome to fuzz/corpus/<target>/new-<hash>.
    #[arg(long)]
    save_new: bool,
    /// An input running longer than this many milliseconds is saved as a hang and ends the
    /// run.
    #[arg(long, default_value_t = 10_000)]
    timeout_ms: u64,
    /// Stack size of the fuzzing thread in KiB (2 MiB, as a tokio worker of the proxy has).
    #[arg(long, default_value_t = 2048)]
    stack_kib: usize,
    /// Print every trace label to stderr (to tune a target's feedback).
    #[arg(long)]
    print_labels: bool,
    /// Run these files once each (a crash artifact, say) instead of fuzzing, uncapped, and
    /// print how long each took.
    #[arg(long)]
    input: Vec<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    claw_fuzz::engine::PRINT_LABELS.store(cli.print_labels, std::sync::atomic::Ordering::Relaxed);
    if cli.target == "list" {
        for t in targets::all() {
            println!("{:<11} {}", t.name, t.about);
        }
        return ExitCode::SUCCESS;
    }
    let chosen: Vec<_> = if cli.target == "all" {
        targets::all().to_vec()
    } else {
        match targets::by_name(&cli.target) {
            Some(t) => vec![t],
            None => {
                eprintln!(
                    "unknown target {:?}; `claw-fuzz list` names them",
                    cli.target
                );
                return ExitCode::from(2);
            }
        }
    };
    if !cli.input.is_empty() {
        let [target] = chosen.as_slice() else {
            eprintln!("--input needs one target, not `all`");
            return ExitCode::from(2);
        };
        return reproduce(target, &cli.input, cli.stack_kib);
    }
    let options = Options {
        seed: cli.seed,
        save_new: cli
            .save_new
            .then(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("corpus")),
        timeout: Some(Duration::from_millis(cli.timeout_ms)),
        artifacts: Some(artifacts_dir()),
        ..Options::for_duration(Duration::from_secs(cli.seconds))
    };
    for target in chosen {
        let seeds = match load_corpus(&corpus_dir(target.name)) {
            Ok(seeds) => seeds,
            Err(e) => {
                eprintln!("{}: cannot read its corpus: {e}", target.name);
                return ExitCode::FAILURE;
            }
        };
        let options = options.clone();
        // The target runs on its own thread so its stack is the proxy's, not main's 8 MiB.
        let worker = std::thread::Builder::new()
            .name(format!("fuzz-{}", target.name))
            .stack_size(cli.stack_kib * 1024)
            .spawn(move || claw_fuzz::run(target, &seeds, &options))
            .expect("spawn the fuzzing thread");
        match worker.join() {
            Ok(stats) => println!("{}: {stats}, no crash", target.name),
            Err(panic) => {
                eprintln!(
                    "{}: CRASH (input saved under {})",
                    target.name,
                    artifacts_dir().display()
                );
                std::panic::resume_unwind(panic);
            }
        }
    }
    ExitCode::SUCCESS
}

/// Runs each file once on a thread with the fuzzing stack; a panic propagates.
fn reproduce(target: &'static Target, files: &[PathBuf], stack_kib: usize) -> ExitCode {
    for file in files {
        let input = match std::fs::read(file) {
            Ok(input) => input,
            Err(e) => {
                eprintln!("{}: {e}", file.display());
                return ExitCode::FAILURE;
            }
        };
        let worker = std::thread::Builder::new()
            .stack_size(stack_kib * 1024)
            .spawn(move || {
                let started = Instant::now();
                (target.run)(&input, &mut Trace::default());
                (started.elapsed(), input.len())
            })
            .expect("spawn the thread");
        match worker.join() {
            Ok((took, len)) => println!(
                "{}: {} ({len} bytes) ran in {:.2} ms",
                target.name,
                file.display(),
                took.as_secs_f64() * 1000.0
            ),
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }
    ExitCode::SUCCESS
}
