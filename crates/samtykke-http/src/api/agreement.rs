//! `PUT /v1/consent/agreement`: register a consent the institution collected
//! itself (SPEC §5). Errors use the OpenAPI's `SpringErrorSchema`.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use samtykke_core::agreement::{self, AgreementError, AgreementRequest};
use samtykke_core::consent::Consent;
use samtykke_core::domain::{ApiAudience, Scope};
use samtykke_core::store::{ConsentInsert, StoreError};
use serde_json::Value;

use super::bearer::{authenticate, BearerError};
use super::dto::{
    ConsentResponseDTO, CreateConsentRequestDTO, CreateConsentResponseDTO, SpringErrorSchema,
};
use super::iso;
use super::trace::TraceId;
use crate::AppState;

const PATH: &str = "/v1/consent/agreement";

/// `{status, timestamp, path, error, message, requestId}`.
struct SpringError {
    status: StatusCode,
    message: String,
}

impl SpringError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    fn into_response(self, trace: &str, now: time::OffsetDateTime) -> Response {
        let body = SpringErrorSchema {
            status: self.status.as_u16(),
            timestamp: iso(now),
            path: PATH.to_owned(),
            error: self.status.canonical_reason().unwrap_or("Error").to_owned(),
            message: self.message,
            requestId: trace.to_owned(),
        };
        let mut response = (self.status, Json(body)).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if self.status == StatusCode::UNAUTHORIZED {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"samtykke\", error=\"invalid_token\""),
            );
        }
        response
    }
}

fn store_failure(e: StoreError, trace: &str) -> SpringError {
    tracing::error!(error = %e, trace_id = trace, "storage failure registering an agreement consent");
    match e {
        StoreError::Unavailable(_) => SpringError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the service is temporarily unavailable; nothing was registered",
        ),
        _ => SpringError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal error; you may retry the same request",
        ),
    }
}

/// The response; `echo_older_name` when the request named the id by its
/// older name `our_consent_id`, which is then echoed under that name too
/// (`client_consent_id` stays, as the published schema requires it).
fn response_body(consent: &Consent, echo_older_name: bool) -> CreateConsentResponseDTO {
    let id = consent.client_consent_id.clone().unwrap_or_default();
    CreateConsentResponseDTO {
        our_consent_id: echo_older_name.then(|| id.clone()),
        client_consent_id: id,
        consent: ConsentResponseDTO {
            id: consent.id.to_string(),
            expires_at: iso(consent.expires_at),
            scope_of_consent: consent.purpose.into(),
        },
    }
}

/// Reads the JSON body's fields with their JSON types checked.
fn parse_body(body: &[u8]) -> Result<Value, SpringError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        SpringError::new(
            StatusCode::BAD_REQUEST,
            format!("the body is not valid JSON: {e}"),
        )
    })?;
    if !value.is_object() {
        return Err(SpringError::new(
            StatusCode::BAD_REQUEST,
            "the body must be a JSON object",
        ));
    }
    Ok(value)
}

fn string_field<'a>(body: &'a Value, name: &str) -> Result<Option<&'a str>, SpringError> {
    match body.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(SpringError::new(
            StatusCode::BAD_REQUEST,
            format!("{name} must be a string"),
        )),
    }
}

/// A whole-number field (`int32` in the published schema), given as a JSON
/// number or, as the reference service's JSON binding accepts, a string of
/// decimal digits (`"100"`, with an optional leading `-`). Anything else
/// (`"1e2"`, `"12abc"`, `" 12"`, `12.5`, a value beyond `int32`) is a 400.
fn whole_number_field(body: &Value, name: &str) -> Result<Option<i64>, SpringError> {
    let bad = |what: &str| SpringError::new(StatusCode::BAD_REQUEST, format!("{name} {what}"));
    let not_whole = || {
        bad("must be a whole number: a JSON number such as 100, or a string of digits such as \"100\"")
    };
    let value = match body.get(name) {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Number(n)) => match (n.as_i64(), n.as_f64()) {
            (Some(v), _) => v,
            // Beyond i64 (a u64, or a whole number too long for both).
            (None, Some(f)) if n.is_u64() || f.abs() >= 9.2e18 => {
                return Err(bad(if f > 0.0 {
                    "is too large"
                } else {
                    "is too small"
                }))
            }
            (None, _) => return Err(not_whole()),
        },
        Some(Value::String(s)) => {
            let digits = s.strip_prefix('-').unwrap_or(s);
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return Err(not_whole());
            }
            // Only digits: parsing fails on overflow alone.
            s.parse::<i64>().map_err(|_| bad("is too large"))?
        }
        Some(_) => return Err(not_whole()),
    };
    if i32::try_from(value).is_err() {
        return Err(bad(if value > 0 {
            "is too large"
        } else {
            "is too small"
        }));
    }
    Ok(Some(value))
}

