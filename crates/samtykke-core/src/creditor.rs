//! Live creditors (issue 21): the financial institutions whose
//! `getDataForSSN` and `getalldata` endpoints Samtykke calls, their sync
//! state, and one customer's answer ([`CustomerLoans`]).
//!
//! No HTTP here: the outbound client lives in `samtykke-http`
//! (`creditors::client`); this module holds the typed values it produces and
//! the store keeps.

use std::fmt;
use std::time::Duration;

use time::OffsetDateTime;

use crate::debt::{parse_customer_loans_json, DebtEntry, DeliveryError, Loan};
use crate::domain::{Nin, NinPolicy, OrgNumber};

/// Default timeout of one `getDataForSSN` call (the protocol's 500 ms).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(500);
/// Longest accepted timeout.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(60);
/// Default `getalldata` page size: the number of customers a full page has;
/// a page with fewer ends the paging.
pub const DEFAULT_PAGE_SIZE: u32 = 10_000;

// ---------------------------------------------------------------------------
// financialInstitutionID
// ---------------------------------------------------------------------------

/// A `financialInstitutionID`: a Norwegian 9-digit organisation number (with
/// a valid check digit), or a foreign institution's id of 9 to 16 ASCII
/// letters, digits or `-` (a 10-digit Swedish one, say). Nine digits are
/// always read as a Norwegian number, so a typo in one is refused rather
/// than taken for a foreign id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FinancialInstitutionId(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FinancialInstitutionIdError {
    #[error(
        "a financialInstitutionID is a 9-digit organisation number or a foreign id of 9 to 16 letters, digits or '-'"
    )]
    Format,
    #[error("the organisation number's check digit is wrong")]
    CheckDigit,
}

impl FinancialInstitutionId {
    pub fn parse(input: &str) -> Result<Self, FinancialInstitutionIdError> {
        if input.len() == 9 && input.bytes().all(|b| b.is_ascii_digit()) {
            return OrgNumber::parse(input)
                .map(Self::from)
                .map_err(|_| FinancialInstitutionIdError::CheckDigit);
        }
        let ok_chars = input
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-');
        if !(9..=16).contains(&input.len()) || !ok_chars || input.starts_with('-') {
            return Err(FinancialInstitutionIdError::Format);
        }
        Ok(Self(input.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The organisation number, for a Norwegian institution.
    pub fn org_number(&self) -> Option<OrgNumber> {
        OrgNumber::parse(&self.0).ok()
    }

    /// Whether this is a Norwegian organisation number.
    pub fn is_norwegian(&self) -> bool {
        self.org_number().is_some()
    }
}

impl From<OrgNumber> for FinancialInstitutionId {
    fn from(org: OrgNumber) -> Self {
        Self(org.as_str().to_owned())
    }
}

impl fmt::Display for FinancialInstitutionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

// ---------------------------------------------------------------------------
// The registration
// ---------------------------------------------------------------------------

/// A creditor's base URL: `https://…` (or `http://…` where the caller
/// allows it, in sandbox mode), without query or fragment; the protocol's
/// paths (`debt-information/v1/loans/…`) are appended to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreditorEndpoint(url::Url);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CreditorEndpointError {
    #[error("the endpoint is not an absolute URL: {0}")]
    Url(String),
    #[error("the endpoint must be an https:// URL (http:// is allowed in sandbox mode only)")]
    Scheme,
    #[error("the endpoint must have no query, fragment or user info")]
    Extra,
}

impl CreditorEndpoint {
    /// Parses an endpoint; `allow_http` admits `http://` (sandbox mode).
    pub fn parse(input: &str, allow_http: bool) -> Result<Self, CreditorEndpointError> {
        let mut url =
            url::Url::parse(input.trim()).map_err(|e| CreditorEndpointError::Url(e.to_string()))?;
        match url.scheme() {
            "https" => {}
            "http" if allow_http => {}
            _ => return Err(CreditorEndpointError::Scheme),
        }
        if url.host().is_none() {
            return Err(CreditorEndpointError::Url("no host".to_owned()));
        }
        if url.query().is_some()
            || url.fragment().is_some()
            || !url.username().is_empty()
            || url.password().is_some()
        {
            return Err(CreditorEndpointError::Extra);
        }
        if !url.path().ends_with('/') {
            let path = format!("{}/", url.path());
            url.set_path(&path);
        }
        Ok(Self(url))
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    pub fn url(&self) -> &url::Url {
        &self.0
    }

    pub fn is_https(&self) -> bool {
        self.0.scheme() == "https"
    }

    /// `getDataForSSN`: `{base}debt-information/v1/loans/{fi}/customer`.
    pub fn customer_url(&self, fi: &FinancialInstitutionId) -> String {
        format!("{}debt-information/v1/loans/{fi}/customer", self.0)
    }

    /// `getalldata`: `{base}debt-information/v1/loans/{fi}?page=N`.
    pub fn all_data_url(&self, fi: &FinancialInstitutionId, page: u32) -> String {
        format!("{}debt-information/v1/loans/{fi}?page={page}", self.0)
    }
}

impl fmt::Display for CreditorEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.as_str())
    }
}

