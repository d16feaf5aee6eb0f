//! The debt registry's data (SPEC §7): loans per person and creditor, their
//! wire form in `debt_information`, and the creditors' delivery format.
//!
//! A [`Loan`] serializes to exactly the OpenAPI loan object (`credit_facility`,
//! `repayment_loan` or `charge_cards`) with `"type"` first; the store keeps it
//! as that JSON text and reads it back with [`Loan::from_stored_json`].
//!
//! [`parse_delivery`] reads a creditor's delivery file in one pass and rejects
//! the whole file on the first error, which always carries the line and column
//! where it was found (see [`DeliveryError`]).

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::hash::{BuildHasher, Hasher, RandomState};
use std::io::Read;

use serde::de::{
    self, DeserializeSeed, Deserializer, Error as _, IgnoredAny, MapAccess, SeqAccess, Visitor,
};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::creditor::{CustomerLoans, FinancialInstitutionId};
use crate::domain::{Nin, NinPolicy, OrgNumber};

/// The delivery that seeds sandbox mode; parse it with
/// [`NinPolicy::AllowSynthetic`].
pub const SANDBOX_DELIVERY: &str = include_str!("../sandbox/debt.json");

/// Longest accepted `accountID`, in characters.
pub const MAX_ACCOUNT_ID_CHARS: usize = 100;
/// Longest accepted `financialInstitutionName`, in characters.
pub const MAX_CREDITOR_NAME_CHARS: usize = 200;
/// The ISO 6523 prefix of a Norwegian organisation number in `providerID`.
pub const ISO6523_NORWAY: &str = "9908:";

// ---------------------------------------------------------------------------
// Field values
// ---------------------------------------------------------------------------

/// An amount in øre (NOK × 100), never negative.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Amount(i64);

impl Amount {
    pub fn new(ore: i64) -> Option<Self> {
        (ore >= 0).then_some(Self(ore))
    }

    pub fn ore(self) -> i64 {
        self.0
    }
}

/// An interest rate in hundredths of a percent (10.20 % is 1020), never negative.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Rate(i64);

impl Rate {
    pub fn new(hundredths: i64) -> Option<Self> {
        (hundredths >= 0).then_some(Self(hundredths))
    }

    pub fn hundredths(self) -> i64 {
        self.0
    }
}

/// `coBorrower`: 0, 1 or 2 on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CoBorrower {
    /// 0: no co-borrower.
    No,
    /// 1: this person is the co-borrower.
    IsCoBorrower,
    /// 2: this person has a co-borrower.
    HasCoBorrower,
}

impl CoBorrower {
    pub fn from_code(code: i64) -> Option<Self> {
        match code {
            0 => Some(Self::No),
            1 => Some(Self::IsCoBorrower),
            2 => Some(Self::HasCoBorrower),
            _ => None,
        }
    }

    pub fn code(self) -> i64 {
        match self {
            Self::No => 0,
            Self::IsCoBorrower => 1,
            Self::HasCoBorrower => 2,
        }
    }
}

/// `installmentChargePeriod`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InstallmentChargePeriod {
    Monthly,
    Quarterly,
    HalfYearly,
    Yearly,
}

impl InstallmentChargePeriod {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "MONTHLY" => Some(Self::Monthly),
            "QUARTERLY" => Some(Self::Quarterly),
            "HALF-YEARLY" => Some(Self::HalfYearly),
            "YEARLY" => Some(Self::Yearly),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Monthly => "MONTHLY",
            Self::Quarterly => "QUARTERLY",
            Self::HalfYearly => "HALF-YEARLY",
            Self::Yearly => "YEARLY",
        }
    }
}

/// An RFC 3339 date-time that keeps the creditor's original text for output.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Timestamp {
    original: String,
    at: OffsetDateTime,
}

impl Timestamp {
    pub fn parse(s: &str) -> Result<Self, time::error::Parse> {
        Ok(Self {
            at: OffsetDateTime::parse(s, &Rfc3339)?,
            original: s.to_owned(),
        })
    }

    /// The text exactly as delivered.
    pub fn as_str(&self) -> &str {
        &self.original
    }

    pub fn at(&self) -> OffsetDateTime {
        self.at
    }
}

// ---------------------------------------------------------------------------
// Loans
// ---------------------------------------------------------------------------

/// OpenAPI `credit_facility`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreditFacility {
    pub timestamp: Timestamp,
    pub co_borrower: CoBorrower,
    pub credit_limit: Amount,
    pub interest_bearing_balance: Amount,
    pub non_interest_bearing_balance: Amount,
    pub nominal_interest_rate: Rate,
    pub installment_charges: Amount,
    pub installment_charge_period: InstallmentChargePeriod,
}

/// OpenAPI `repayment_loan`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepaymentLoan {
    pub timestamp: Timestamp,
    pub co_borrower: CoBorrower,
    pub original_balance: Amount,
    pub balance: Amount,
    /// Remaining terms, in months.
    pub terms: u32,
    pub nominal_interest_rate: Rate,
    pub installment_charges: Amount,
    pub installment_charge_period: InstallmentChargePeriod,
}

/// OpenAPI `charge_cards`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChargeCard {
    pub timestamp: Timestamp,
    pub co_borrower: CoBorrower,
    pub interest_bearing_balance: Amount,
    pub non_interest_bearing_balance: Amount,
}

/// One loan as it appears in `debt_information.loans[].loan`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Loan {
    CreditFacility(CreditFacility),
    RepaymentLoan(RepaymentLoan),
    ChargeCard(ChargeCard),
}

const LOAN_TYPES: &str = "creditFacility, repaymentLoan, chargeCard";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LoanType {
    CreditFacility,
    RepaymentLoan,
    ChargeCard,
}

impl LoanType {
    fn parse(s: &str) -> Option<Self> {
        match s {
            "creditFacility" => Some(Self::CreditFacility),
            "repaymentLoan" => Some(Self::RepaymentLoan),
            "chargeCard" => Some(Self::ChargeCard),
            _ => None,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Self::CreditFacility => "creditFacility",
            Self::RepaymentLoan => "repaymentLoan",
            Self::ChargeCard => "chargeCard",
        }
    }
}

/// A field value on the wire.
enum Wire<'a> {
    Int(i64),
    Str(&'a str),
}

impl Serialize for Wire<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Wire::Int(n) => serializer.serialize_i64(*n),
            Wire::Str(s) => serializer.serialize_str(s),
        }
    }
}

impl Loan {
    /// The wire `type`: `creditFacility`, `repaymentLoan` or `chargeCard`.
    pub fn type_name(&self) -> &'static str {
        self.loan_type().as_str()
    }

    fn loan_type(&self) -> LoanType {
        match self {
            Loan::CreditFacility(_) => LoanType::CreditFacility,
            Loan::RepaymentLoan(_) => LoanType::RepaymentLoan,
            Loan::ChargeCard(_) => LoanType::ChargeCard,
        }
    }

    /// The wire fields after `type`, in the OpenAPI schema's order.
    fn wire_fields(&self) -> Vec<(&'static str, Wire<'_>)> {
        use Wire::{Int, Str};
        match self {
            Loan::CreditFacility(l) => vec![
                ("timestamp", Str(l.timestamp.as_str())),
                ("coBorrower", Int(l.co_borrower.code())),
                ("creditLimit", Int(l.credit_limit.ore())),
                (
                    "interestBearingBalance",
                    Int(l.interest_bearing_balance.ore()),
                ),
                (
                    "nonInterestBearingBalance",
                    Int(l.non_interest_bearing_balance.ore()),
                ),
                (
                    "nominalInterestRate",
                    Int(l.nominal_interest_rate.hundredths()),
                ),
                ("installmentCharges", Int(l.installment_charges.ore())),
                (
                    "installmentChargePeriod",
                    Str(l.installment_charge_period.as_str()),
                ),
            ],
            Loan::RepaymentLoan(l) => vec![
                ("timestamp", Str(l.timestamp.as_str())),
                ("coBorrower", Int(l.co_borrower.code())),
                ("originalBalance", Int(l.original_balance.ore())),
                ("balance", Int(l.balance.ore())),
                ("terms", Int(i64::from(l.terms))),
                (
                    "nominalInterestRate",
                    Int(l.nominal_interest_rate.hundredths()),
                ),
                ("installmentCharges", Int(l.installment_charges.ore())),
                (
                    "installmentChargePeriod",
                    Str(l.installment_charge_period.as_str()),
                ),
            ],
            Loan::ChargeCard(l) => vec![
                ("timestamp", Str(l.timestamp.as_str())),
                ("coBorrower", Int(l.co_borrower.code())),
                (
                    "interestBearingBalance",
                    Int(l.interest_bearing_balance.ore()),
                ),
                (
                    "nonInterestBearingBalance",
                    Int(l.non_interest_bearing_balance.ore()),
                ),
            ],
        }
    }

    /// The OpenAPI loan object. (A `serde_json::Value` keeps its keys sorted
    /// unless serde_json's `preserve_order` is on; serializing the `Loan`
    /// itself always puts `type` first.)
    pub fn to_json(&self) -> Value {
        let mut map = Map::new();
        map.insert("type".to_owned(), Value::from(self.type_name()));
        for (name, value) in self.wire_fields() {
            let value = match value {
                Wire::Int(n) => Value::from(n),
                Wire::Str(s) => Value::from(s),
            };
            map.insert(name.to_owned(), value);
        }
        Value::Object(map)
    }

    /// The JSON text the store keeps, `type` first.
    pub fn to_stored_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| self.to_json().to_string())
    }

    /// Reads back what [`Loan::to_stored_json`] (or `to_json`) produced,
    /// validating every field as the delivery parser does.
    pub fn from_stored_json(s: &str) -> Result<Loan, serde_json::Error> {
        serde_json::from_str(s)
    }
}