async fn register(
    state: &AppState,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
    trace: &str,
    now: time::OffsetDateTime,
) -> Result<Response, SpringError> {
    let token = authenticate(state, headers).await.map_err(|e| match e {
        BearerError::Missing => {
            SpringError::new(StatusCode::UNAUTHORIZED, "an access token is required")
        }
        BearerError::NotBearer => {
            SpringError::new(StatusCode::UNAUTHORIZED, crate::api::bearer::NOT_BEARER)
        }
        BearerError::Invalid => SpringError::new(
            StatusCode::UNAUTHORIZED,
            "the access token is invalid, expired or revoked",
        ),
        BearerError::Store(e) => store_failure(e, trace),
    })?;
    if token.audience != ApiAudience::ConsentAgreement
        || !token.scopes.contains(Scope::ConsentCreate)
    {
        return Err(SpringError::new(
            StatusCode::FORBIDDEN,
            "the access token is not for this API (audience {api}/v1/consent/agreement, scope consent.create)",
        ));
    }
    let client = state
        .client(&token.client_id)
        .await
        .map_err(|e| store_failure(e, trace))?
        .ok_or_else(|| SpringError::new(StatusCode::UNAUTHORIZED, "the client no longer exists"))?;

    let body = body.map_err(|r| {
        SpringError::new(
            r.status(),
            "the request body is too large or could not be read",
        )
    })?;
    let media = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(str::trim)
        .unwrap_or("");
    if !media.eq_ignore_ascii_case("application/json") {
        return Err(SpringError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "the body must be application/json",
        ));
    }
    let body = parse_body(&body)?;
    let older_name = string_field(&body, "our_consent_id")?;
    let client_consent_id = match (string_field(&body, "client_consent_id")?, older_name) {
        (Some(a), Some(b)) if a != b => {
            return Err(SpringError::new(
                StatusCode::BAD_REQUEST,
                "client_consent_id and our_consent_id (its older name) differ",
            ))
        }
        (a, b) => a.or(b),
    };
    let days = whole_number_field(&body, "consent_duration_days")?;
    let request = AgreementRequest {
        nin: string_field(&body, "nin")?,
        scope_of_consent: string_field(&body, "scope_of_consent")?,
        consent_duration_days: days,
        client_consent_id,
    };
    let consent =
        agreement::decide(&client, &request, state.nin_policy(), now).map_err(|e| match e {
            AgreementError::Invalid(m) => SpringError::new(StatusCode::BAD_REQUEST, m),
            AgreementError::Forbidden(m) => SpringError::new(StatusCode::FORBIDDEN, m),
        })?;
    let registered = match state
        .store
        .insert_consent(&consent)
        .await
        .map_err(|e| store_failure(e, trace))?
    {
        ConsentInsert::Created => {
            state.metrics.consent_created(&consent);
            tracing::info!(client_id = %client.id, consent_id = %consent.id, "agreement consent registered");
            consent
        }
        ConsentInsert::Existing(existing) if existing.same_agreement(&consent) => existing,
        ConsentInsert::Existing(_) => {
            return Err(SpringError::new(
                StatusCode::CONFLICT,
                "this client_consent_id is already registered with other data",
            ))
        }
    };
    let mut response = Json(response_body(&registered, older_name.is_some())).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// `PUT /v1/consent/agreement`
#[utoipa::path(put, path = "/v1/consent/agreement", tag = "Agreement API", operation_id = "createConsent",
    request_body = CreateConsentRequestDTO,
    responses(
        (status = 200, description = "Consent was registered (or had been, with the same data)", body = CreateConsentResponseDTO),
        (status = 405, description = "Any method but PUT (the header Allow: PUT says so)", body = SpringErrorSchema),
        (status = 400, description = "Bad request; message says what to fix", body = SpringErrorSchema),
        (status = 401, description = "Missing, malformed, expired or revoked access token", body = SpringErrorSchema),
        (status = 403, description = "You are not allowed to register this consent", body = SpringErrorSchema),
        (status = 409, description = "This client_consent_id is already registered with other data", body = SpringErrorSchema),
        (status = 415, description = "The body is not application/json", body = SpringErrorSchema),
        (status = 500, description = "Internal error; retry with the same request", body = SpringErrorSchema)),
    security(("bearer" = ["consent.create"])))]
pub async fn put_agreement_consent(
    State(state): State<AppState>,
    trace: TraceId,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let now = state.clock.now();
    match register(&state, &headers, body, &trace.0, now).await {
        Ok(response) => response,
        Err(e) => e.into_response(&trace.0, now),
    }
}

/// Any other method on `/v1/consent/agreement`: 405 with `Allow: PUT`, in
/// this API's error shape (a POST is the commonest mistake).
pub async fn agreement_method_not_allowed(
    State(state): State<AppState>,
    trace: TraceId,
) -> Response {
    let mut response = SpringError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "this endpoint takes PUT (registering the same client_consent_id again is safe)",
    )
    .into_response(&trace.0, state.clock.now());
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("PUT"));
    response
}
