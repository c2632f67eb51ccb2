//! Every target over its committed corpus, then about two seconds of mutation each, so that
//! `cargo test --workspace` keeps the targets compiling, their fixed setups valid and their
//! invariants true. Nothing is written unless a target crashes (then the input is saved under
//! `fuzz/artifacts/` and the test fails with the target's panic).

use std::time::Duration;

use crate::engine::Options;
use crate::{corpus_dir, load_corpus, run, targets};

fn fuzz(name: &str) {
    let target = targets::by_name(name).expect("a target of that name");
    let seeds = load_corpus(&corpus_dir(name)).expect("the target's corpus");
    assert!(!seeds.is_empty(), "{name} has no seed corpus");
    let options = Options {
        save_new: None,
        timeout: None,
        ..Options::for_duration(Duration::from_secs(2))
    };
    let stats = run(target, &seeds, &options);
    assert!(stats.iterations >= seeds.len() as u64, "{stats:?}");
    eprintln!("{name}: {stats}");
}

#[test]
fn contract() {
    fuzz("contract");
}

#[test]
fn token() {
    fuzz("token");
}

#[test]
fn classify() {
    fuzz("classify");
}

#[test]
fn receipt() {
    fuzz("receipt");
}

#[test]
fn bundle() {
    fuzz("bundle");
}

#[test]
fn checkpoint() {
    fuzz("checkpoint");
}

#[test]
fn proxy() {
    fuzz("proxy");
}

#[test]
fn every_target_is_tested_here_and_has_a_corpus() {
    let source = include_str!("tests.rs");
    for target in targets::all() {
        assert!(
            source.contains(&format!("fuzz(\"{}\")", target.name)),
            "{} has no test above",
            target.name
        );
        assert!(
            corpus_dir(target.name).is_dir(),
            "{} has no corpus",
            target.name
        );
    }
}