impl Serialize for Loan {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let fields = self.wire_fields();
        let mut map = serializer.serialize_map(Some(fields.len() + 1))?;
        map.serialize_entry("type", self.type_name())?;
        for (name, value) in &fields {
            map.serialize_entry(name, value)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for Loan {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer
            .deserialize_map(LoanVisitor { accounts: None })
            .map(|(_, loan)| loan)
    }
}

// ---------------------------------------------------------------------------
// Scalar fields with positioned, named errors
// ---------------------------------------------------------------------------

/// A JSON value as met where a scalar was expected.
enum Scalar {
    Null,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(String),
    Array,
    Object,
}

impl Scalar {
    /// The kind only, for fields whose value must not be echoed.
    fn kind(&self) -> &'static str {
        match self {
            Scalar::Null => "null",
            Scalar::Bool(_) => "a boolean",
            Scalar::Int(_) | Scalar::Float(_) => "a number",
            Scalar::Str(_) => "a string",
            Scalar::Array => "an array",
            Scalar::Object => "an object",
        }
    }
}

impl fmt::Display for Scalar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scalar::Null => f.write_str("null"),
            Scalar::Bool(b) => write!(f, "{b}"),
            Scalar::Int(n) => write!(f, "{n}"),
            Scalar::Float(x) => write!(f, "{x}"),
            Scalar::Str(s) if s.chars().count() > 40 => {
                let head: String = s.chars().take(40).collect();
                write!(f, "{head:?}…")
            }
            Scalar::Str(s) => write!(f, "{s:?}"),
            Scalar::Array | Scalar::Object => f.write_str(self.kind()),
        }
    }
}

/// Deserializes one value and hands it to `parse`; a refusal becomes
/// `"<field>: <message>"`, raised inside serde_json's own call so that it gets
/// the value's position.
struct ScalarSeed<F> {
    field: &'static str,
    parse: F,
}

impl<T, F: FnOnce(Scalar) -> Result<T, String>> ScalarSeed<F> {
    fn new(field: &'static str, parse: F) -> Self {
        Self { field, parse }
    }

    fn finish<E: de::Error>(self, value: Scalar) -> Result<T, E> {
        (self.parse)(value).map_err(|m| E::custom(format!("{}: {m}", self.field)))
    }
}

