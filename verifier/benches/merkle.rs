//! Merkle tree benchmarks: appends (what the log writer does per receipt), proof verification
//! (what `clawverify verify` does per receipt) and proof generation (what `clawverify bundle`
//! does).
//!
//! Run with `cargo bench -p claw-verifier --bench merkle`.

use std::hint::black_box;

use claw_verifier::merkle::{
    CompactRange, Hash, Tree, consistency_proof, inclusion_proof, leaf_hash, verify_consistency,
    verify_inclusion,
};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};

/// A log of a million receipts: proofs have 20 hashes.
const BIG: u64 = 1_000_003;

fn leaves(n: u64) -> Vec<Hash> {
    (0..n).map(|i| leaf_hash(&i.to_be_bytes())).collect()
}

fn append(c: &mut Criterion) {
    let mut group = c.benchmark_group("append");
    let batch = leaves(1024);
    group.throughput(Throughput::Elements(batch.len() as u64));
    group.bench_function("compact_range_1024", |b| {
        b.iter(|| {
            let mut range = CompactRange::new();
            for leaf in &batch {
                range.append(*leaf);
            }
            black_box(range.root())
        })
    });
    group.bench_function("tree_1024", |b| {
        b.iter(|| black_box(Tree::from_leaves(batch.iter().copied()).root()))
    });
    group.finish();

    let mut range = CompactRange::new();
    for leaf in leaves((1 << 20) - 1) {
        range.append(leaf);
    }
    // Size 2^20 − 1: the worst case for both, 20 right-edge hashes.
    c.bench_function("compact_range_root_2^20-1", |b| {
        b.iter(|| black_box(range.root()))
    });
    c.bench_function("compact_range_append_at_2^20-1", |b| {
        b.iter_batched_ref(
            || range.clone(),
            |r| r.append(leaf_hash(b"x")),
            BatchSize::SmallInput,
        )
    });
}

fn verify(c: &mut Criterion) {
    let all = leaves(BIG);
    let tree = Tree::from_leaves(all.iter().copied());
    let root = tree.root();
    let index = BIG / 3;
    let proof = tree.inclusion_proof(index, BIG).expect("index < size");
    c.bench_function("verify_inclusion_1M", |b| {
        b.iter(|| verify_inclusion(black_box(index), BIG, &all[index as usize], &proof, &root))
    });
    let size1 = BIG / 2 + 7;
    let root1 = tree.root_at(size1).expect("size1 ≤ size");
    let proof = tree.consistency_proof(size1, BIG).expect("size1 ≤ size");
    c.bench_function("verify_consistency_1M", |b| {
        b.iter(|| verify_consistency(black_box(size1), BIG, &root1, &root, &proof))
    });
}

fn prove(c: &mut Criterion) {
    let all = leaves(BIG);
    let tree = Tree::from_leaves(all.iter().copied());
    c.bench_function("tree_inclusion_proof_1M", |b| {
        b.iter(|| tree.inclusion_proof(black_box(BIG / 3), BIG))
    });
    c.bench_function("tree_consistency_proof_1M", |b| {
        b.iter(|| tree.consistency_proof(black_box(BIG / 2 + 7), BIG))
    });
    let small = &all[..4096];
    c.bench_function("slice_inclusion_proof_4096", |b| {
        b.iter(|| inclusion_proof(small, black_box(1234), 4096))
    });
    c.bench_function("slice_consistency_proof_4096", |b| {
        b.iter(|| consistency_proof(small, black_box(1234), 4096))
    });
}

criterion_group!(benches, append, verify, prove);
criterion_main!(benches);
