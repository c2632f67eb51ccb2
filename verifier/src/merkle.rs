//! The RFC 9162 Merkle tree with SHA-256: hashes, an O(log n) compact range for appends,
//! inclusion and consistency proofs, and their verifiers.
//!
//! Leaves are hashed as `SHA-256(0x00 ‖ data)` and inner nodes as `SHA-256(0x01 ‖ left ‖ right)`,
//! so a leaf can never pose as an inner node; the empty tree's root is `SHA-256("")`. The tree
//! over `n` leaves splits at the largest power of two below `n` (RFC 9162 §2.1.1). This is the
//! hash every transparency-log tool (Go's `transparency-dev/merkle`, C2SP checkpoints and
//! tiles) uses, so any of them can re-check our logs.
//!
//! Proofs are built without recursion: the node at `level` and `index` covers leaves
//! `[index << level, min((index + 1) << level, size))`, and a proof is the list of siblings on
//! the way from a leaf (or, for consistency, from the last perfect subtree of the old tree) up
//! to the root, skipping siblings that lie wholly past the end of the tree. The free functions
//! take a slice of leaf hashes and hash every leaf they need (O(n) per proof); [`Tree`] keeps
//! every perfect subtree root and answers each proof in O(log² n).
//!
//! The verifiers follow RFC 9162 §2.1.3.2 and §2.1.4.2, and first demand the exact proof
//! length, so a proof with a hash too many or too few is refused before any hashing. A
//! consistency proof from an empty tree (`size1 = 0`) is refused, as in transparency-dev's
//! verifier, because it proves nothing.

use sha2::{Digest, Sha256};

/// A SHA-256 hash: a leaf hash, a node hash or a root.
pub type Hash = [u8; 32];

/// Why a proof was refused (or could not be built).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProofError {
    /// The leaf index is not inside the tree.
    #[error("leaf index {index} is not below the tree size {size}")]
    IndexOutOfRange {
        /// The leaf index.
        index: u64,
        /// The tree size.
        size: u64,
    },
    /// A proof was asked for a tree larger than the leaves given.
    #[error("tree size {size} exceeds the {available} leaves available")]
    SizeOutOfRange {
        /// The tree size asked for.
        size: u64,
        /// How many leaves there are.
        available: u64,
    },
    /// Consistency with the empty tree proves nothing and is refused.
    #[error("consistency from an empty tree is refused")]
    EmptyOldTree,
    /// The second tree is smaller than the first.
    #[error("tree cannot shrink from size {size1} to size {size2}")]
    Shrinking {
        /// The old size.
        size1: u64,
        /// The new size.
        size2: u64,
    },
    /// The proof has the wrong number of hashes.
    #[error("proof has {got} hashes, expected {want}")]
    Length {
        /// Hashes given.
        got: usize,
        /// Hashes required.
        want: usize,
    },
    /// The proof does not lead to the old tree's root.
    #[error("proof does not reach the old root")]
    OldRootMismatch,
    /// The proof does not lead to the (new) root.
    #[error("proof does not reach the root")]
    Mismatch,
}

/// `SHA-256(0x00 ‖ data)`, the hash of one leaf.
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(data);
    h.finalize().into()
}

/// `SHA-256(0x01 ‖ left ‖ right)`, the hash of an inner node.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// `SHA-256("")`, the root of the empty tree.
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// The root (RFC 9162 MTH) over `leaf_hashes`, in O(n) with no recursion.
pub fn root(leaf_hashes: &[Hash]) -> Hash {
    let mut range = CompactRange::new();
    for leaf in leaf_hashes {
        range.append(*leaf);
    }
    range.root()
}

/// The right edge of a tree: its size and the roots of its perfect subtrees, largest (leftmost)
/// first, one per set bit of the size, so never more than 64.
///
/// This is all a log writer has to keep to append in O(log n) and to compute the root. Serialised
/// as `{"size": n, "hashes": ["<hex>", …]}`; deserialising checks that there is one hash per set
/// bit of `size`.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "RawCompactRange")]
pub struct CompactRange {
    size: u64,
    #[serde(with = "hex_hashes")]
    hashes: Vec<Hash>,
}

/// The unchecked wire form of a [`CompactRange`].
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCompactRange {
    size: u64,
    #[serde(with = "hex_hashes")]
    hashes: Vec<Hash>,
}

impl TryFrom<RawCompactRange> for CompactRange {
    type Error = String;

    fn try_from(raw: RawCompactRange) -> Result<Self, String> {
        Self::from_parts(raw.size, raw.hashes).map_err(|e| e.to_string())
    }
}

/// A compact range whose hashes do not match its size.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("a compact range of size {size} needs {want} hashes, got {got}")]
pub struct CompactRangeError {
    /// The size given.
    pub size: u64,
    /// Hashes required (set bits of the size).
    pub want: usize,
    /// Hashes given.
    pub got: usize,
}

