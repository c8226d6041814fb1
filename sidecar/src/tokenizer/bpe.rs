//! OpenAI's byte-pair encodings held compactly, for counting only.
//!
//! tiktoken-rs's `CoreBPE` keeps every token as its own heap allocation three times over
//! (encoder, decoder, sorted list): about 47 MiB resident for o200k_base. A count needs only the
//! rank of a byte string, so the tokens stay where the build put them (read-only data in the
//! binary, end to end in rank order; see `build.rs`) and the only heap is an index of ranks keyed
//! by those bytes, about 1 MiB. Pre-tokenizing uses tiktoken's own patterns and the merge is
//! tiktoken's `byte_pair_merge`, so the counts are tiktoken's (the tests compare them).

use std::{collections::BinaryHeap, fmt, hash::BuildHasher as _};

use fancy_regex::Regex;
use hashbrown::{DefaultHashBuilder, HashTable};

/// A token's rank: its id, and its priority in merges (lower merges first).
type Rank = u32;

/// Pieces this long or longer merge with a heap (tiktoken's threshold): the scan that serves
/// short pieces best costs the square of the length.
const LARGE_PIECE: usize = 100;

/// tiktoken's cl100k_base pre-tokenizing pattern (tiktoken-rs publishes only o200k_base's).
const CL100K_BASE_PATTERN: &str = "'(?i:[sdmt]|ll|ve|re)|[^\\r\\n\\p{L}\\p{N}]?+\\p{L}++|\\p{N}{1,3}+| ?[^\\s\\p{L}\\p{N}]++[\\r\\n]*+|\\s++$|\\s*[\\r\\n]|\\s+(?!\\S)|\\s";

/// o200k_base (GPT-4o, GPT-4.1, GPT-5, o-series), from the table built in.
pub fn o200k_base() -> Result<Encoding, LoadError> {
    Encoding::load(
        "o200k_base",
        include_bytes!(concat!(env!("OUT_DIR"), "/o200k_base.ranks")),
        tiktoken_rs::O200K_BASE_PAT_STR,
    )
}

/// cl100k_base (GPT-4, GPT-3.5, text-embedding-3), from the table built in.
pub fn cl100k_base() -> Result<Encoding, LoadError> {
    Encoding::load(
        "cl100k_base",
        include_bytes!(concat!(env!("OUT_DIR"), "/cl100k_base.ranks")),
        CL100K_BASE_PATTERN,
    )
}

/// Why an encoding built into this binary could not be loaded: a build defect, never input.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The table `build.rs` wrote does not have the shape it should.
    #[error("the token table built in for {0} is malformed")]
    Table(&'static str),
    /// The pre-tokenizing pattern did not compile.
    #[error("the pre-tokenizing pattern of {name} does not compile: {source}")]
    Pattern {
        /// The encoding.
        name: &'static str,
        /// What the regex compiler said.
        source: Box<fancy_regex::Error>,
    },
}

/// Why a text could not be counted exactly.
#[derive(Debug, thiserror::Error)]
#[error("pre-tokenizing failed: {0}")]
pub struct CountError(#[from] Box<fancy_regex::Error>);

/// One encoding: its tokens, an index from bytes to rank, and its pre-tokenizing pattern.
pub struct Encoding {
    /// Its name (`o200k_base`).
    name: &'static str,
    /// Every token's bytes end to end, in rank order.
    tokens: &'static [u8],
    /// Where each rank's token ends in `tokens`: little-endian u32s, one per rank.
    ends: &'static [u8],
    /// Ranks, found by their token's bytes.
    index: HashTable<Rank>,
    hasher: DefaultHashBuilder,
    pattern: Regex,
}

impl fmt::Debug for Encoding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Encoding")
            .field("name", &self.name)
            .field("tokens", &self.index.len())
            .finish_non_exhaustive()
    }
}