impl<'de, T, F: FnOnce(Scalar) -> Result<T, String>> DeserializeSeed<'de> for ScalarSeed<F> {
    type Value = T;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<T, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de, T, F: FnOnce(Scalar) -> Result<T, String>> Visitor<'de> for ScalarSeed<F> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a value for `{}`", self.field)
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<T, E> {
        self.finish(Scalar::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<T, E> {
        self.finish(Scalar::Int(i128::from(v)))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<T, E> {
        self.finish(Scalar::Int(i128::from(v)))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<T, E> {
        self.finish(Scalar::Float(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
        self.finish(Scalar::Str(v.to_owned()))
    }

    fn visit_unit<E: de::Error>(self) -> Result<T, E> {
        self.finish(Scalar::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<T, E> {
        self.finish(Scalar::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<T, A::Error> {
        self.finish(Scalar::Array)
    }

    fn visit_map<A: MapAccess<'de>>(self, _: A) -> Result<T, A::Error> {
        self.finish(Scalar::Object)
    }
}

fn expected<T>(what: &str, got: &Scalar) -> Result<T, String> {
    Err(format!("expected {what}, got {got}"))
}

fn non_negative(value: Scalar, what: &str, max: i64) -> Result<i64, String> {
    match value {
        Scalar::Int(n) if (0..=i128::from(max)).contains(&n) => {
            i64::try_from(n).map_err(|e| e.to_string())
        }
        other => expected(what, &other),
    }
}

fn amount(value: Scalar) -> Result<Amount, String> {
    non_negative(
        value,
        "a whole number of øre (NOK × 100), 0 or more",
        i64::MAX,
    )
    .map(Amount)
}

fn rate(value: Scalar) -> Result<Rate, String> {
    non_negative(
        value,
        "a whole number of hundredths of a percent (10.20 % is 1020), 0 or more",
        i64::MAX,
    )
    .map(Rate)
}

fn terms(value: Scalar) -> Result<u32, String> {
    non_negative(
        value,
        "a whole number of months, 0 or more",
        i64::from(u32::MAX),
    )
    .and_then(|n| u32::try_from(n).map_err(|e| e.to_string()))
}

fn co_borrower(value: Scalar) -> Result<CoBorrower, String> {
    match &value {
        Scalar::Int(n) => i64::try_from(*n).ok().and_then(CoBorrower::from_code),
        _ => None,
    }
    .map_or_else(
        || {
            expected(
                "0 (no co-borrower), 1 (is co-borrower) or 2 (has co-borrower)",
                &value,
            )
        },
        Ok,
    )
}

fn charge_period(value: Scalar) -> Result<InstallmentChargePeriod, String> {
    match &value {
        Scalar::Str(s) => InstallmentChargePeriod::parse(s),
        _ => None,
    }
    .map_or_else(
        || expected("one of MONTHLY, QUARTERLY, HALF-YEARLY, YEARLY", &value),
        Ok,
    )
}

fn timestamp(value: Scalar) -> Result<Timestamp, String> {
    match &value {
        Scalar::Str(s) => Timestamp::parse(s).ok(),
        _ => None,
    }
    .map_or_else(
        || expected("an RFC 3339 date-time such as 2026-11-01T08:00:00Z", &value),
        Ok,
    )
}

fn loan_type(value: Scalar) -> Result<LoanType, String> {
    match &value {
        Scalar::Str(s) => LoanType::parse(s),
        _ => None,
    }
    .map_or_else(|| expected(&format!("one of {LOAN_TYPES}"), &value), Ok)
}

fn account_id(value: Scalar) -> Result<String, String> {
    match value {
        Scalar::Str(s) if !s.trim().is_empty() && s.chars().count() <= MAX_ACCOUNT_ID_CHARS => {
            Ok(s)
        }
        other => expected(
            &format!("a non-empty string of at most {MAX_ACCOUNT_ID_CHARS} characters"),
            &other,
        ),
    }
}

fn provider_id(value: Scalar) -> Result<ProviderId, String> {
    match value {
        Scalar::Str(s) => ProviderId::parse(&s),
        other => expected(
            "an organisation number as a string, \"9908:<9 digits>\" (ISO 6523) or the 9 digits",
            &other,
        ),
    }
}

/// `providerID`: who delivered the data (the institution or its IT
/// provider), as ISO 6523 `9908:<organisation number>` (the documented
/// form) or the plain 9 digits; kept as the 9 digits. The check digit is
/// not verified: the published documentation's own example,
/// `9908:999888777`, fails it, and a bank's file must import unchanged.
/// Only the institutions' `financialInstitutionID`s decide whose loans a
/// delivery holds.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ProviderId(String);

impl ProviderId {
    pub fn parse(input: &str) -> Result<Self, String> {
        let digits = input.strip_prefix(ISO6523_NORWAY).unwrap_or(input);
        if digits.len() == 9 && digits.bytes().all(|b| b.is_ascii_digit()) {
            Ok(Self(digits.to_owned()))
        } else {
            Err(format!(
                "expected \"9908:\" and a 9-digit organisation number (ISO 6523), or the 9 digits, got {:?}",
                input.chars().take(40).collect::<String>()
            ))
        }
    }

    /// The 9 digits.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The ISO 6523 form, `9908:<9 digits>`.
    pub fn iso6523(&self) -> String {
        format!("{ISO6523_NORWAY}{}", self.0)
    }
}

impl From<OrgNumber> for ProviderId {
    fn from(org: OrgNumber) -> Self {
        Self(org.as_str().to_owned())
    }
}

impl fmt::Display for ProviderId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn institution_id(value: Scalar) -> Result<FinancialInstitutionId, String> {
    match value {
        Scalar::Str(s) => FinancialInstitutionId::parse(&s).map_err(|e| e.to_string()),
        other => expected(
            "a 9-digit organisation number or a foreign id of 9 to 16 characters, as a string",
            &other,
        ),
    }
}

fn nin(value: Scalar, policy: NinPolicy) -> Result<Nin, String> {
    match value {
        Scalar::Str(s) => Nin::parse(&s, policy).map_err(|e| e.to_string()),
        // Never echo what may be an identity number.
        other => Err(format!(
            "expected the 11-digit national identity number as a string, got {}",
            other.kind()
        )),
    }
}

/// `financialInstitutionName`: `None` for null (use the default).
fn creditor_name(value: Scalar) -> Result<Option<String>, String> {
    match value {
        Scalar::Null => Ok(None),
        Scalar::Str(s)
            if !s.trim().is_empty() && s.trim().chars().count() <= MAX_CREDITOR_NAME_CHARS =>
        {
            Ok(Some(s.trim().to_owned()))
        }
        other => expected(
            &format!("a name of 1 to {MAX_CREDITOR_NAME_CHARS} characters"),
            &other,
        ),
    }
}

/// Reads the value of `field` into `slot` with `parse`; a second occurrence of
/// the field in the same object is an error.
fn read_field<'de, A, T, F>(
    map: &mut A,
    slot: &mut Option<T>,
    field: &'static str,
    parse: F,
) -> Result<(), A::Error>
where
    A: MapAccess<'de>,
    F: FnOnce(Scalar) -> Result<T, String>,
{
    if slot.is_some() {
        return Err(duplicate_field(field));
    }
    *slot = Some(map.next_value_seed(ScalarSeed::new(field, parse))?);
    Ok(())
}

fn duplicate_field<E: de::Error>(field: &str) -> E {
    E::custom(format!(
        "{field}: the field occurs twice in the same object"
    ))
}

// ---------------------------------------------------------------------------
// Loan objects
// ---------------------------------------------------------------------------

/// The duplicate-`accountID` bookkeeping of a delivery.
struct AccountCheck<'a> {
    /// The customer's `financialInstitutionID`, if it came before `loans`.
    fi: Option<&'a FinancialInstitutionId>,
    /// (financialInstitutionID, accountID) seen so far in the file.
    seen: &'a mut AccountSet,
    /// Account ids of this customer while its financialInstitutionID is unknown.
    this_customer: &'a mut HashSet<String>,
}

/// One loan object. With `accounts` (a delivery) `accountID` is required and
/// checked for duplicates; without (stored JSON) it is ignored.
struct LoanVisitor<'a> {
    accounts: Option<AccountCheck<'a>>,
}

#[derive(Default)]
struct LoanFields {
    kind: Option<LoanType>,
    account_id: Option<String>,
    timestamp: Option<Timestamp>,
    co_borrower: Option<CoBorrower>,
    credit_limit: Option<Amount>,
    interest_bearing_balance: Option<Amount>,
    non_interest_bearing_balance: Option<Amount>,
    nominal_interest_rate: Option<Rate>,
    installment_charges: Option<Amount>,
    installment_charge_period: Option<InstallmentChargePeriod>,
    original_balance: Option<Amount>,
    balance: Option<Amount>,
    terms: Option<u32>,
}

impl<'de> DeserializeSeed<'de> for LoanVisitor<'_> {
    type Value = (Option<String>, Loan);

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for LoanVisitor<'_> {
    type Value = (Option<String>, Loan);

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a loan object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut accounts = self.accounts;
        let mut f = LoanFields::default();
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "type" => read_field(&mut map, &mut f.kind, "type", loan_type)?,
                "timestamp" => read_field(&mut map, &mut f.timestamp, "timestamp", timestamp)?,
                "coBorrower" => {
                    read_field(&mut map, &mut f.co_borrower, "coBorrower", co_borrower)?
                }
                "creditLimit" => read_field(&mut map, &mut f.credit_limit, "creditLimit", amount)?,
                "interestBearingBalance" => read_field(
                    &mut map,
                    &mut f.interest_bearing_balance,
                    "interestBearingBalance",
                    amount,
                )?,
                "nonInterestBearingBalance" => read_field(
                    &mut map,
                    &mut f.non_interest_bearing_balance,
                    "nonInterestBearingBalance",
                    amount,
                )?,
                "nominalInterestRate" => read_field(
                    &mut map,
                    &mut f.nominal_interest_rate,
                    "nominalInterestRate",
                    rate,
                )?,
                "installmentCharges" => read_field(
                    &mut map,
                    &mut f.installment_charges,
                    "installmentCharges",
                    amount,
                )?,
                "installmentChargePeriod" => read_field(
                    &mut map,
                    &mut f.installment_charge_period,
                    "installmentChargePeriod",
                    charge_period,
                )?,
                "originalBalance" => {
                    read_field(&mut map, &mut f.original_balance, "originalBalance", amount)?
                }
                "balance" => read_field(&mut map, &mut f.balance, "balance", amount)?,
                "terms" => read_field(&mut map, &mut f.terms, "terms", terms)?,
                "accountID" if accounts.is_some() => {
                    let Some(check) = accounts.as_mut() else {
                        continue;
                    };
                    let fi = check.fi;
                    let seen = &mut *check.seen;
                    let this_customer = &mut *check.this_customer;
                    read_field(&mut map, &mut f.account_id, "accountID", move |value| {
                        let id = account_id(value)?;
                        let fresh = match fi {
                            Some(fi) => seen.insert(fi, &id),
                            None => this_customer.insert(id.clone()),
                        };
                        if fresh {
                            Ok(id)
                        } else {
                            Err(duplicate_account(&id, fi))
                        }
                    })?;
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        let delivery = accounts.is_some();
        finish_loan(f, delivery)
    }
}

fn duplicate_account(id: &str, fi: Option<&FinancialInstitutionId>) -> String {
    match fi {
        Some(fi) => format!("{id:?} occurs more than once for financialInstitutionID {fi}"),
        None => format!("{id:?} occurs more than once in this customer's loans"),
    }
}

/// Checks that the loan object had every field of its type.
fn finish_loan<E: de::Error>(f: LoanFields, delivery: bool) -> Result<(Option<String>, Loan), E> {
    let whose = match &f.account_id {
        Some(id) => format!("loan object that ends here (accountID {id:?})"),
        None => "loan object that ends here".to_owned(),
    };
    let Some(kind) = f.kind else {
        return Err(E::custom(format!(
            "missing field `type` ({LOAN_TYPES}) in the {whose}"
        )));
    };
    let need = |field: &str| {
        E::custom(format!(
            "missing field `{field}`, which a {} requires, in the {whose}",
            kind.as_str()
        ))
    };
    if delivery && f.account_id.is_none() {
        return Err(need("accountID"));
    }
    let timestamp = f.timestamp.ok_or_else(|| need("timestamp"))?;
    let co_borrower = f.co_borrower.ok_or_else(|| need("coBorrower"))?;
    let loan = match kind {
        LoanType::CreditFacility => Loan::CreditFacility(CreditFacility {
            timestamp,
            co_borrower,
            credit_limit: f.credit_limit.ok_or_else(|| need("creditLimit"))?,
            interest_bearing_balance: f
                .interest_bearing_balance
                .ok_or_else(|| need("interestBearingBalance"))?,
            non_interest_bearing_balance: f
                .non_interest_bearing_balance
                .ok_or_else(|| need("nonInterestBearingBalance"))?,
            nominal_interest_rate: f
                .nominal_interest_rate
                .ok_or_else(|| need("nominalInterestRate"))?,
            installment_charges: f
                .installment_charges
                .ok_or_else(|| need("installmentCharges"))?,
            installment_charge_period: f
                .installment_charge_period
                .ok_or_else(|| need("installmentChargePeriod"))?,
        }),
        LoanType::RepaymentLoan => Loan::RepaymentLoan(RepaymentLoan {
            timestamp,
            co_borrower,
            original_balance: f.original_balance.ok_or_else(|| need("originalBalance"))?,
            balance: f.balance.ok_or_else(|| need("balance"))?,
            terms: f.terms.ok_or_else(|| need("terms"))?,
            nominal_interest_rate: f
                .nominal_interest_rate
                .ok_or_else(|| need("nominalInterestRate"))?,
            installment_charges: f
                .installment_charges
                .ok_or_else(|| need("installmentCharges"))?,
            installment_charge_period: f
                .installment_charge_period
                .ok_or_else(|| need("installmentChargePeriod"))?,
        }),
        LoanType::ChargeCard => Loan::ChargeCard(ChargeCard {
            timestamp,
            co_borrower,
            interest_bearing_balance: f
                .interest_bearing_balance
                .ok_or_else(|| need("interestBearingBalance"))?,
            non_interest_bearing_balance: f
                .non_interest_bearing_balance
                .ok_or_else(|| need("nonInterestBearingBalance"))?,
        }),
    };
    Ok((f.account_id, loan))
}

// ---------------------------------------------------------------------------
// Deliveries
// ---------------------------------------------------------------------------

/// One loan of one person at one creditor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DebtEntry {
    pub nin: Nin,
    pub creditor_org: FinancialInstitutionId,
    pub creditor_name: String,
    pub account_id: String,
    pub loan: Loan,
}

impl DebtEntry {
    /// An item of `debt_information.loans[]`: `{"creditorName", "loan"}`.
    pub fn response_item(&self) -> Value {
        serde_json::json!({
            "creditorName": self.creditor_name,
            "loan": self.loan.to_json(),
        })
    }
}

/// A parsed delivery file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub provider_id: ProviderId,
    /// Every loan, in file order.
    pub entries: Vec<DebtEntry>,
    /// Distinct financialInstitutionIDs in file order.
    pub financial_institutions: Vec<FinancialInstitutionId>,
    /// Every customer (also those with no loans), in file order.
    pub customers: Vec<(Nin, FinancialInstitutionId)>,
}

/// Why a delivery file was rejected, and where.
///
/// `line` and `column` are 1-based; the column counts characters. A bad value
/// is reported where the value ends; a missing field where the object that
/// lacks it ends (`}`); a duplicate `accountID` at the second occurrence (or,
/// when a customer's `financialInstitutionID` comes after its `loans`, at that
/// `financialInstitutionID`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}, column {column}: {message}")]
pub struct DeliveryError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl DeliveryError {
    fn from_json(text: &str, err: &serde_json::Error) -> Self {
        let (line, byte_column) = (err.line(), err.column());
        let full = err.to_string();
        let message = full
            .strip_suffix(&format!(" at line {line} column {byte_column}"))
            .unwrap_or(&full)
            .to_owned();
        let (line, column) = char_position(text, line, byte_column);
        Self {
            line,
            column,
            message,
        }
    }
}

/// serde_json's (line, byte column of the last byte read) as a 1-based
/// (line, character column). Column 0 means the last byte read was a newline,
/// so the place is the end of the line before.
fn char_position(text: &str, line: usize, byte_column: usize) -> (usize, usize) {
    let line_text = |n: usize| {
        text.split('\n')
            .nth(n.saturating_sub(1))
            .unwrap_or("")
            .trim_end_matches('\r')
    };
    if line == 0 {
        return (1, 1);
    }
    if byte_column == 0 {
        if line == 1 {
            return (1, 1);
        }
        return (line - 1, line_text(line - 1).chars().count() + 1);
    }
    let current = line_text(line);
    let column = match current.get(..byte_column) {
        Some(prefix) => prefix.chars().count(),
        None if byte_column > current.len() => current.chars().count() + 1,
        // Inside a multi-byte character: count the characters that start before it.
        None => current
            .char_indices()
            .take_while(|(i, _)| *i < byte_column)
            .count(),
    };
    (line, column.max(1))
}

/// The (financialInstitutionID, accountID) pairs seen so far, kept compact
/// for deliveries of millions of loans: each pair as a 128-bit keyed hash
/// (two SipHash-1-3 with random keys; a false duplicate needs a 2⁻¹²⁸-ish
/// collision).
struct AccountSet {
    institutions: HashMap<FinancialInstitutionId, u32>,
    seen: HashSet<u128>,
    keys: (RandomState, RandomState),
}

impl AccountSet {
    fn new() -> Self {
        Self {
            institutions: HashMap::new(),
            seen: HashSet::new(),
            keys: (RandomState::new(), RandomState::new()),
        }
    }

    fn institution(&mut self, fi: &FinancialInstitutionId) -> u32 {
        let next = u32::try_from(self.institutions.len()).unwrap_or(u32::MAX);
        *self.institutions.entry(fi.clone()).or_insert(next)
    }

    /// True if the pair is new.
    fn insert(&mut self, fi: &FinancialInstitutionId, account_id: &str) -> bool {
        let index = self.institution(fi);
        let hash = |state: &RandomState| {
            let mut h = state.build_hasher();
            h.write_u32(index);
            h.write(account_id.as_bytes());
            h.finish()
        };
        let key = (u128::from(hash(&self.keys.0)) << 64) | u128::from(hash(&self.keys.1));
        self.seen.insert(key)
    }
}

/// The customers seen so far: (customerID, financialInstitutionID) packed
/// exactly into 128 bits (an 11-digit number fits in 64).
struct CustomerSet {
    seen: HashSet<u128>,
}

impl CustomerSet {
    fn insert(
        &mut self,
        accounts: &mut AccountSet,
        nin: &Nin,
        fi: &FinancialInstitutionId,
    ) -> bool {
        let number: u64 = nin.as_str().parse().unwrap_or(u64::MAX);
        let key = (u128::from(number) << 32) | u128::from(accounts.institution(fi));
        self.seen.insert(key)
    }
}

/// What a delivery's customers are handed to, one at a time.
type Sink<'s> = dyn FnMut(CustomerLoans) -> Result<(), String> + 's;

/// Reads delivery documents (a file, or the pages of one `getalldata`) and
/// hands each validated customer to a sink as soon as its object ends, so a
/// delivery of any size is read in bounded memory (only the duplicate checks
/// grow, by about 40 bytes per customer and per loan). Duplicates are
/// checked across every document the reader reads.
pub struct DeliveryReader {
    policy: NinPolicy,
    accounts: AccountSet,
    customers: CustomerSet,
}

/// One document read by [`DeliveryReader`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryPage {
    pub provider_id: ProviderId,
    /// Customer objects in the document.
    pub customers: u64,
}

struct State<'s> {
    policy: NinPolicy,
    accounts: &'s mut AccountSet,
    customers: &'s mut CustomerSet,
    count: u64,
    sink: &'s mut Sink<'s>,
}

impl DeliveryReader {
    pub fn new(policy: NinPolicy) -> Self {
        Self {
            policy,
            accounts: AccountSet::new(),
            customers: CustomerSet {
                seen: HashSet::new(),
            },
        }
    }