/// A registered creditor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Creditor {
    /// Its `financialInstitutionID`, the key.
    pub id: FinancialInstitutionId,
    /// The name shown as `creditorName`.
    pub name: String,
    pub endpoint: CreditorEndpoint,
    /// The whole `getDataForSSN` call, body included.
    pub timeout: Duration,
    /// At most this many calls at once (None: no limit of its own).
    pub max_concurrent: Option<u32>,
    /// The organisation number in the `organizationIdentifier` of the TLS
    /// certificate it (or its IT provider) uses; None: its own number.
    pub certificate_org: Option<OrgNumber>,
    /// Asked on every lookup even without stored data for the person (for
    /// creditors that deliver no `getalldata`).
    pub always_ask: bool,
    pub enabled: bool,
    /// `getalldata` page size (customers per full page); None: the global
    /// setting.
    pub page_size: Option<u32>,
    pub created_at: OffsetDateTime,
}

impl Creditor {
    /// The organisation number its certificates carry: `certificate_org`,
    /// else its own (None for a foreign institution without one).
    pub fn certificate_org_number(&self) -> Option<OrgNumber> {
        self.certificate_org
            .clone()
            .or_else(|| self.id.org_number())
    }
}

/// Validates a creditor name (1 to 200 characters, trimmed).
pub fn parse_creditor_name(input: &str) -> Result<String, String> {
    let name = input.trim();
    if name.is_empty() || name.chars().count() > crate::debt::MAX_CREDITOR_NAME_CHARS {
        return Err(format!(
            "a creditor name has 1 to {} characters",
            crate::debt::MAX_CREDITOR_NAME_CHARS
        ));
    }
    Ok(name.to_owned())
}

/// How a `getalldata` sync ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SyncOutcome {
    /// The data was replaced.
    Ok,
    /// The call failed (connection, status, timeout); old data kept.
    Failed,
    /// The delivery was invalid; old data kept.
    Invalid,
}

impl SyncOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Failed => "failed",
            Self::Invalid => "invalid",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "ok" => Some(Self::Ok),
            "failed" => Some(Self::Failed),
            "invalid" => Some(Self::Invalid),
            _ => None,
        }
    }
}

impl fmt::Display for SyncOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One finished sync attempt, as [`crate::store::Store::record_sync_outcome`]
/// records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncReport {
    pub at: OffsetDateTime,
    pub outcome: SyncOutcome,
    /// Loans stored (Ok only).
    pub loans: Option<u64>,
    /// A short reason without personal data (not Ok).
    pub error: Option<String>,
}