impl Encoding {
    /// Loads the encoding `name` from its table (`build.rs`'s layout) and tiktoken's pattern.
    pub fn load(name: &'static str, table: &'static [u8], pattern: &str) -> Result<Self, LoadError> {
        let malformed = || LoadError::Table(name);
        let (count, rest) = table.split_first_chunk::<4>().ok_or_else(malformed)?;
        let count = u32::from_le_bytes(*count) as usize;
        let (ends, tokens) = rest.split_at_checked(count * 4).ok_or_else(malformed)?;
        let pattern = Regex::new(pattern).map_err(|e| LoadError::Pattern {
            name,
            source: Box::new(e),
        })?;
        let ranks = Rank::try_from(count).map_err(|_| malformed())?;
        let mut start = 0;
        for rank in 0..ranks {
            let end = end(ends, rank);
            if end <= start || end > tokens.len() {
                return Err(malformed());
            }
            start = end;
        }
        if start != tokens.len() {
            return Err(malformed());
        }
        let hasher = DefaultHashBuilder::default();
        let token = |rank| token(tokens, ends, rank);
        let mut index = HashTable::with_capacity(count);
        for rank in 0..ranks {
            let bytes = token(rank);
            let hash = hasher.hash_one(bytes);
            if index.find(hash, |&r| token(r) == bytes).is_some() {
                return Err(malformed());
            }
            index.insert_unique(hash, rank, |&r| hasher.hash_one(token(r)));
        }
        Ok(Self {
            name,
            tokens,
            ends,
            index,
            hasher,
            pattern,
        })
    }

    /// The tokens of `text` as tiktoken's `encode_ordinary` gives them, counted.
    pub fn count(&self, text: &str) -> Result<u64, CountError> {
        let mut count = 0u64;
        for piece in self.pattern.find_iter(text) {
            let piece = piece.map_err(Box::new)?.as_str().as_bytes();
            count += self.count_piece(piece) as u64;
        }
        Ok(count)
    }

    /// The rank of the token whose bytes are `bytes`, if one is.
    fn rank(&self, bytes: &[u8]) -> Option<Rank> {
        let hash = self.hasher.hash_one(bytes);
        self.index.find(hash, |&r| self.token(r) == bytes).copied()
    }