    /// Reads one delivery document from `reader` (a streamed HTTP body, say),
    /// handing each customer to `sink`; an error from the sink rejects the
    /// document at that customer. Positions in errors count bytes.
    pub fn read<R: Read>(
        &mut self,
        reader: R,
        sink: &mut Sink<'_>,
    ) -> Result<DeliveryPage, DeliveryError> {
        let mut de = serde_json::Deserializer::from_reader(SkipBom::new(reader));
        self.read_from(&mut de, sink).map_err(|e| DeliveryError {
            line: e.line().max(1),
            column: e.column().max(1),
            message: strip_position(&e),
        })
    }

    /// [`DeliveryReader::read`] of text in memory; columns count characters.
    pub fn read_str(
        &mut self,
        json: &str,
        sink: &mut Sink<'_>,
    ) -> Result<DeliveryPage, DeliveryError> {
        let json = json.strip_prefix('\u{feff}').unwrap_or(json);
        let mut de = serde_json::Deserializer::from_str(json);
        self.read_from(&mut de, sink)
            .map_err(|e| DeliveryError::from_json(json, &e))
    }

    fn read_from<'de, R: serde_json::de::Read<'de>>(
        &mut self,
        de: &mut serde_json::Deserializer<R>,
        sink: &mut Sink<'_>,
    ) -> Result<DeliveryPage, serde_json::Error> {
        let mut state = State {
            policy: self.policy,
            accounts: &mut self.accounts,
            customers: &mut self.customers,
            count: 0,
            sink,
        };
        let provider_id = DeliverySeed(&mut state).deserialize(&mut *de)?;
        de.end()?;
        Ok(DeliveryPage {
            provider_id,
            customers: state.count,
        })
    }
}

/// serde_json's message without its " at line L column C" suffix.
fn strip_position(err: &serde_json::Error) -> String {
    let full = err.to_string();
    full.strip_suffix(&format!(" at line {} column {}", err.line(), err.column()))
        .unwrap_or(&full)
        .to_owned()
}

/// A reader that drops a leading UTF-8 byte order mark.
struct SkipBom<R> {
    inner: R,
    start: Option<Vec<u8>>,
}

impl<R: Read> SkipBom<R> {
    fn new(inner: R) -> Self {
        Self { inner, start: None }
    }
}

impl<R: Read> Read for SkipBom<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.start.is_none() {
            let mut head = Vec::with_capacity(3);
            let mut byte = [0u8; 1];
            while head.len() < 3 {
                if self.inner.read(&mut byte)? == 0 {
                    break;
                }
                head.push(byte[0]);
                if !b"\xef\xbb\xbf".starts_with(&head) {
                    break;
                }
            }
            if head == b"\xef\xbb\xbf" {
                head.clear();
            }
            self.start = Some(head);
        }
        if let Some(start) = self.start.as_mut().filter(|s| !s.is_empty()) {
            let n = start.len().min(buf.len());
            buf[..n].copy_from_slice(&start[..n]);
            start.drain(..n);
            return Ok(n);
        }
        self.inner.read(buf)
    }
}

