//! Norwegian organisation numbers (organisasjonsnummer).

use std::fmt;

/// A 9-digit organisation number whose last digit is a valid mod-11 check digit.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct OrgNumber(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OrgNumberError {
    #[error("an organisation number has exactly 9 digits")]
    Format,
    #[error("the organisation number's check digit is wrong")]
    CheckDigit,
}

const WEIGHTS: [u32; 8] = [3, 2, 7, 6, 5, 4, 3, 2];

impl OrgNumber {
    /// Parses a 9-digit organisation number and checks its mod-11 control digit.
    pub fn parse(input: &str) -> Result<Self, OrgNumberError> {
        let digits: Vec<u32> = input.chars().filter_map(|c| c.to_digit(10)).collect();
        if input.len() != 9 || digits.len() != 9 {
            return Err(OrgNumberError::Format);
        }
        let sum: u32 = digits.iter().zip(WEIGHTS).map(|(d, w)| d * w).sum();
        let check = match 11 - sum % 11 {
            11 => 0,
            10 => return Err(OrgNumberError::CheckDigit),
            c => c,
        };
        if digits[8] != check {
            return Err(OrgNumberError::CheckDigit);
        }
        Ok(Self(input.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for OrgNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_real_organisation_numbers() {
        for n in ["974760673", "923609016", "971526920", "985399077"] {
            assert!(OrgNumber::parse(n).is_ok(), "{n}");
        }
    }

    #[test]
    fn refuses_wrong_check_digit() {
        assert_eq!(
            OrgNumber::parse("974760674"),
            Err(OrgNumberError::CheckDigit)
        );
    }

    #[test]
    fn refuses_wrong_length_and_non_digits() {
        for n in [
            "",
            "97476067",
            "9747606733",
            "97476067a",
            " 74760673",
            "٩٧٤٧٦٠٦٧٣",
        ] {
            assert_eq!(OrgNumber::parse(n), Err(OrgNumberError::Format), "{n}");
        }
    }
}
