//! Receipt ids (ULIDs) and timestamps.
//!
//! An id is a ULID: 128 bits, the top 48 the Unix time in milliseconds and the low 80 random,
//! written as 26 Crockford base32 digits, so ids sort by time as plain strings. Within one
//! millisecond the generator increments the random part instead of drawing a new one
//! (monotonic ULIDs), so one log's ids also sort by `seq`. No extra crate: the format is small.

use time::OffsetDateTime;

/// Crockford's base32 alphabet (no I, L, O, U).
const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// The random part's mask (80 bits).
const RANDOM_MASK: u128 = (1 << 80) - 1;

/// Makes monotonic ULIDs.
#[derive(Debug, Default)]
pub struct IdGenerator {
    last_ms: u64,
    last_random: u128,
}

impl IdGenerator {
    /// A generator with no history.
    pub fn new() -> Self {
        Self::default()
    }

    /// The next id at `now_ms` (Unix milliseconds; a clock going backwards reuses the last).
    pub fn next(&mut self, now_ms: u64) -> String {
        let ms = now_ms.max(self.last_ms) & ((1 << 48) - 1);
        let random = if ms == self.last_ms {
            self.last_random + 1
        } else {
            let mut bytes = [0u8; 16];
            rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut bytes[6..]);
            // Keep the top bit clear so 2^79 increments fit in the same millisecond.
            u128::from_be_bytes(bytes) & (RANDOM_MASK >> 1)
        };
        // Overflow of the random part moves to the next millisecond, keeping the order.
        let (ms, random) = if random > RANDOM_MASK {
            (ms + 1, 0)
        } else {
            (ms, random)
        };
        self.last_ms = ms;
        self.last_random = random;
        encode((u128::from(ms) << 80) | random)
    }
}

fn encode(mut value: u128) -> String {
    let mut out = [0u8; 26];
    for slot in out.iter_mut().rev() {
        *slot = ALPHABET[(value & 31) as usize];
        value >>= 5;
    }
    out.iter().map(|b| char::from(*b)).collect()
}

/// Whether `text` is a ULID as written by [`IdGenerator`].
pub(crate) fn is_ulid(text: &str) -> bool {
    text.len() == 26 && text.as_bytes()[0] <= b'7' && text.bytes().all(|b| ALPHABET.contains(&b))
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` (UTC, exactly three fraction digits).
pub fn format_ts(at: OffsetDateTime) -> String {
    let at = at.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second(),
        at.millisecond()
    )
}

/// Milliseconds since the Unix epoch of a timestamp in the [`format_ts`] form.
pub fn ts_millis(text: &str) -> Option<i64> {
    if !is_ts(text) {
        return None;
    }
    let at = OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).ok()?;
    i64::try_from(at.unix_timestamp_nanos() / 1_000_000).ok()
}

/// Whether `text` is a timestamp in the [`format_ts`] form denoting a real instant.
pub(crate) fn is_ts(text: &str) -> bool {
    let b = text.as_bytes();
    let shape = b.len() == 24
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            10 => *c == b'T',
            13 | 16 => *c == b':',
            19 => *c == b'.',
            23 => *c == b'Z',
            _ => c.is_ascii_digit(),
        });
    shape && OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_ulids_and_sort_by_generation_order() {
        let mut ids = IdGenerator::new();
        let mut made = Vec::new();
        for now in [5u64, 5, 5, 9, 9, 3, 1_700_000_000_000] {
            made.push(ids.next(now));
        }
        assert!(made.iter().all(|id| is_ulid(id)), "{made:?}");
        let mut sorted = made.clone();
        sorted.sort();
        assert_eq!(sorted, made, "monotonic even when the clock steps back");
        sorted.dedup();
        assert_eq!(sorted.len(), made.len());
        assert!(
            made[6].starts_with("01HF"),
            "{}: the time is in front",
            made[6]
        );
        assert!(!is_ulid("01HF0000000000000000000000O"));
        assert!(!is_ulid("81HF000000000000000000000"));
    }

    #[test]
    fn random_part_overflow_moves_to_the_next_millisecond() {
        let mut ids = IdGenerator {
            last_ms: 7,
            last_random: RANDOM_MASK,
        };
        let next = ids.next(7);
        assert_eq!((ids.last_ms, ids.last_random), (8, 0));
        assert!(next > encode((7u128 << 80) | RANDOM_MASK));
    }

    #[test]
    fn timestamps_have_three_fraction_digits() {
        let at = time::macros::datetime!(2026-11-22 19:38:20.1 +02:00);
        assert_eq!(format_ts(at), "2026-11-22T17:38:20.100Z");
        assert!(is_ts("2026-11-22T17:38:20.100Z"));
        assert!(!is_ts("2026-11-22T17:38:20.10Z"));
        assert!(!is_ts("2026-11-22T17:38:20.100+00:00"));
        assert!(!is_ts("2026-13-22T17:38:20.100Z"));
    }
}