/// Parses a creditor's delivery file. The whole file is rejected on the first
/// error. `customerID` is checked with `policy`.
pub fn parse_delivery(json: &str, policy: NinPolicy) -> Result<Delivery, DeliveryError> {
    let mut entries = Vec::new();
    let mut financial_institutions: Vec<FinancialInstitutionId> = Vec::new();
    let mut customers = Vec::new();
    let mut sink = |customer: CustomerLoans| {
        let fi = customer.financial_institution_id.clone();
        let name = customer
            .name
            .clone()
            .unwrap_or_else(|| default_creditor_name(&fi));
        entries.extend(customer.entries(&name));
        if !financial_institutions.contains(&fi) {
            financial_institutions.push(fi.clone());
        }
        customers.push((customer.customer_id, fi));
        Ok(())
    };
    let page = DeliveryReader::new(policy).read_str(json, &mut sink)?;
    Ok(Delivery {
        provider_id: page.provider_id,
        entries,
        financial_institutions,
        customers,
    })
}

/// The `creditorName` of an institution that gave no `financialInstitutionName`.
pub fn default_creditor_name(fi: &FinancialInstitutionId) -> String {
    format!("Org. nr. {fi}")
}

/// Parses one customer object as the whole document (a `getDataForSSN`
/// answer); see [`CustomerLoans::parse`].
pub(crate) fn parse_customer_loans_json(
    body: &[u8],
    policy: NinPolicy,
) -> Result<CustomerLoans, DeliveryError> {
    let text = std::str::from_utf8(body).map_err(|e| DeliveryError {
        line: 1,
        column: 1,
        message: format!("the body is not UTF-8: {e}"),
    })?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut accounts = AccountSet::new();
    let mut customers = CustomerSet {
        seen: HashSet::new(),
    };
    let mut answer = None;
    let mut sink = |customer: CustomerLoans| {
        answer = Some(customer);
        Ok(())
    };
    let mut state = State {
        policy,
        accounts: &mut accounts,
        customers: &mut customers,
        count: 0,
        sink: &mut sink,
    };
    let mut de = serde_json::Deserializer::from_str(text);
    CustomerSeed(&mut state)
        .deserialize(&mut de)
        .and_then(|()| de.end())
        .map_err(|e| DeliveryError::from_json(text, &e))?;
    answer.ok_or_else(|| DeliveryError {
        line: 1,
        column: 1,
        message: "no customer object".to_owned(),
    })
}

/// The top-level object; yields the providerID.
struct DeliverySeed<'a, 's>(&'a mut State<'s>);

impl<'de> DeserializeSeed<'de> for DeliverySeed<'_, '_> {
    type Value = ProviderId;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<ProviderId, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for DeliverySeed<'_, '_> {
    type Value = ProviderId;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a delivery object with `providerID` and `customers`")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ProviderId, A::Error> {
        let state = self.0;
        let mut provider = None;
        let mut customers = false;
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "providerID" => read_field(&mut map, &mut provider, "providerID", provider_id)?,
                "customers" => {
                    if customers {
                        return Err(duplicate_field("customers"));
                    }
                    map.next_value_seed(CustomersSeed(&mut *state))?;
                    customers = true;
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        let missing = |field: &str| {
            A::Error::custom(format!("missing field `{field}` in the delivery object"))
        };
        if !customers {
            return Err(missing("customers"));
        }
        provider.ok_or_else(|| missing("providerID"))
    }
}

struct CustomersSeed<'a, 's>(&'a mut State<'s>);

impl<'de> DeserializeSeed<'de> for CustomersSeed<'_, '_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for CustomersSeed<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of customer objects in `customers`")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(CustomerSeed(&mut *self.0))?.is_some() {}
        Ok(())
    }
}

/// One customer object; hands it to the state's sink.
struct CustomerSeed<'a, 's>(&'a mut State<'s>);

impl<'de> DeserializeSeed<'de> for CustomerSeed<'_, '_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for CustomerSeed<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a customer object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let state = self.0;
        let policy = state.policy;
        let mut nin_value: Option<Nin> = None;
        let mut fi: Option<FinancialInstitutionId> = None;
        let mut name: Option<Option<String>> = None;
        let mut loans: Option<Vec<(String, Loan)>> = None;
        let mut this_customer = HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "customerID" => {
                    read_field(&mut map, &mut nin_value, "customerID", |v| nin(v, policy))?
                }
                "financialInstitutionID" => {
                    // Loans read before the financialInstitutionID are checked
                    // for duplicates here.
                    let earlier = loans.as_deref().unwrap_or_default();
                    let seen = &mut *state.accounts;
                    read_field(&mut map, &mut fi, "financialInstitutionID", |value| {
                        let id = institution_id(value)?;
                        for (account, _) in earlier {
                            if !seen.insert(&id, account) {
                                return Err(format!(
                                    "accountID {}",
                                    duplicate_account(account, Some(&id))
                                ));
                            }
                        }
                        Ok(id)
                    })?;
                }
                "financialInstitutionName" => read_field(
                    &mut map,
                    &mut name,
                    "financialInstitutionName",
                    creditor_name,
                )?,
                "loans" => {
                    if loans.is_some() {
                        return Err(duplicate_field("loans"));
                    }
                    loans = Some(map.next_value_seed(LoansSeed(AccountCheck {
                        fi: fi.as_ref(),
                        seen: &mut *state.accounts,
                        this_customer: &mut this_customer,
                    }))?);
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        let missing = |field: &str| {
            A::Error::custom(format!(
                "missing field `{field}` in the customer object that ends here"
            ))
        };
        let nin_value = nin_value.ok_or_else(|| missing("customerID"))?;
        let fi = fi.ok_or_else(|| missing("financialInstitutionID"))?;
        let loans = loans.ok_or_else(|| missing("loans"))?;
        if !state.customers.insert(state.accounts, &nin_value, &fi) {
            // Never echo the identity number.
            return Err(A::Error::custom(format!(
                "duplicate customer: the same customerID occurs in an earlier customer object for financialInstitutionID {fi}"
            )));
        }
        state.count += 1;
        (state.sink)(CustomerLoans {
            customer_id: nin_value,
            financial_institution_id: fi,
            name: name.flatten(),
            loans,
        })
        .map_err(A::Error::custom)
    }
}

/// A customer's `loans` array.
struct LoansSeed<'a>(AccountCheck<'a>);