    fn token(&self, rank: Rank) -> &'static [u8] {
        token(self.tokens, self.ends, rank)
    }

    /// Tokens of one pre-tokenized piece: one if it is a token, else what the merges leave.
    fn count_piece(&self, piece: &[u8]) -> usize {
        if piece.len() < 2 || self.rank(piece).is_some() {
            return 1;
        }
        if piece.len() < LARGE_PIECE {
            self.merge_small(piece)
        } else {
            self.merge_large(piece)
        }
    }

    /// tiktoken's `_byte_pair_merge`: repeatedly merges the adjacent pair of lowest rank (the
    /// leftmost of equals) and returns how many parts remain.
    fn merge_small(&self, piece: &[u8]) -> usize {
        let rank_of = |bytes: &[u8]| self.rank(bytes).unwrap_or(Rank::MAX);
        // (start, rank of the part starting here merged with the next one).
        let mut parts: Vec<(usize, Rank)> = Vec::with_capacity(piece.len() + 1);
        let mut min = (Rank::MAX, usize::MAX);
        for i in 0..piece.len() - 1 {
            let rank = rank_of(&piece[i..i + 2]);
            if rank < min.0 {
                min = (rank, i);
            }
            parts.push((i, rank));
        }
        parts.push((piece.len() - 1, Rank::MAX));
        parts.push((piece.len(), Rank::MAX));
        // The rank of parts i and i + 1 merged, once the part at i + 1 is about to go.
        let rank_after = |parts: &[(usize, Rank)], i: usize| match (parts.get(i), parts.get(i + 3)) {
            (Some(&(start, _)), Some(&(end, _))) => rank_of(&piece[start..end]),
            _ => Rank::MAX,
        };
        while min.0 != Rank::MAX {
            let i = min.1;
            if i > 0 {
                parts[i - 1].1 = rank_after(&parts, i - 1);
            }
            parts[i].1 = rank_after(&parts, i);
            parts.remove(i + 1);
            min = (Rank::MAX, usize::MAX);
            for (i, &(_, rank)) in parts[..parts.len() - 1].iter().enumerate() {
                if rank < min.0 {
                    min = (rank, i);
                }
            }
        }
        parts.len() - 1
    }

    /// tiktoken's `_byte_pair_merge_large`: the same merges in the same order, kept in a heap.
    fn merge_large(&self, piece: &[u8]) -> usize {
        let mut state = Vec::with_capacity(piece.len());
        state.push(Part {
            prev: usize::MAX,
            end: 1,
            next_end: 2,
            next_rank: Rank::MAX,
        });
        let mut heap = BinaryHeap::with_capacity(piece.len());
        for i in 0..piece.len() - 1 {
            if let Some(rank) = self.rank(&piece[i..i + 2]) {
                heap.push(Merge { start: i, rank });
                state[i].next_rank = rank;
            }
            state.push(Part {
                prev: i,
                end: i + 2,
                next_end: i + 3,
                next_rank: Rank::MAX,
            });
        }
        // The merge of the part at `start` with the one ending at `next_end`, if it is a token.
        let potential = |state: &mut [Part], heap: &mut BinaryHeap<Merge>, start: usize, next_end: usize| {
            state[start].next_end = next_end;
            state[start].next_rank = Rank::MAX;
            if next_end <= piece.len()
                && let Some(rank) = self.rank(&piece[start..next_end])
            {
                heap.push(Merge { start, rank });
                state[start].next_rank = rank;
            }
        };
        while let Some(left) = heap.pop() {
            if left.rank == Rank::MAX {
                break;
            }
            if left.rank != state[left.start].next_rank {
                continue; // Invalidated by an earlier merge.
            }
            let left_start = left.start;
            let right_start = state[left_start].end;
            let right_end = state[left_start].next_end;
            let right_next_end = state[right_start].next_end;
            state[left_start].end = right_end;
            potential(&mut state, &mut heap, left_start, right_next_end);
            if right_end < state.len() {
                state[right_end].prev = left_start;
            }
            if left_start > 0 {
                let prev_start = state[left_start].prev;
                potential(&mut state, &mut heap, prev_start, right_end);
            }
            state[right_start].next_rank = Rank::MAX;
        }
        let (mut parts, mut i) = (0, 0);
        while i < state.len() {
            parts += 1;
            i = state[i].end;
        }
        parts
    }
}

/// A part of a piece being merged (`merge_large`), linked to its neighbours.
struct Part {
    prev: usize,
    end: usize,
    next_end: usize,
    next_rank: Rank,
}

/// A candidate merge: the part at `start` with the next one, giving the token `rank`.
#[derive(PartialEq, Eq)]
struct Merge {
    start: usize,
    rank: Rank,
}

impl Ord for Merge {
    /// The max-heap pops the lowest rank first, the leftmost of equals.
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        other.rank.cmp(&self.rank).then_with(|| other.start.cmp(&self.start))
    }
}

impl PartialOrd for Merge {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// Where token `rank` ends in the tokens (0 past the table, which `Encoding::load` rules out).
fn end(ends: &[u8], rank: Rank) -> usize {
    let at = rank as usize * 4;
    ends.get(at..at + 4)
        .and_then(|b| b.try_into().ok())
        .map_or(0, |b| u32::from_le_bytes(b) as usize)
}

/// The bytes of token `rank`: from where the previous rank ends to where it ends.
fn token(tokens: &'static [u8], ends: &[u8], rank: Rank) -> &'static [u8] {
    let start = rank.checked_sub(1).map_or(0, |prev| end(ends, prev));
    tokens.get(start..end(ends, rank)).unwrap_or_default()
}

#[cfg(test)]
mod tests;
