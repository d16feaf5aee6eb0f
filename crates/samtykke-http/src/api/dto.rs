//! The wire types of the resource APIs. Names and fields follow the published
//! OpenAPI (`reference/openapi.json`) so that integrators' generated clients
//! work unchanged; `/openapi.json` is generated from these types.
#![allow(non_snake_case)] // field names are the contract's camelCase

use serde::{Deserialize, Serialize};
use utoipa::openapi::schema::{AnyOfBuilder, ObjectBuilder, Ref, Schema, Type};
use utoipa::ToSchema;

/// Error body of the agreement API.
#[derive(Debug, Serialize, ToSchema)]
pub struct SpringErrorSchema {
    /// Status code of the response
    pub status: u16,
    /// Timestamp of the response (ISO-8601 formatted)
    #[schema(format = DateTime)]
    pub timestamp: String,
    /// The endpoint path of the failed request
    pub path: String,
    /// Short description of the error
    pub error: String,
    /// More detailed description of the error
    #[schema(required = false)]
    pub message: String,
    /// The request ID
    pub requestId: String,
}

/// `PUT /v1/consent/agreement` request. `our_consent_id` is accepted as an
/// older name of `client_consent_id`. (Documentation only: the handler reads
/// the JSON field by field so that each mistake gets its own message.)
#[derive(Debug, Deserialize, ToSchema)]
#[allow(dead_code)]
pub struct CreateConsentRequestDTO {
    /// Norwegian national identity number
    #[schema(example = "12829499914")]
    pub nin: String,
    /// The scope of consent (e.g. presentation)
    #[schema(inline)]
    pub scope_of_consent: ScopeOfConsent,
    /// The consent duration (in days)
    #[schema(example = 100, format = Int32)]
    pub consent_duration_days: i32,
    /// The ID for the consent stored on your side. Must be unique
    #[schema(example = "e91fcf4c-cfbd-4d59-91e3-71da7a498cac")]
    pub client_consent_id: String,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[schema(as = ScopeOfConsent)]
pub enum ScopeOfConsent {
    #[serde(rename = "debt.unsecured.presentation")]
    Presentation,
    #[serde(rename = "debt.unsecured.processing")]
    Processing,
}

impl From<samtykke_core::domain::Purpose> for ScopeOfConsent {
    fn from(p: samtykke_core::domain::Purpose) -> Self {
        match p {
            samtykke_core::domain::Purpose::Presentation => Self::Presentation,
            samtykke_core::domain::Purpose::Processing => Self::Processing,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ConsentResponseDTO {
    /// Unique identifier for the stored consent. Use this id when referring to the consent in other APIs
    #[schema(example = "0dcec3d5-6844-4d2c-b972-83086064b111")]
    pub id: String,
    /// Expiry time of the consent (ISO-8601 formatted)
    #[schema(format = DateTime, example = "2018-01-10T06:14:00Z")]
    pub expires_at: String,
    /// Scope of the generated consent
    #[schema(inline)]
    pub scope_of_consent: ScopeOfConsent,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CreateConsentResponseDTO {
    /// The id for the consent on _your_ side, as in the request
    pub client_consent_id: String,
    /// The same id under its older name, present only when the request
    /// named it `our_consent_id` (deprecated). Left out of the served
    /// OpenAPI, which keeps to the published schema (the integrated-consent
    /// guide documents it).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(ignore)]
    pub our_consent_id: Option<String>,
    pub consent: ConsentResponseDTO,
}

/// The event content if event is of type SAMTYKKE_OPPRETTET
#[derive(Debug, Serialize, ToSchema)]
pub struct SamtykkeOpprettetEventDTO {
    /// The client that this consent has been given to
    #[schema(format = Uuid)]
    pub clientId: String,
    /// This event's consent
    #[schema(format = Uuid)]
    pub consentId: String,
    /// Which type of consent the user agreed to
    #[schema(example = "debt.unsecured.presentation")]
    pub scope: String,
    /// The client's reference to this consent (agreement consents)
    #[serde(skip_serializing_if = "Option::is_none")]
    pub externalConsentId: Option<String>,
}

/// The event content if event is of type SAMTYKKE_ARKIVERT
#[derive(Debug, Serialize, ToSchema)]
pub struct SamtykkeArkivertEventDTO {
    /// The client that this consent was given to
    #[schema(format = Uuid)]
    pub clientId: String,
    /// This event's consent
    #[schema(format = Uuid)]
    pub consentId: String,
}

#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[allow(non_camel_case_types)]
pub enum EventType {
    SAMTYKKE_OPPRETTET,
    SAMTYKKE_ARKIVERT,
}

/// The actual events
#[derive(Debug, Serialize, ToSchema)]
pub struct SamtykkeFeedEventDTO {
    /// This event's sequenceNr
    #[schema(minimum = 1, format = Int64)]
    pub sequenceNr: i64,
    /// This event's id
    #[schema(format = Uuid)]
    pub eventId: String,
    /// This event's consent
    #[schema(format = Uuid)]
    pub consentId: String,
    /// When the event occurred (ISO-8601)
    #[schema(format = DateTime)]
    pub timestamp: String,
    /// The event type
    #[schema(inline)]
    pub eventType: EventType,
    pub samtykkeOpprettetEvent: Option<SamtykkeOpprettetEventDTO>,
    pub samtykkeArkivertEvent: Option<SamtykkeArkivertEventDTO>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SamtykkeFeedResponseDTO {
    /// The start sequence number (included) for this response: fromSequenceNr, at least 1
    #[schema(minimum = 1, format = Int64)]
    pub startSequenceNr: i64,
    /// The last (included) sequence number for this response. On an empty page,
    /// startSequenceNr - 1, and 1 at the start of the feed (no event has sequence
    /// number 1), so that the next page from endSequenceNr + 1 never skips an event
    #[schema(minimum = 1, format = Int64)]
    pub endSequenceNr: i64,
    /// When this response was generated (ISO-8601)
    #[schema(format = DateTime)]
    pub generatedAt: String,
    /// The actual events
    pub result: Vec<SamtykkeFeedEventDTO>,
}

/// The last ('newest') sequence number; 0 when the client has no events
#[derive(Debug, Serialize, ToSchema)]
pub struct LastSequenceNrResponse {
    #[schema(format = Int64)]
    pub lastSequenceNr: i64,
}

/// The first ('oldest') sequence number; 0 when the client has no events
#[derive(Debug, Serialize, ToSchema)]
pub struct FirstSequenceNrResponse {
    #[schema(format = Int64)]
    pub firstSequenceNr: i64,
}

/// One of the three loan objects, or `null` for a creditor that did not
/// answer (the reference's `"nullable": true`, in OpenAPI 3.1's form).
fn loan_schema() -> Schema {
    Schema::AnyOf(
        AnyOfBuilder::new()
            .item(Ref::from_schema_name("credit_facility"))
            .item(Ref::from_schema_name("repayment_loan"))
            .item(Ref::from_schema_name("charge_cards"))
            .item(ObjectBuilder::new().schema_type(Type::Null))
            .build(),
    )
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LoanItem {
    /// Name of creditor
    #[schema(example = "NORSK GJELDSINFORMASJON AS")]
    pub creditorName: String,
    /// Serialized with `type` first and the other fields in the schema's
    /// order; `null` when the creditor did not answer and its stored data
    /// was too old to stand in (counted in `numberOfcreditorsMissing`).
    #[schema(schema_with = loan_schema)]
    pub loan: Option<samtykke_core::debt::Loan>,
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(as = consent_metadata)]
pub struct ConsentMetadata {
    /// The unique ID for the consent.
    pub id: String,
    /// Consent expiry in epoch time.
    pub exp: i64,
    /// The scope the user consented to sharing
    #[schema(inline)]
    pub scope: ScopeOfConsent,
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(as = debt_information)]
pub struct DebtInformation {
    pub consent: ConsentMetadata,
    /// Norwegian national identity number.
    pub ssn: String,
    #[schema(inline)]
    pub loans: Vec<LoanItem>,
    /// How many of the creditors of the loan applicant that answered the
    /// request (their data was served, fresh or stored)
    pub numberOfCreditorsAnswered: usize,
    /// How many of the creditors of the loan applicant that did not answer
    /// the request. When this is greater than 0, each unanswered loan will
    /// be reported as null.
    pub numberOfcreditorsMissing: usize,
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(as = consent_status)]
pub struct ConsentStatusDTO {
    /// Whether this consent is active
    pub active: bool,
    /// Consent expiry in epoch time.
    pub expires_at: i64,
}

/// Error body of the debt and feed APIs.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = error)]
pub struct ApiErrorBody {
    /// The error
    #[schema(example = "invalid consent")]
    pub error: String,
    /// A short description of the error
    pub error_description: String,
    /// Time when the error was handled (ISO 8601)
    pub timestamp: String,
    /// Unique id for debugging: the X-Trace-ID header when it was sent
    pub trace_id: String,
}

/// Documentation-only: the loan objects as delivered by creditors.
#[derive(ToSchema)]
#[schema(as = credit_facility)]
#[allow(dead_code)]
pub struct CreditFacilitySchema {
    #[schema(example = "creditFacility")]
    r#type: String,
    #[schema(example = "2018-02-05T12:54:12Z")]
    timestamp: String,
    /// 2=Has co-borrower, 1=Is co-borrower, 0=No coBorrower
    coBorrower: i32,
    /// Øre (100 NOK encoded as 10000)
    creditLimit: i64,
    interestBearingBalance: i64,
    nonInterestBearingBalance: i64,
    /// 10.20 % is encoded as 1020
    nominalInterestRate: i64,
    installmentCharges: i64,
    #[schema(inline)]
    installmentChargePeriod: ChargePeriod,
}

#[derive(ToSchema)]
#[schema(as = repayment_loan)]
#[allow(dead_code)]
pub struct RepaymentLoanSchema {
    #[schema(example = "repaymentLoan")]
    r#type: String,
    timestamp: String,
    coBorrower: i32,
    originalBalance: i64,
    balance: i64,
    /// Remaining terms in months
    terms: i64,
    nominalInterestRate: i64,
    installmentCharges: i64,
    #[schema(inline)]
    installmentChargePeriod: ChargePeriod,
}

#[derive(ToSchema)]
#[schema(as = charge_cards)]
#[allow(dead_code)]
pub struct ChargeCardSchema {
    #[schema(example = "chargeCard")]
    r#type: String,
    timestamp: String,
    coBorrower: i32,
    interestBearingBalance: i64,
    nonInterestBearingBalance: i64,
}

#[derive(ToSchema)]
#[allow(dead_code, non_camel_case_types, clippy::upper_case_acronyms)]
pub enum ChargePeriod {
    MONTHLY,
    QUARTERLY,
    #[schema(rename = "HALF-YEARLY")]
    HALF_YEARLY,
    YEARLY,
}