impl CompactRange {
    /// The empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// Rebuilds a compact range from its size and right-edge hashes (largest subtree first), as
    /// returned by [`CompactRange::size`] and [`CompactRange::hashes`].
    pub fn from_parts(size: u64, hashes: Vec<Hash>) -> Result<Self, CompactRangeError> {
        let want = size.count_ones() as usize;
        if hashes.len() != want {
            return Err(CompactRangeError {
                size,
                want,
                got: hashes.len(),
            });
        }
        Ok(Self { size, hashes })
    }

    /// Number of leaves appended so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The perfect-subtree roots of the right edge, largest (leftmost) first.
    pub fn hashes(&self) -> &[Hash] {
        &self.hashes
    }

    /// Appends one leaf hash in O(log n).
    ///
    /// # Panics
    ///
    /// When the tree already holds `u64::MAX` leaves, which no log reaches.
    pub fn append(&mut self, leaf_hash: Hash) {
        let mut hash = leaf_hash;
        let mut size = self.size;
        // Each trailing one bit of the old size is a perfect subtree the new leaf completes.
        // The invariant hashes.len() == size.count_ones() (checked by from_parts and kept
        // here) guarantees a hash per set bit, so pop only fails on a broken invariant.
        while size & 1 == 1 {
            let Some(left) = self.hashes.pop() else {
                unreachable!("compact range holds one hash per set bit of its size");
            };
            hash = node_hash(&left, &hash);
            size >>= 1;
        }
        self.hashes.push(hash);
        self.size = self.size.checked_add(1).expect("a tree of 2^64 leaves");
    }

    /// The root of the tree so far: the right-edge hashes folded right to left.
    pub fn root(&self) -> Hash {
        let mut iter = self.hashes.iter().rev();
        match iter.next() {
            None => empty_root(),
            Some(last) => iter.fold(*last, |acc, left| node_hash(left, &acc)),
        }
    }
}

/// A tree that keeps every perfect subtree root (about 2n hashes), for many proofs over a large
/// log: each proof and each historical root costs O(log² n) hashes instead of O(n).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tree {
    /// `levels[l][i]` is the root of leaves `[i << l, (i + 1) << l)`, present once complete.
    levels: Vec<Vec<Hash>>,
}

impl Tree {
    /// The empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// A tree over the given leaf hashes.
    pub fn from_leaves(leaf_hashes: impl IntoIterator<Item = Hash>) -> Self {
        let mut tree = Self::new();
        for leaf in leaf_hashes {
            tree.push(leaf);
        }
        tree
    }

    /// Appends one leaf hash (amortised O(1) hashes).
    pub fn push(&mut self, leaf_hash: Hash) {
        let mut hash = leaf_hash;
        let mut level = 0;
        loop {
            if self.levels.len() == level {
                self.levels.push(Vec::new());
            }
            let row = &mut self.levels[level];
            row.push(hash);
            let len = row.len();
            // A node with an even count completes its parent.
            if len % 2 == 1 {
                return;
            }
            hash = node_hash(&row[len - 2], &row[len - 1]);
            level += 1;
        }
    }

    /// Number of leaves.
    pub fn size(&self) -> u64 {
        self.levels.first().map_or(0, |l| l.len() as u64)
    }

    /// The leaf hashes.
    pub fn leaves(&self) -> &[Hash] {
        self.levels.first().map_or(&[], Vec::as_slice)
    }

    /// The current root.
    pub fn root(&self) -> Hash {
        self.range_root(0, self.size())
    }

    /// The root of the tree over the first `size` leaves.
    pub fn root_at(&self, size: u64) -> Result<Hash, ProofError> {
        self.check_size(size)?;
        Ok(self.range_root(0, size))
    }

    /// The inclusion proof of leaf `index` in the tree of the first `size` leaves.
    pub fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash>, ProofError> {
        self.check_size(size)?;
        inclusion_nodes(index, size, |start, end| self.range_root(start, end))
    }

    /// The consistency proof between the trees of the first `size1` and `size2` leaves.
    pub fn consistency_proof(&self, size1: u64, size2: u64) -> Result<Vec<Hash>, ProofError> {
        self.check_size(size2)?;
        consistency_nodes(size1, size2, |start, end| self.range_root(start, end))
    }

    fn check_size(&self, size: u64) -> Result<(), ProofError> {
        if size > self.size() {
            return Err(ProofError::SizeOutOfRange {
                size,
                available: self.size(),
            });
        }
        Ok(())
    }

