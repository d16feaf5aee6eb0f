//! Norwegian national identity numbers (fødselsnummer, D-nummer, H-nummer and
//! synthetic test numbers), SPEC §5.

use std::fmt;

use time::{Date, Month};

/// An 11-digit national identity number with valid control digits and a real
/// birth date. Debug shows only the birth-date part's kind, never the number.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Nin(String);

/// Which kind of number it is, from the offsets on day and month.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NinKind {
    /// Ordinary fødselsnummer.
    Birth,
    /// D-number: day + 40.
    D,
    /// H-number: month + 40.
    H,
    /// Synthetic test number: month + 80 (Tenor and similar).
    Synthetic,
}

/// Whether synthetic test numbers are accepted (sandbox mode only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NinPolicy {
    RealOnly,
    AllowSynthetic,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NinError {
    #[error("a national identity number has exactly 11 digits")]
    Format,
    #[error("the national identity number's control digits are wrong")]
    ControlDigits,
    #[error("the national identity number does not contain a valid birth date")]
    BirthDate,
    #[error("synthetic test numbers are accepted only in sandbox mode")]
    SyntheticNotAllowed,
}

const K1: [u32; 9] = [3, 7, 6, 1, 8, 9, 4, 5, 2];
const K2: [u32; 10] = [5, 4, 3, 2, 7, 6, 5, 4, 3, 2];

fn control(digits: &[u32], weights: &[u32]) -> Option<u32> {
    let sum: u32 = digits.iter().zip(weights).map(|(d, w)| d * w).sum();
    match 11 - sum % 11 {
        11 => Some(0),
        10 => None,
        k => Some(k),
    }
}

/// The century from the individual number (digits 7–9) and the two-digit year.
fn full_year(individual: u32, yy: u32) -> Option<i32> {
    let century = match (individual, yy) {
        (0..=499, _) => 1900,
        (500..=749, 54..=99) => 1800,
        (500..=999, 0..=39) => 2000,
        (900..=999, 40..=99) => 1900,
        _ => return None,
    };
    i32::try_from(century + yy).ok()
}

impl Nin {
    pub fn parse(input: &str, policy: NinPolicy) -> Result<Self, NinError> {
        if input.len() != 11 || !input.bytes().all(|b| b.is_ascii_digit()) {
            return Err(NinError::Format);
        }
        let d: Vec<u32> = input.bytes().map(|b| u32::from(b - b'0')).collect();
        if control(&d[..9], &K1) != Some(d[9]) || control(&d[..10], &K2) != Some(d[10]) {
            return Err(NinError::ControlDigits);
        }
        let (day, month) = (d[0] * 10 + d[1], d[2] * 10 + d[3]);
        let (day, month, kind) = match (day, month) {
            (41..=71, m) if m <= 12 => (day - 40, m, NinKind::D),
            (_, 41..=52) => (day, month - 40, NinKind::H),
            (_, 81..=92) => (day, month - 80, NinKind::Synthetic),
            _ => (day, month, NinKind::Birth),
        };
        let yy = d[4] * 10 + d[5];
        let individual = d[6] * 100 + d[7] * 10 + d[8];
        let year = full_year(individual, yy).ok_or(NinError::BirthDate)?;
        let month = u8::try_from(month)
            .ok()
            .and_then(|m| Month::try_from(m).ok())
            .ok_or(NinError::BirthDate)?;
        let day = u8::try_from(day).map_err(|_| NinError::BirthDate)?;
        Date::from_calendar_date(year, month, day).map_err(|_| NinError::BirthDate)?;
        if kind == NinKind::Synthetic && policy == NinPolicy::RealOnly {
            return Err(NinError::SyntheticNotAllowed);
        }
        Ok(Self(input.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn kind(&self) -> NinKind {
        let day = &self.0[0..2];
        let month = &self.0[2..4];
        match (day.as_bytes()[0], month.as_bytes()[0]) {
            (b'4'..=b'7', _) => NinKind::D,
            (_, b'4' | b'5') => NinKind::H,
            (_, b'8' | b'9') => NinKind::Synthetic,
            _ => NinKind::Birth,
        }
    }
}

impl fmt::Display for Nin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Nin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Nin({:?}, ******)", self.kind())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SANDBOX: NinPolicy = NinPolicy::AllowSynthetic;

    #[test]
    fn accepts_the_sandbox_people_and_other_synthetic_numbers_in_sandbox_mode() {
        for n in ["14842249091", "29868099311", "12829499914"] {
            let nin = Nin::parse(n, SANDBOX).unwrap();
            assert_eq!(nin.kind(), NinKind::Synthetic, "{n}");
            assert_eq!(
                Nin::parse(n, NinPolicy::RealOnly),
                Err(NinError::SyntheticNotAllowed)
            );
        }
    }

    #[test]
    fn accepts_birth_d_and_h_numbers() {
        // Generated with valid control digits.
        assert_eq!(
            Nin::parse("01010100050", NinPolicy::RealOnly).map(|n| n.kind()),
            Ok(NinKind::Birth)
        );
        assert_eq!(
            Nin::parse("41010100044", NinPolicy::RealOnly).map(|n| n.kind()),
            Ok(NinKind::D)
        );
        assert_eq!(
            Nin::parse("01410100033", NinPolicy::RealOnly).map(|n| n.kind()),
            Ok(NinKind::H)
        );
    }

    #[test]
    fn refuses_bad_format_control_digits_and_dates() {
        assert_eq!(Nin::parse("1484224909", SANDBOX), Err(NinError::Format));
        assert_eq!(Nin::parse("148422490911", SANDBOX), Err(NinError::Format));
        assert_eq!(Nin::parse("1484224909a", SANDBOX), Err(NinError::Format));
        assert_eq!(
            Nin::parse("14842249092", SANDBOX),
            Err(NinError::ControlDigits)
        );
        assert_eq!(
            Nin::parse("01017012345", SANDBOX),
            Err(NinError::ControlDigits)
        );
        // 31 February, with valid control digits.
        assert_eq!(Nin::parse("31020100063", SANDBOX), Err(NinError::BirthDate));
    }

    #[test]
    fn debug_never_shows_the_number() {
        let nin = Nin::parse("14842249091", SANDBOX).unwrap();
        assert!(!format!("{nin:?}").contains("14842249091"));
    }
}
