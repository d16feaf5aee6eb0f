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

use std::collections::HashSet;
use std::fmt;

use serde::de::{
    self, DeserializeSeed, Deserializer, Error as _, IgnoredAny, MapAccess, SeqAccess, Visitor,
};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::domain::{Nin, NinPolicy, OrgNumber};

/// The delivery that seeds sandbox mode; parse it with
/// [`NinPolicy::AllowSynthetic`].
pub const SANDBOX_DELIVERY: &str = include_str!("../sandbox/debt.json");

/// Longest accepted `accountID`, in characters.
pub const MAX_ACCOUNT_ID_CHARS: usize = 100;
/// Longest accepted `financialInstitutionName`, in characters.
pub const MAX_CREDITOR_NAME_CHARS: usize = 200;

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

fn org_number(value: Scalar) -> Result<OrgNumber, String> {
    match value {
        Scalar::Str(s) => OrgNumber::parse(&s).map_err(|e| e.to_string()),
        other => expected("a 9-digit organisation number as a string", &other),
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
    fi: Option<&'a OrgNumber>,
    /// (financialInstitutionID, accountID) seen so far in the file.
    seen: &'a mut HashSet<(OrgNumber, String)>,
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
                            Some(fi) => seen.insert((fi.clone(), id.clone())),
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

fn duplicate_account(id: &str, fi: Option<&OrgNumber>) -> String {
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
    pub creditor_org: OrgNumber,
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
    pub provider_id: OrgNumber,
    /// Every loan, in file order.
    pub entries: Vec<DebtEntry>,
    /// Distinct financialInstitutionIDs in file order.
    pub financial_institutions: Vec<OrgNumber>,
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

struct State {
    policy: NinPolicy,
    seen: HashSet<(OrgNumber, String)>,
    entries: Vec<DebtEntry>,
    financial_institutions: Vec<OrgNumber>,
}

/// Parses a creditor's delivery file. The whole file is rejected on the first
/// error. `customerID` is checked with `policy`.
pub fn parse_delivery(json: &str, policy: NinPolicy) -> Result<Delivery, DeliveryError> {
    let json = json.strip_prefix('\u{feff}').unwrap_or(json);
    let mut state = State {
        policy,
        seen: HashSet::new(),
        entries: Vec::new(),
        financial_institutions: Vec::new(),
    };
    let mut de = serde_json::Deserializer::from_str(json);
    let provider_id = DeliverySeed(&mut state)
        .deserialize(&mut de)
        .and_then(|provider| de.end().map(|()| provider))
        .map_err(|e| DeliveryError::from_json(json, &e))?;
    Ok(Delivery {
        provider_id,
        entries: state.entries,
        financial_institutions: state.financial_institutions,
    })
}

/// The top-level object; yields the providerID.
struct DeliverySeed<'a>(&'a mut State);

impl<'de> DeserializeSeed<'de> for DeliverySeed<'_> {
    type Value = OrgNumber;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<OrgNumber, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for DeliverySeed<'_> {
    type Value = OrgNumber;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a delivery object with `providerID` and `customers`")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<OrgNumber, A::Error> {
        let state = self.0;
        let mut provider = None;
        let mut customers = false;
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "providerID" => read_field(&mut map, &mut provider, "providerID", org_number)?,
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

struct CustomersSeed<'a>(&'a mut State);

impl<'de> DeserializeSeed<'de> for CustomersSeed<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for CustomersSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of customer objects in `customers`")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(CustomerSeed(&mut *self.0))?.is_some() {}
        Ok(())
    }
}

/// One customer object; appends its loans to the state.
struct CustomerSeed<'a>(&'a mut State);

impl<'de> DeserializeSeed<'de> for CustomerSeed<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for CustomerSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a customer object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let state = self.0;
        let policy = state.policy;
        let mut nin_value: Option<Nin> = None;
        let mut fi: Option<OrgNumber> = None;
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
                    let seen = &mut state.seen;
                    read_field(&mut map, &mut fi, "financialInstitutionID", |value| {
                        let org = org_number(value)?;
                        for (id, _) in earlier {
                            if !seen.insert((org.clone(), id.clone())) {
                                return Err(format!(
                                    "accountID {}",
                                    duplicate_account(id, Some(&org))
                                ));
                            }
                        }
                        Ok(org)
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
                        seen: &mut state.seen,
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
        let creditor_name = name.flatten().unwrap_or_else(|| format!("Org. nr. {fi}"));
        if !state.financial_institutions.contains(&fi) {
            state.financial_institutions.push(fi.clone());
        }
        state
            .entries
            .extend(loans.into_iter().map(|(account_id, loan)| DebtEntry {
                nin: nin_value.clone(),
                creditor_org: fi.clone(),
                creditor_name: creditor_name.clone(),
                account_id,
                loan,
            }));
        Ok(())
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
            .contains(&delivery.provider_id));
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
            {"customerID": "14842249091", "financialInstitutionID": "934567897", "financialInstitutionName": "Nordlys Bank ASA",
             "loans": [{"type": "chargeCard", "accountID": "X", "timestamp": "2026-11-01T08:00:00Z", "coBorrower": 0, "interestBearingBalance": 1, "nonInterestBearingBalance": 2}]}
        ]}"#;
        let delivery = parse_delivery(json, SANDBOX).unwrap();
        assert_eq!(delivery.provider_id.as_str(), "985399077");
        assert_eq!(
            delivery
                .financial_institutions
                .iter()
                .map(OrgNumber::as_str)
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
                ("14842249091", "934567897", "Nordlys Bank ASA", "X"),
            ]
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

        let json = wrap(&[]).replace("985399077", "985399078");
        let err = error(&json);
        assert_eq!(err.line, 2);
        assert_eq!(
            err.message,
            "providerID: the organisation number's check digit is wrong"
        );

        let json = wrap(&[]).replace("923456783", "92345678");
        let err = error(&json);
        assert_eq!(err.line, 6);
        assert_eq!(
            err.message,
            "financialInstitutionID: an organisation number has exactly 9 digits"
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