    /// MTH of leaves `[start, end)`, where `start` is a multiple of a power of two that is at
    /// least `end - start` (true of every node of a proof). The range splits into perfect
    /// subtrees of strictly falling size, each stored, then folded right to left.
    fn range_root(&self, start: u64, end: u64) -> Hash {
        let mut parts: Vec<Hash> = Vec::with_capacity(64);
        let mut pos = start;
        while pos < end {
            let level = 63 - (end - pos).leading_zeros();
            parts.push(self.levels[level as usize][(pos >> level) as usize]);
            pos += 1 << level;
        }
        let mut iter = parts.iter().rev();
        match iter.next() {
            None => empty_root(),
            Some(last) => iter.fold(*last, |acc, left| node_hash(left, &acc)),
        }
    }
}

/// The inclusion proof of leaf `index` in the tree over the first `size` of `leaf_hashes`
/// (RFC 9162 §2.1.3.1), hashes ordered from the leaf upward.
pub fn inclusion_proof(
    leaf_hashes: &[Hash],
    index: u64,
    size: u64,
) -> Result<Vec<Hash>, ProofError> {
    check_available(leaf_hashes, size)?;
    inclusion_nodes(index, size, |start, end| {
        root(&leaf_hashes[start as usize..end as usize])
    })
}

/// The consistency proof from the tree over the first `size1` of `leaf_hashes` to the tree over
/// the first `size2` (RFC 9162 §2.1.4.1). Empty when the sizes are equal; an error when `size1`
/// is 0 or larger than `size2`.
pub fn consistency_proof(
    leaf_hashes: &[Hash],
    size1: u64,
    size2: u64,
) -> Result<Vec<Hash>, ProofError> {
    check_available(leaf_hashes, size2)?;
    consistency_nodes(size1, size2, |start, end| {
        root(&leaf_hashes[start as usize..end as usize])
    })
}

fn check_available(leaf_hashes: &[Hash], size: u64) -> Result<(), ProofError> {
    let available = leaf_hashes.len() as u64;
    if size > available {
        return Err(ProofError::SizeOutOfRange { size, available });
    }
    Ok(())
}

/// Siblings of the node `(level, index)` on its way up to the root of a tree of `size` leaves,
/// each given by `subtree(start, end)`.
fn siblings(
    mut level: u32,
    index: u64,
    size: u64,
    out: &mut Vec<Hash>,
    subtree: &impl Fn(u64, u64) -> Hash,
) {
    // size ≥ 1 here; the loop climbs until the node is the root (covers leaf size − 1).
    while (size - 1) >> level != 0 {
        let sibling = (index >> level) ^ 1;
        let start = sibling << level;
        // A right sibling that starts past the end does not exist: the node is promoted.
        if start < size {
            let end = start.saturating_add(1 << level).min(size);
            out.push(subtree(start, end));
        }
        level += 1;
    }
}

fn inclusion_nodes(
    index: u64,
    size: u64,
    subtree: impl Fn(u64, u64) -> Hash,
) -> Result<Vec<Hash>, ProofError> {
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    let mut out = Vec::with_capacity(64);
    siblings(0, index, size, &mut out, &subtree);
    Ok(out)
}

fn consistency_nodes(
    size1: u64,
    size2: u64,
    subtree: impl Fn(u64, u64) -> Hash,
) -> Result<Vec<Hash>, ProofError> {
    check_sizes(size1, size2)?;
    let mut out = Vec::with_capacity(64);
    if size1 == size2 {
        return Ok(out);
    }
    // The old tree's last perfect subtree is the node at level trailing_zeros(size1) holding
    // leaf size1 − 1. Unless it is the whole old tree (size1 a power of two, whose root the
    // verifier already has), it opens the proof; then come its siblings in the new tree.
    let level = size1.trailing_zeros();
    let last = size1 - 1;
    if !size1.is_power_of_two() {
        let start = (last >> level) << level;
        out.push(subtree(start, size1));
    }
    siblings(level, last, size2, &mut out, &subtree);
    Ok(out)
}

fn check_sizes(size1: u64, size2: u64) -> Result<(), ProofError> {
    if size1 == 0 {
        return Err(ProofError::EmptyOldTree);
    }
    if size1 > size2 {
        return Err(ProofError::Shrinking { size1, size2 });
    }
    Ok(())
}