/// A creditor's `getalldata` state.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CreditorSyncState {
    pub last_attempt_at: Option<OffsetDateTime>,
    pub last_success_at: Option<OffsetDateTime>,
    pub last_outcome: Option<SyncOutcome>,
    /// Loans stored by the last successful sync.
    pub last_size: Option<u64>,
    pub last_error: Option<String>,
    pub consecutive_failures: u32,
    /// The last day a process claimed the daily sync for.
    pub claimed_day: Option<time::Date>,
}

/// A creditor with its sync state and when its stored data was delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreditorRecord {
    pub creditor: Creditor,
    pub sync: CreditorSyncState,
    /// When the stored loans were last replaced (import, getalldata, push).
    pub stored_at: Option<OffsetDateTime>,
}

/// One creditor's stored data for one person (see
/// [`crate::store::Store::stored_debt_of`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCreditorDebt {
    pub id: FinancialInstitutionId,
    /// The registered name, else the delivered `financialInstitutionName`.
    pub name: String,
    /// When this creditor's stored data was delivered (None: unknown, data
    /// from before this was recorded).
    pub stored_at: Option<OffsetDateTime>,
    pub entries: Vec<DebtEntry>,
}

/// Identifies one staged `getalldata` sync.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SyncId(pub String);

impl SyncId {
    pub fn generate() -> Self {
        Self(uuid::Uuid::new_v4().to_string())
    }
}

impl fmt::Display for SyncId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

// ---------------------------------------------------------------------------
// getDataForSSN
// ---------------------------------------------------------------------------

/// One customer's answer: `{customerID, financialInstitutionID, loans}`
/// (a `getDataForSSN` body, or an element of `customers`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomerLoans {
    pub customer_id: Nin,
    pub financial_institution_id: FinancialInstitutionId,
    /// `financialInstitutionName`, if given.
    pub name: Option<String>,
    /// (accountID, loan), in answer order.
    pub loans: Vec<(String, Loan)>,
}

impl CustomerLoans {
    /// Parses and validates a `getDataForSSN` body: the same rules as a
    /// delivery's customer (valid checksums, no negative amount, `coBorrower`
    /// 0/1/2, no duplicate `accountID`).
    pub fn parse(body: &[u8], policy: NinPolicy) -> Result<Self, DeliveryError> {
        parse_customer_loans_json(body, policy)
    }

    /// Checks that the answer is about `nin` at `fi`.
    pub fn answers(&self, nin: &Nin, fi: &FinancialInstitutionId) -> bool {
        &self.customer_id == nin && &self.financial_institution_id == fi
    }