impl<'de> DeserializeSeed<'de> for LoansSeed<'_> {
    type Value = Vec<(String, Loan)>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for LoansSeed<'_> {
    type Value = Vec<(String, Loan)>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of loan objects in `loans`")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let check = self.0;
        let mut loans = Vec::new();
        loop {
            let seed = LoanVisitor {
                accounts: Some(AccountCheck {
                    fi: check.fi,
                    seen: &mut *check.seen,
                    this_customer: &mut *check.this_customer,
                }),
            };
            match seq.next_element_seed(seed)? {
                // A delivery loan always has its accountID (finish_loan).
                Some((Some(id), loan)) => loans.push((id, loan)),
                Some((None, _)) => {
                    return Err(A::Error::custom(
                        "missing field `accountID` in a loan object",
                    ))
                }
                None => return Ok(loans),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const SANDBOX: NinPolicy = NinPolicy::AllowSynthetic;

    const REPAYMENT: &str = r#"{
          "type": "repaymentLoan",
          "accountID": "A-1",
          "timestamp": "2026-11-01T08:00:00Z",
          "coBorrower": 0,
          "originalBalance": 15000000,
          "balance": 12345600,
          "terms": 48,
          "nominalInterestRate": 1290,
          "installmentCharges": 4500,
          "installmentChargePeriod": "MONTHLY"
        }"#;

    const FACILITY: &str = r#"{
          "type": "creditFacility",
          "accountID": "B-1",
          "timestamp": "2026-11-01T08:00:00+01:00",
          "coBorrower": 2,
          "creditLimit": 5000000,
          "interestBearingBalance": 1875000,
          "nonInterestBearingBalance": 12500,
          "nominalInterestRate": 2190,
          "installmentCharges": 3900,
          "installmentChargePeriod": "HALF-YEARLY"
        }"#;

    const CARD: &str = r#"{
          "type": "chargeCard",
          "accountID": "C-1",
          "timestamp": "2026-11-01T08:00:00.123Z",
          "coBorrower": 1,
          "interestBearingBalance": 0,
          "nonInterestBearingBalance": 845000
        }"#;

    /// A one-customer delivery around the given loan objects.
    fn wrap(loans: &[&str]) -> String {
        format!(
            "{{\n  \"providerID\": \"985399077\",\n  \"customers\": [\n    {{\n      \"customerID\": \"14842249091\",\n      \"financialInstitutionID\": \"923456783\",\n      \"loans\": [\n        {}\n      ]\n    }}\n  ]\n}}\n",
            loans.join(",\n        ")
        )
    }

    /// The 1-based line on which `needle` starts.
    fn line_of(text: &str, needle: &str) -> usize {
        let at = text
            .find(needle)
            .unwrap_or_else(|| panic!("{needle:?} not in the text"));
        text[..at].matches('\n').count() + 1
    }

    fn error(json: &str) -> DeliveryError {
        parse_delivery(json, SANDBOX).unwrap_err()
    }

    #[test]
    fn the_sandbox_delivery_has_both_people_all_loan_types_and_several_creditors() {
        let delivery = parse_delivery(SANDBOX_DELIVERY, SANDBOX).unwrap();
        for person in ["14842249091", "29868099311"] {
            let theirs: Vec<_> = delivery
                .entries
                .iter()
                .filter(|e| e.nin.as_str() == person)
                .collect();
            assert!(theirs.len() >= 3, "{person} has {} loans", theirs.len());
            let creditors: HashSet<_> = theirs.iter().map(|e| &e.creditor_org).collect();
            assert!(creditors.len() >= 2, "{person}");
        }
        let types: HashSet<_> = delivery
            .entries
            .iter()
            .map(|e| e.loan.type_name())
            .collect();
        assert_eq!(types.len(), 3);
        assert!(delivery.financial_institutions.len() >= 3);
        assert!(!delivery
            .financial_institutions
            .iter()
            .any(|fi| fi.as_str() == delivery.provider_id.as_str()));
        for entry in &delivery.entries {
            assert!(
                !entry.creditor_name.starts_with("Org. nr."),
                "{}",
                entry.creditor_name
            );
        }
        // Synthetic people are refused outside sandbox mode.
        let err = parse_delivery(SANDBOX_DELIVERY, NinPolicy::RealOnly).unwrap_err();
        assert!(err.message.contains("sandbox"), "{err}");
    }

    #[test]
    fn each_loan_type_round_trips_through_the_stored_json() {
        let delivery = parse_delivery(&wrap(&[REPAYMENT, FACILITY, CARD]), SANDBOX).unwrap();
        let expected = [
            json!({"type": "repaymentLoan", "timestamp": "2026-11-01T08:00:00Z", "coBorrower": 0,
                   "originalBalance": 15000000, "balance": 12345600, "terms": 48,
                   "nominalInterestRate": 1290, "installmentCharges": 4500, "installmentChargePeriod": "MONTHLY"}),
            json!({"type": "creditFacility", "timestamp": "2026-11-01T08:00:00+01:00", "coBorrower": 2,
                   "creditLimit": 5000000, "interestBearingBalance": 1875000, "nonInterestBearingBalance": 12500,
                   "nominalInterestRate": 2190, "installmentCharges": 3900, "installmentChargePeriod": "HALF-YEARLY"}),
            json!({"type": "chargeCard", "timestamp": "2026-11-01T08:00:00.123Z", "coBorrower": 1,
                   "interestBearingBalance": 0, "nonInterestBearingBalance": 845000}),
        ];
        assert_eq!(delivery.entries.len(), 3);
        for (entry, expected) in delivery.entries.iter().zip(expected) {
            assert_eq!(entry.loan.to_json(), expected);
            let stored = entry.loan.to_stored_json();
            assert!(
                stored.starts_with(&format!("{{\"type\":\"{}\",", entry.loan.type_name())),
                "{stored}"
            );
            assert_eq!(Loan::from_stored_json(&stored).unwrap(), entry.loan);
            assert_eq!(
                Loan::from_stored_json(&entry.loan.to_json().to_string()).unwrap(),
                entry.loan
            );
            assert_eq!(serde_json::to_value(&entry.loan).unwrap(), expected);
        }
        assert_eq!(
            delivery
                .entries
                .iter()
                .map(|e| e.account_id.as_str())
                .collect::<Vec<_>>(),
            ["A-1", "B-1", "C-1"]
        );
    }

    #[test]
    fn stored_json_is_validated_too() {
        assert!(Loan::from_stored_json(r#"{"type":"chargeCard","timestamp":"2026-11-01T08:00:00Z","coBorrower":0,"interestBearingBalance":-1,"nonInterestBearingBalance":0}"#).is_err());
        assert!(Loan::from_stored_json(r#"{"type":"chargeCard","timestamp":"2026-11-01T08:00:00Z","coBorrower":0,"interestBearingBalance":1}"#).is_err());
        assert!(Loan::from_stored_json(r#"{"type":"mortgage"}"#).is_err());
    }

    #[test]
    fn response_items_have_creditor_name_and_loan() {
        let delivery = parse_delivery(&wrap(&[CARD]), SANDBOX).unwrap();
        let entry = &delivery.entries[0];
        assert_eq!(entry.creditor_name, "Org. nr. 923456783");
        assert_eq!(
            entry.response_item(),
            json!({"creditorName": "Org. nr. 923456783", "loan": entry.loan.to_json()})
        );
    }

    #[test]
    fn a_delivery_is_read_in_file_order_with_distinct_institutions() {
        let json = r#"{"providerID": "985399077", "customers": [
            {"customerID": "14842249091", "financialInstitutionID": "934567897", "financialInstitutionName": " Nordlys Bank ASA ", "loans": []},
            {"customerID": "29868099311", "financialInstitutionID": "923456783", "financialInstitutionName": null,
             "loans": [{"type": "chargeCard", "accountID": "X", "timestamp": "2026-11-01T08:00:00Z", "coBorrower": 0, "interestBearingBalance": 1, "nonInterestBearingBalance": 2}]},
            {"customerID": "29868099311", "financialInstitutionID": "934567897", "financialInstitutionName": "Nordlys Bank ASA",
             "loans": [{"type": "chargeCard", "accountID": "X", "timestamp": "2026-11-01T08:00:00Z", "coBorrower": 0, "interestBearingBalance": 1, "nonInterestBearingBalance": 2}]}
        ]}"#;
        let delivery = parse_delivery(json, SANDBOX).unwrap();
        assert_eq!(delivery.provider_id.as_str(), "985399077");
        assert_eq!(
            delivery
                .financial_institutions
                .iter()
                .map(FinancialInstitutionId::as_str)
                .collect::<Vec<_>>(),
            ["934567897", "923456783"]
        );
        let summary: Vec<_> = delivery
            .entries
            .iter()
            .map(|e| {
                (
                    e.nin.as_str(),
                    e.creditor_org.as_str(),
                    e.creditor_name.as_str(),
                    e.account_id.as_str(),
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                ("29868099311", "923456783", "Org. nr. 923456783", "X"),
                ("29868099311", "934567897", "Nordlys Bank ASA", "X"),
            ]
        );
        // Every customer, also one without loans.
        assert_eq!(
            delivery
                .customers
                .iter()
                .map(|(nin, fi)| (nin.as_str(), fi.as_str()))
                .collect::<Vec<_>>(),
            [
                ("14842249091", "934567897"),
                ("29868099311", "923456783"),
                ("29868099311", "934567897")
            ]
        );
    }

    #[test]
    fn the_documented_iso_6523_provider_id_and_foreign_institutions_are_accepted() {
        // A bank's real file: ISO 6523 providerID, a 10-digit Swedish
        // financialInstitutionID next to a Norwegian one.
        let json = format!(
            r#"{{"providerID": "9908:999888777", "customers": [
                {{"customerID": "14842249091", "financialInstitutionID": "5560001234", "financialInstitutionName": "Svensk Kredit AB", "loans": [{CARD}]}},
                {{"customerID": "14842249091", "financialInstitutionID": "923456783", "loans": [{REPAYMENT}]}}
            ]}}"#
        );
        let delivery = parse_delivery(&json, SANDBOX).unwrap();
        assert_eq!(delivery.provider_id.as_str(), "999888777");
        assert_eq!(
            delivery
                .financial_institutions
                .iter()
                .map(FinancialInstitutionId::as_str)
                .collect::<Vec<_>>(),
            ["5560001234", "923456783"]
        );
        assert_eq!(delivery.entries[0].creditor_org.as_str(), "5560001234");
        assert!(!delivery.entries[0].creditor_org.is_norwegian());
        // The plain form still works; a wrong scheme or check digit does not.
        assert!(parse_delivery(&json.replace("9908:", ""), SANDBOX).is_ok());
        let err = error(&json.replace("9908:999888777", "0192:999888777"));
        assert!(err.message.starts_with("providerID: "), "{err}");
        let err = error(&json.replace("9908:999888777", "9908:99988877"));
        assert!(err.message.starts_with("providerID: expected"), "{err}");
        // Too short, too long, or odd characters in a foreign id.
        for bad in ["55600012", "55600012345678901", "5560 001234"] {
            let err = error(&json.replace("5560001234", bad));
            assert!(
                err.message.starts_with("financialInstitutionID: "),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn a_duplicate_customer_rejects_the_whole_delivery_without_echoing_the_number() {
        let json = r#"{"providerID": "985399077", "customers": [
            {"customerID": "14842249091", "financialInstitutionID": "923456783", "loans": []},
            {"customerID": "29868099311", "financialInstitutionID": "923456783", "loans": []},
            {"customerID": "14842249091", "financialInstitutionID": "934567897", "loans": []},
            {"customerID": "14842249091", "financialInstitutionID": "923456783", "loans": []}
        ]}"#;
        let err = error(json);
        assert_eq!(err.line, 5, "{err}");
        assert!(err.message.starts_with("duplicate customer"), "{err}");
        assert!(err.message.contains("923456783"), "{err}");
        assert!(!err.message.contains("14842249091"), "{err}");
    }

    #[test]
    fn co_borrower_must_be_given_as_0_1_or_2() {
        for (bad, wanted) in [
            ("\"coBorrower\": 0,", "missing field `coBorrower`"),
            ("\"coBorrower\": 3,", "coBorrower: expected 0"),
            ("\"coBorrower\": null,", "coBorrower: expected 0"),
            ("\"coBorrower\": \"1\",", "coBorrower: expected 0"),
            ("\"coBorrower\": true,", "coBorrower: expected 0"),
        ] {
            let loan = match bad {
                b if b.ends_with(" 0,") => REPAYMENT.replace("\"coBorrower\": 0,", ""),
                b => REPAYMENT.replace("\"coBorrower\": 0,", b),
            };
            let err = error(&wrap(&[&loan]));
            assert!(err.message.starts_with(wanted), "{bad}: {err}");
        }
    }

    #[test]
    fn a_delivery_reader_streams_customers_and_checks_duplicates_across_pages() {
        let page = |nin: &str, account: &str| {
            format!(
                "\u{feff}{{\"providerID\": \"9908:985399077\", \"customers\": [{{\"customerID\": \"{nin}\", \"financialInstitutionID\": \"923456783\", \"loans\": [{}]}}]}}",
                CARD.replace("\"C-1\"", &format!("\"{account}\""))
            )
        };
        let mut reader = DeliveryReader::new(SANDBOX);
        let mut seen = Vec::new();
        let mut sink = |c: CustomerLoans| {
            seen.push((c.customer_id.as_str().to_owned(), c.loans.len()));
            Ok(())
        };
        let first = reader
            .read(page("14842249091", "C-1").as_bytes(), &mut sink)
            .unwrap();
        assert_eq!(first.provider_id.as_str(), "985399077");
        assert_eq!(first.customers, 1);
        reader
            .read(page("29868099311", "C-2").as_bytes(), &mut sink)
            .unwrap();
        // The same account again on a later page, or the same customer.
        let err = reader
            .read(page("29868099311", "C-1").as_bytes(), &mut sink)
            .unwrap_err();
        assert!(err.message.contains("occurs more than once"), "{err}");
        let err = reader
            .read(page("14842249091", "C-9").as_bytes(), &mut sink)
            .unwrap_err();
        assert!(err.message.starts_with("duplicate customer"), "{err}");
        // The sink's refusal rejects the document.
        let mut refuse = |_: CustomerLoans| Err("not this institution".to_owned());
        let err = DeliveryReader::new(SANDBOX)
            .read(page("14842249091", "C-1").as_bytes(), &mut refuse)
            .unwrap_err();
        assert_eq!(err.message, "not this institution");
        assert_eq!(
            seen,
            [("14842249091".to_owned(), 1), ("29868099311".to_owned(), 1)]
        );
    }

    #[test]
    fn empty_loans_and_empty_customers_are_fine() {
        let delivery = parse_delivery(&wrap(&[]), SANDBOX).unwrap();
        assert!(delivery.entries.is_empty());
        assert_eq!(delivery.financial_institutions.len(), 1);
        let delivery =
            parse_delivery(r#"{"providerID": "985399077", "customers": []}"#, SANDBOX).unwrap();
        assert!(delivery.entries.is_empty() && delivery.financial_institutions.is_empty());
    }

    #[test]
    fn unknown_extra_fields_are_ignored_at_every_level() {
        let loan = REPAYMENT.replace(
            "\"terms\": 48,",
            "\"terms\": 48, \"currency\": \"NOK\", \"extra\": {\"nested\": [1, {\"balance\": -5}]},",
        );
        let json = wrap(&[&loan]).replacen(
            "\"providerID\"",
            "\"version\": 2, \"generatedAt\": null, \"providerID\"",
            1,
        );
        let json = json.replace("\"loans\": [", "\"segment\": \"private\", \"loans\": [");
        let delivery = parse_delivery(&json, SANDBOX).unwrap();
        assert_eq!(delivery.entries.len(), 1);
        // Nothing from the extras leaks into the loan.
        assert_eq!(
            delivery.entries[0].loan.to_json().as_object().map(Map::len),
            Some(9)
        );
    }

    #[test]
    fn a_byte_order_mark_is_tolerated() {
        let json = format!("\u{feff}{}", wrap(&[CARD]));
        assert_eq!(parse_delivery(&json, SANDBOX).unwrap().entries.len(), 1);
    }

    #[test]
    fn json_syntax_errors_have_their_line() {
        let json = wrap(&[&REPAYMENT.replace("\"terms\": 48,", "\"terms\": 48")]);
        let err = error(&json);
        assert_eq!(err.line, line_of(&json, "\"nominalInterestRate\""), "{err}");
        let err = error("{\n  \"providerID\": \"985399077\",\n  \"customers\": [\n");
        assert_eq!(err.line, 3, "{err}");
        assert!(err.message.contains("EOF"), "{err}");
        let err = error(&format!("{}\n{{}}", wrap(&[])));
        assert!(err.message.contains("trailing"), "{err}");
    }

    #[test]
    fn a_negative_amount_is_reported_where_it_is() {
        let json = wrap(&[
            CARD,
            &REPAYMENT.replace("\"balance\": 12345600", "\"balance\": -1"),
        ]);
        let err = error(&json);
        let line = line_of(&json, "\"balance\": -1");
        assert_eq!(err.line, line, "{err}");
        let text = json.lines().nth(line - 1).unwrap();
        assert_eq!(err.column, text.find("-1").unwrap() + 2, "{err}");
        assert_eq!(
            err.message,
            "balance: expected a whole number of øre (NOK × 100), 0 or more, got -1"
        );
        assert_eq!(
            err.to_string(),
            format!("line {line}, column {}: {}", err.column, err.message)
        );
    }

    #[test]
    fn wrong_value_types_are_reported_where_they_are() {
        for (from, to, field) in [
            (
                "\"originalBalance\": 15000000",
                "\"originalBalance\": \"15000000\"",
                "originalBalance",
            ),
            (
                "\"originalBalance\": 15000000",
                "\"originalBalance\": 150000.5",
                "originalBalance",
            ),
            ("\"terms\": 48", "\"terms\": null", "terms"),
            (
                "\"nominalInterestRate\": 1290",
                "\"nominalInterestRate\": [1290]",
                "nominalInterestRate",
            ),
            ("\"coBorrower\": 0", "\"coBorrower\": 3", "coBorrower"),
            (
                "\"coBorrower\": 0",
                "\"coBorrower\": {\"x\": 1}",
                "coBorrower",
            ),
            (
                "\"installmentChargePeriod\": \"MONTHLY\"",
                "\"installmentChargePeriod\": \"monthly\"",
                "installmentChargePeriod",
            ),
            (
                "\"timestamp\": \"2026-11-01T08:00:00Z\"",
                "\"timestamp\": \"2026-11-01\"",
                "timestamp",
            ),
            (
                "\"timestamp\": \"2026-11-01T08:00:00Z\"",
                "\"timestamp\": \"2026-13-01T08:00:00Z\"",
                "timestamp",
            ),
            ("\"accountID\": \"A-1\"", "\"accountID\": \"\"", "accountID"),
            ("\"accountID\": \"A-1\"", "\"accountID\": 17", "accountID"),
        ] {
            let json = wrap(&[CARD, &REPAYMENT.replace(from, to)]);
            let err = error(&json);
            assert_eq!(err.line, line_of(&json, to), "{to}: {err}");
            assert!(
                err.message.starts_with(&format!("{field}: expected ")),
                "{err}"
            );
        }
    }

    #[test]
    fn an_overlong_account_id_or_creditor_name_is_refused() {
        let long = "x".repeat(101);
        let json = wrap(&[&REPAYMENT.replace("\"A-1\"", &format!("\"{long}\""))]);
        assert_eq!(error(&json).line, line_of(&json, &long));
        let json = wrap(&[&REPAYMENT.replace("\"A-1\"", &format!("\"{}\"", "x".repeat(100)))]);
        assert!(parse_delivery(&json, SANDBOX).is_ok());

        let name = "Å".repeat(201);
        let json = wrap(&[]).replace(
            "\"loans\"",
            &format!("\"financialInstitutionName\": \"{name}\",\n      \"loans\""),
        );
        let err = error(&json);
        assert_eq!(err.line, line_of(&json, &name), "{err}");
        assert!(
            err.message.starts_with("financialInstitutionName: "),
            "{err}"
        );
        let json = wrap(&[]).replace(
            "\"loans\"",
            "\"financialInstitutionName\": \"  \",\n      \"loans\"",
        );
        assert!(error(&json)
            .message
            .starts_with("financialInstitutionName: "));
    }

    #[test]
    fn an_unknown_loan_type_names_the_allowed_ones() {
        let json = wrap(&[
            CARD,
            &REPAYMENT.replace("\"repaymentLoan\"", "\"mortgage\""),
        ]);
        let err = error(&json);
        assert_eq!(err.line, line_of(&json, "\"mortgage\""), "{err}");
        assert_eq!(
            err.message,
            "type: expected one of creditFacility, repaymentLoan, chargeCard, got \"mortgage\""
        );
    }

    #[test]
    fn a_missing_loan_field_is_reported_at_the_end_of_its_object() {
        for (remove, field) in [
            ("\"terms\": 48,\n", "terms"),
            ("\"accountID\": \"A-1\",\n", "accountID"),
            ("\"type\": \"repaymentLoan\",\n", "type"),
            (
                "\"installmentChargePeriod\": \"MONTHLY\"",
                "installmentChargePeriod",
            ),
        ] {
            let mut loan = REPAYMENT.replace(remove, "");
            if field == "installmentChargePeriod" {
                loan = loan.replace("4500,\n", "4500\n");
            }
            let json = wrap(&[&loan, CARD]);
            let err = error(&json);
            // The loan object's closing brace.
            let close = json.find("\"type\": \"chargeCard\"").unwrap();
            let close_line = json[..close]
                .rfind('}')
                .map(|at| json[..at].matches('\n').count() + 1)
                .unwrap();
            assert_eq!(err.line, close_line, "{field}: {err}");
            assert!(
                err.message.contains(&format!("missing field `{field}`")),
                "{err}"
            );
        }
        let card = CARD.replace("\"coBorrower\": 1,\n", "");
        let err = error(&wrap(&[&card]));
        assert!(
            err.message
                .contains("`coBorrower`, which a chargeCard requires"),
            "{err}"
        );
        assert!(err.message.contains("(accountID \"C-1\")"), "{err}");
    }

    #[test]
    fn missing_customer_and_delivery_fields_are_reported() {
        let json = wrap(&[]).replace("\"customerID\": \"14842249091\",\n", "");
        let err = error(&json);
        assert_eq!(err.line, line_of(&json, "    }"), "{err}");
        assert_eq!(
            err.message,
            "missing field `customerID` in the customer object that ends here"
        );
        let json = wrap(&[]).replace("\"financialInstitutionID\": \"923456783\",\n", "");
        assert!(error(&json).message.contains("`financialInstitutionID`"));
        let json = "{\n  \"customers\": []\n}\n";
        let err = error(json);
        assert_eq!((err.line, err.column), (3, 1), "{err}");
        assert!(err.message.contains("`providerID`"), "{err}");
        let err = error("{\"providerID\": \"985399077\"}");
        assert!(err.message.contains("`customers`"), "{err}");
        let err = error("{\n  \"providerID\": \"985399077\",\n  \"customers\": {}\n}");
        assert_eq!(err.line, 3, "{err}");
    }

    #[test]
    fn bad_identity_and_organisation_numbers_carry_the_newtypes_message() {
        let json = wrap(&[]).replace("14842249091", "14842249092");
        let err = error(&json);
        assert_eq!(err.line, 5);
        assert_eq!(
            err.message,
            "customerID: the national identity number's control digits are wrong"
        );
        assert!(err.to_string().starts_with("line 5, column "), "{err}");

        let json = wrap(&[]).replace("\"14842249091\"", "14842249091");
        let err = error(&json);
        assert_eq!(err.line, 5);
        assert!(!err.message.contains("14842249091"), "{err}");

        let json = wrap(&[]);
        let err = parse_delivery(&json, NinPolicy::RealOnly).unwrap_err();
        assert_eq!(err.line, 5);
        assert_eq!(
            err.message,
            "customerID: synthetic test numbers are accepted only in sandbox mode"
        );

        // providerID: 9 digits; its check digit is not verified (the
        // published example fails it).
        assert!(parse_delivery(&wrap(&[]).replace("985399077", "985399078"), SANDBOX).is_ok());
        let json = wrap(&[]).replace("985399077", "98539907");
        let err = error(&json);
        assert_eq!(err.line, 2);
        assert!(err.message.starts_with("providerID: expected"), "{err}");

        let json = wrap(&[]).replace("923456783", "92345678");
        let err = error(&json);
        assert_eq!(err.line, 6);
        assert!(
            err.message.starts_with(
                "financialInstitutionID: a financialInstitutionID is a 9-digit organisation number or a foreign id"
            ),
            "{err}"
        );
    }

    #[test]
    fn duplicate_account_ids_for_one_institution_are_refused_at_the_second() {
        // Within one customer.
        let second = REPAYMENT.replace("\"A-1\"", "\"A-1\" ");
        let json = wrap(&[REPAYMENT, CARD, &second]);
        let err = error(&json);
        assert_eq!(err.line, line_of(&json, "\"A-1\" "), "{err}");
        assert_eq!(
            err.message,
            "accountID: \"A-1\" occurs more than once for financialInstitutionID 923456783"
        );

        // In a later customer of the same institution; another institution may reuse it.
        let json = format!(
            "{{\"providerID\": \"985399077\", \"customers\": [\n{}\n]}}",
            [
                ("14842249091", "923456783", "A-1"),
                ("29868099311", "934567897", "A-1"),
                ("29868099311", "923456783", "A-2"),
                ("29868099311", "923456783", "A-1"),
            ]
            .map(|(nin, fi, account)| {
                format!(
                    "{{\"customerID\": \"{nin}\", \"financialInstitutionID\": \"{fi}\", \"loans\": [{}]}}",
                    CARD.replace("\"C-1\"", &format!("\"{account}\"")).replace('\n', " ")
                )
            })
            .join(",\n")
        );
        let err = error(&json);
        assert_eq!(err.line, 5, "{err}");
        assert!(
            err.message
                .starts_with("accountID: \"A-1\" occurs more than once"),
            "{err}"
        );
    }

    #[test]
    fn duplicate_account_ids_before_the_institution_is_known() {
        let card = CARD.replace('\n', " ");
        // Duplicate inside the customer, financialInstitutionID last.
        let json = format!(
            "{{\"providerID\": \"985399077\", \"customers\": [\n{{\"customerID\": \"14842249091\",\n\"loans\": [{card},\n{card}],\n\"financialInstitutionID\": \"923456783\"}}]}}"
        );
        let err = error(&json);
        assert_eq!(err.line, 4, "{err}");
        assert_eq!(
            err.message,
            "accountID: \"C-1\" occurs more than once in this customer's loans"
        );
        // Duplicate with an earlier customer, found when the institution comes.
        let json = format!(
            "{{\"providerID\": \"985399077\", \"customers\": [\n{{\"customerID\": \"14842249091\", \"financialInstitutionID\": \"923456783\", \"loans\": [{card}]}},\n{{\"customerID\": \"29868099311\", \"loans\": [{card}],\n\"financialInstitutionID\": \"923456783\"}}]}}"
        );
        let err = error(&json);
        assert_eq!(err.line, 4, "{err}");
        assert_eq!(
            err.message,
            "financialInstitutionID: accountID \"C-1\" occurs more than once for financialInstitutionID 923456783"
        );
    }

    #[test]
    fn a_field_given_twice_is_refused() {
        let json = wrap(&[&REPAYMENT.replace("\"terms\": 48,", "\"terms\": 48,\n\"terms\": 47,")]);
        let err = error(&json);
        assert_eq!(err.line, line_of(&json, "\"terms\": 47"), "{err}");
        assert_eq!(
            err.message,
            "terms: the field occurs twice in the same object"
        );
    }

    #[test]
    fn columns_count_characters() {
        let json = "{\"providerID\": \"985399077\", \"customers\": [{\"financialInstitutionName\": \"Ørsta Sparebank\", \"customerID\": \"14842249092\"}]}";
        let err = error(json);
        let end = json.find("14842249092").unwrap() + 12;
        assert_eq!(err.column, json[..end].chars().count(), "{err}");
        assert_eq!(char_position("ab\n", 2, 0), (1, 3));
        assert_eq!(char_position("", 1, 0), (1, 1));
    }
}
