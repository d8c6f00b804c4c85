//! Money is an integer number of fen (0.01 yuan); it is shown to people as yuan with two decimals.

use std::fmt;
use std::iter::Sum;
use std::ops::{Add, AddAssign};

use serde::{Deserialize, Serialize};

/// The largest absolute amount a single usage record may carry (docs/contract.md §1).
pub const MAX_RECORD_AMOUNT_FEN: i64 = 1_000_000_000;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Fen(i64);

impl Fen {
    pub const ZERO: Fen = Fen(0);

    pub const fn new(fen: i64) -> Self {
        Fen(fen)
    }

    pub const fn get(self) -> i64 {
        self.0
    }

    pub const fn is_zero(self) -> bool {
        self.0 == 0
    }
}

impl fmt::Display for Fen {
    /// Yuan with two decimals and a leading minus for negatives: `5800` → `58.00`, `-157` → `-1.57`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        write!(f, "{sign}{}.{:02}", abs / 100, abs % 100)
    }
}

impl Add for Fen {
    type Output = Fen;
    fn add(self, rhs: Fen) -> Fen {
        Fen(self.0 + rhs.0)
    }
}

impl AddAssign for Fen {
    fn add_assign(&mut self, rhs: Fen) {
        self.0 += rhs.0;
    }
}

impl Sum for Fen {
    fn sum<I: Iterator<Item = Fen>>(iter: I) -> Fen {
        iter.fold(Fen::ZERO, Add::add)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn amounts_are_shown_as_yuan_with_two_decimals() {
        assert_eq!(Fen::new(5800).to_string(), "58.00");
        assert_eq!(Fen::new(0).to_string(), "0.00");
        assert_eq!(Fen::new(5).to_string(), "0.05");
        assert_eq!(Fen::new(-157).to_string(), "-1.57");
        assert_eq!(Fen::new(-5).to_string(), "-0.05");
        assert_eq!(Fen::new(100_000_000_000).to_string(), "1000000000.00");
        assert_eq!(Fen::new(i64::MIN).to_string(), "-92233720368547758.08");
    }

    proptest! {
        #[test]
        fn the_yuan_text_parses_back_to_the_same_fen(fen in -10_000_000_000_000i64..10_000_000_000_000) {
            let text = Fen::new(fen).to_string();
            let (whole, frac) = text.trim_start_matches('-').split_once('.').unwrap();
            prop_assert_eq!(frac.len(), 2);
            let magnitude = whole.parse::<i64>().unwrap() * 100 + frac.parse::<i64>().unwrap();
            prop_assert_eq!(if text.starts_with('-') { -magnitude } else { magnitude }, fen);
        }

        #[test]
        fn a_sum_does_not_depend_on_the_order_of_amounts(mut amounts in proptest::collection::vec(-MAX_RECORD_AMOUNT_FEN..=MAX_RECORD_AMOUNT_FEN, 0..200)) {
            let forward: Fen = amounts.iter().copied().map(Fen::new).sum();
            amounts.reverse();
            let backward: Fen = amounts.iter().copied().map(Fen::new).sum();
            prop_assert_eq!(forward, backward);
            prop_assert_eq!(forward.get(), amounts.iter().sum::<i64>());
        }
    }
}