    /// The loans as debt entries, named `creditor_name`.
    pub fn entries(&self, creditor_name: &str) -> Vec<DebtEntry> {
        self.loans
            .iter()
            .map(|(account_id, loan)| DebtEntry {
                nin: self.customer_id.clone(),
                creditor_org: self.financial_institution_id.clone(),
                creditor_name: creditor_name.to_owned(),
                account_id: account_id.clone(),
                loan: loan.clone(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn financial_institution_ids_are_norwegian_or_foreign() {
        let fi = FinancialInstitutionId::parse("923456783").unwrap();
        assert!(fi.is_norwegian());
        assert_eq!(fi.org_number().unwrap().as_str(), "923456783");
        for foreign in [
            "5560001234",
            "SE5560001234",
            "DE-1234567890123",
            "123456789012",
        ] {
            let fi = FinancialInstitutionId::parse(foreign).unwrap();
            assert!(!fi.is_norwegian(), "{foreign}");
            assert_eq!(fi.as_str(), foreign);
        }
        assert_eq!(
            FinancialInstitutionId::parse("923456784"),
            Err(FinancialInstitutionIdError::CheckDigit)
        );
        for bad in [
            "",
            "92345678",
            "12345678901234567",
            "5560 01234",
            "-556000123",
            "ÆØÅ123456",
        ] {
            assert_eq!(
                FinancialInstitutionId::parse(bad),
                Err(FinancialInstitutionIdError::Format),
                "{bad}"
            );
        }
    }

    #[test]
    fn endpoints_are_https_unless_allowed_and_end_with_a_slash() {
        let e = CreditorEndpoint::parse("https://creditor.example/api", false).unwrap();
        assert_eq!(e.as_str(), "https://creditor.example/api/");
        let fi = FinancialInstitutionId::parse("923456783").unwrap();
        assert_eq!(
            e.customer_url(&fi),
            "https://creditor.example/api/debt-information/v1/loans/923456783/customer"
        );
        assert_eq!(
            e.all_data_url(&fi, 2),
            "https://creditor.example/api/debt-information/v1/loans/923456783?page=2"
        );
        assert_eq!(
            CreditorEndpoint::parse("http://127.0.0.1:8080/", false),
            Err(CreditorEndpointError::Scheme)
        );
        assert!(CreditorEndpoint::parse("http://127.0.0.1:8080/", true).is_ok());
        assert_eq!(
            CreditorEndpoint::parse("ftp://x.example/", true),
            Err(CreditorEndpointError::Scheme)
        );
        assert_eq!(
            CreditorEndpoint::parse("https://x.example/?a=1", false),
            Err(CreditorEndpointError::Extra)
        );
        assert!(matches!(
            CreditorEndpoint::parse("creditor.example", false),
            Err(CreditorEndpointError::Url(_))
        ));
    }

    #[test]
    fn a_get_data_for_ssn_answer_is_validated() {
        let body = br#"{"customerID": "14842249091", "financialInstitutionID": "5560001234",
            "loans": [{"type": "chargeCard", "accountID": "K-1", "timestamp": "2026-11-01T08:00:00Z",
                       "coBorrower": 0, "interestBearingBalance": 0, "nonInterestBearingBalance": 100}]}"#;
        let answer = CustomerLoans::parse(body, NinPolicy::AllowSynthetic).unwrap();
        assert_eq!(answer.financial_institution_id.as_str(), "5560001234");
        assert_eq!(answer.loans.len(), 1);
        let entries = answer.entries("Svensk Bank AB");
        assert_eq!(entries[0].creditor_name, "Svensk Bank AB");
        assert_eq!(entries[0].account_id, "K-1");
        let nin = Nin::parse("14842249091", NinPolicy::AllowSynthetic).unwrap();
        assert!(answer.answers(&nin, &answer.financial_institution_id.clone()));

        let empty = CustomerLoans::parse(
            br#"{"customerID": "14842249091", "financialInstitutionID": "923456783", "loans": []}"#,
            NinPolicy::AllowSynthetic,
        )
        .unwrap();
        assert!(empty.loans.is_empty());

        for bad in [
            &br#"{"customerID": "14842249091", "financialInstitutionID": "923456783"}"#[..],
            br#"{"customerID": "14842249092", "financialInstitutionID": "923456783", "loans": []}"#,
            br#"{"customerID": "14842249091", "financialInstitutionID": "923456783", "loans": [{"type": "chargeCard", "accountID": "K-1", "timestamp": "2026-11-01T08:00:00Z", "interestBearingBalance": 0, "nonInterestBearingBalance": 100}]}"#,
            br#"{"customerID": "14842249091", "financialInstitutionID": "923456783", "loans": [{"type": "chargeCard", "accountID": "K-1", "timestamp": "2026-11-01T08:00:00Z", "coBorrower": 0, "interestBearingBalance": -1, "nonInterestBearingBalance": 100}]}"#,
            br#"[]"#,
            b"<html>",
            br#"{"customerID": "14842249091", "financialInstitutionID": "923456783", "loans": []} trailing"#,
        ] {
            let err = CustomerLoans::parse(bad, NinPolicy::AllowSynthetic).unwrap_err();
            assert!(!err.message.contains("14842249092"), "{err}");
        }
    }
}