/// Verifies that `leaf_hash` is leaf `index` of the tree of `size` leaves with root `root`
/// (RFC 9162 §2.1.3.2).
///
/// The proof binds `size` only through `root` (the same hashes can prove leaf 0 in trees of 3
/// and 4 leaves against the 3-leaf root), so take both from one signed checkpoint.
pub fn verify_inclusion(
    index: u64,
    size: u64,
    leaf_hash: &Hash,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), ProofError> {
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    let want = inclusion_len(index, size);
    if proof.len() != want {
        return Err(ProofError::Length {
            got: proof.len(),
            want,
        });
    }
    let (mut fn_, mut sn) = (index, size - 1);
    let mut r = *leaf_hash;
    for p in proof {
        if sn == 0 {
            return Err(ProofError::Mismatch);
        }
        if fn_ & 1 == 1 || fn_ == sn {
            r = node_hash(p, &r);
            while fn_ & 1 == 0 && fn_ != 0 {
                fn_ >>= 1;
                sn >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    if sn == 0 && r == *root {
        Ok(())
    } else {
        Err(ProofError::Mismatch)
    }
}

/// The exact length of an inclusion proof: the levels where the leaf's path and the tree's
/// last leaf's path differ (`inner`), plus the left siblings above them (`border`).
fn inclusion_len(index: u64, size: u64) -> usize {
    let inner = 64 - (index ^ (size - 1)).leading_zeros();
    // `inner` may be 64, where a plain shift would overflow.
    let border = index.checked_shr(inner).unwrap_or(0).count_ones();
    (inner + border) as usize
}

/// Verifies that the tree of `size2` leaves with root `root2` extends the tree of `size1`
/// leaves with root `root1` (RFC 9162 §2.1.4.2).
///
/// Equal sizes need an empty proof and byte-equal roots. `size1 = 0` is refused.
pub fn verify_consistency(
    size1: u64,
    size2: u64,
    root1: &Hash,
    root2: &Hash,
    proof: &[Hash],
) -> Result<(), ProofError> {
    check_sizes(size1, size2)?;
    if size1 == size2 {
        if !proof.is_empty() {
            return Err(ProofError::Length {
                got: proof.len(),
                want: 0,
            });
        }
        return if root1 == root2 {
            Ok(())
        } else {
            Err(ProofError::Mismatch)
        };
    }
    let want = consistency_len(size1, size2);
    if proof.len() != want {
        return Err(ProofError::Length {
            got: proof.len(),
            want,
        });
    }
    // When size1 is a power of two its root is the implied first hash of the path.
    let (seed, rest) = if size1.is_power_of_two() {
        (root1, proof)
    } else {
        match proof.split_first() {
            Some((first, rest)) => (first, rest),
            // consistency_len is ≥ 1 for a non power of two; a zero length was refused above.
            None => return Err(ProofError::Length { got: 0, want }),
        }
    };
    let (mut fn_, mut sn) = (size1 - 1, size2 - 1);
    while fn_ & 1 == 1 {
        fn_ >>= 1;
        sn >>= 1;
    }
    let (mut fr, mut sr) = (*seed, *seed);
    for c in rest {
        if sn == 0 {
            return Err(ProofError::Mismatch);
        }
        if fn_ & 1 == 1 || fn_ == sn {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            while fn_ & 1 == 0 && fn_ != 0 {
                fn_ >>= 1;
                sn >>= 1;
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    if sn != 0 {
        return Err(ProofError::Mismatch);
    }
    if fr != *root1 {
        return Err(ProofError::OldRootMismatch);
    }
    if sr != *root2 {
        return Err(ProofError::Mismatch);
    }
    Ok(())
}

/// The exact length of a consistency proof for `0 < size1 < size2`: the inclusion proof of leaf
/// `size1 − 1` without the levels inside the old tree's last perfect subtree, plus that
/// subtree's root unless it is the whole old tree.
fn consistency_len(size1: u64, size2: u64) -> usize {
    let last = size1 - 1;
    let inner = 64 - (last ^ (size2 - 1)).leading_zeros();
    let border = last.checked_shr(inner).unwrap_or(0).count_ones();
    // For size1 < size2, trailing_zeros(size1) < inner: the paths split above that subtree.
    let shift = size1.trailing_zeros().min(inner);
    let seed = u32::from(!size1.is_power_of_two());
    (seed + inner - shift + border) as usize
}

/// Hashes as lowercase hex strings in JSON.
mod hex_hashes {
    use serde::de::Error as _;
    use serde::{Deserialize, Deserializer, Serializer};

    use super::Hash;

    pub(super) fn serialize<S: Serializer>(hashes: &[Hash], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(hashes.iter().map(super::to_hex))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Hash>, D::Error> {
        let texts = Vec::<String>::deserialize(d)?;
        texts
            .iter()
            .map(|t| {
                super::from_hex(t).ok_or_else(|| D::Error::custom("hash is not 64 hex digits"))
            })
            .collect()
    }
}

/// Lowercase hex of a hash.
pub fn to_hex(hash: &Hash) -> String {
    use std::fmt::Write as _;
    hash.iter().fold(String::with_capacity(64), |mut s, b| {
        // Writing to a String cannot fail.
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// Parses 64 hex digits (either case) into a hash.
pub fn from_hex(text: &str) -> Option<Hash> {
    let bytes = text.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in bytes.chunks_exact(2).enumerate() {
        let digit = |c: u8| (c as char).to_digit(16);
        out[i] = (digit(pair[0])? * 16 + digit(pair[1])?) as u8;
    }
    Some(out)
}

#[cfg(test)]
mod tests;
