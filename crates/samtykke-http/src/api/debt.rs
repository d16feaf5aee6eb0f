//! The debt API (SPEC §7): `GET /v1/debt`, `GET /v1/debt/{id}`,
//! `GET /v1/debt/{id}/status`, `DELETE /v1/debt/{id}`.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use samtykke_core::consent::{ConsentId, ConsentStatus, RevokedBy};
use samtykke_core::debt_lookup::{DebtLookup, DebtLookupOutcome, DebtLookupRefusal};
use samtykke_core::domain::{ApiAudience, ClientId};
use samtykke_core::store::RevokeOutcome;
use samtykke_core::token::AccessTokenRecord;

use super::bearer::authenticate_unchecked;
use super::dto::{ApiErrorBody, ConsentMetadata, ConsentStatusDTO, DebtInformation, LoanItem};
use super::error::{ApiError, ApiErrorKind};
use super::trace::TraceId;
use crate::access_token::Resolved;
use crate::AppState;

/// One request's context: its trace id and the time it is judged at.
struct Call<'a> {
    state: &'a AppState,
    trace: &'a str,
    now: time::OffsetDateTime,
}

impl Call<'_> {
    fn error(&self, kind: ApiErrorKind) -> ApiError {
        ApiError::new(kind, self.trace, self.now)
    }

    /// A live token for the debt audience.
    async fn debt_token(&self, headers: &HeaderMap) -> Result<AccessTokenRecord, ApiError> {
        let resolved = self.debt_token_unchecked(headers).await?;
        self.live(resolved).await
    }

    /// The token's record once its revocation state is checked; a revoked
    /// token is refused (403 `Invalid access token`). Error paths that end
    /// before the debt lookup check the token here, so that it is refused
    /// as revoked first.
    async fn live(&self, token: Resolved) -> Result<AccessTokenRecord, ApiError> {
        let record = token
            .checked(self.state)
            .await
            .map_err(|e| ApiError::from_store(e, self.trace, self.now))?;
        if record.revoked {
            return Err(self.error(ApiErrorKind::InvalidToken));
        }
        Ok(record)
    }

    /// An unexpired token for the debt audience whose revocation check, if
    /// it is sealed, is left to the debt lookup (one store step for both).
    async fn debt_token_unchecked(&self, headers: &HeaderMap) -> Result<Resolved, ApiError> {
        let resolved = authenticate_unchecked(self.state, headers)
            .await
            .map_err(|e| ApiError::from_bearer(e, self.trace, self.now))?;
        if resolved.record().audience == ApiAudience::Debt {
            return Ok(resolved);
        }
        // A revoked token is refused as such, whatever it was issued for.
        self.live(resolved).await?;
        Err(self.error(ApiErrorKind::InsufficientScope))
    }

    /// A debt fetch (issue 21): the consent is judged first, so that no
    /// creditor is asked for a refused lookup; then the person's creditors
    /// are asked live and the answer composed ([`crate::creditor_fanout`]);
    /// then the store judges again and records the use with the
    /// per-creditor report in one atomic step (consuming a single-use
    /// consent exactly once). A refusal there discards what the creditors
    /// sent, so that what is logged is what is sent.
    async fn fetch_debt(&self, token: &Resolved, id: ConsentId) -> Result<Response, ApiError> {
        let record = token.record();
        if record.consent_id.is_some_and(|bound| bound != id) {
            return Err(self.error(ApiErrorKind::InvalidConsent(None)));
        }
        let mut lookup = DebtLookup {
            consent_id: id,
            client_id: record.client_id.clone(),
            purposes: record.scopes.iter().filter_map(|s| s.purpose()).collect(),
            at: self.now,
            trace_id: self.trace.to_owned(),
            creditors: Vec::new(),
        };
        let store = &self.state.store;
        let store_error = |e| ApiError::from_store(e, self.trace, self.now);
        if let Resolved::Sealed { record, generation } = token {
            if store
                .sealed_token_revoked(record, *generation)
                .await
                .map_err(store_error)?
            {
                return Err(self.error(ApiErrorKind::InvalidToken));
            }
        }
        let stored = store.find_consent(&id).await.map_err(store_error)?;
        let consent = match lookup.judge(stored) {
            Ok(consent) => consent,
            Err(refusal) => return Err(self.refused(refusal, &id, &record.client_id).await),
        };
        let debt = self
            .state
            .fanout
            .look_up(self.state, &consent.nin, self.trace, self.now)
            .await
            .map_err(store_error)?;
        lookup.creditors = debt.report;
        let outcome = match token {
            Resolved::Checked(_) => store.look_up_debt(&lookup).await.map(Some),
            Resolved::Sealed { record, generation } => {
                store
                    .look_up_debt_with_sealed_token(record, *generation, &lookup)
                    .await
            }
        }
        .map_err(store_error)?
        .ok_or_else(|| self.error(ApiErrorKind::InvalidToken))?;
        let consent = match outcome {
            DebtLookupOutcome::Served { consent } => consent,
            DebtLookupOutcome::Refused(refusal) => {
                return Err(self.refused(refusal, &id, &record.client_id).await)
            }
        };
        self.state.metrics.debt_fetched(&consent);
        let body = DebtInformation {
            consent: ConsentMetadata {
                id: id.to_string(),
                exp: consent.expires_at.unix_timestamp(),
                scope: consent.purpose.into(),
            },
            ssn: consent.nin.as_str().to_owned(),
            loans: debt
                .loans
                .into_iter()
                .map(|d| LoanItem {
                    creditorName: d.creditor_name,
                    loan: d.loan,
                })
                .collect(),
            numberOfCreditorsAnswered: debt.answered,
            numberOfcreditorsMissing: debt.missing,
        };
        tracing::info!(
            client_id = %record.client_id,
            consent_id = %id,
            trace_id = self.trace,
            creditors_answered = debt.answered,
            creditors_missing = debt.missing,
            "debt fetched"
        );
        Ok(with_trace(Json(body).into_response(), self.trace))
    }

    /// The error of a refused lookup.
    async fn refused(
        &self,
        refusal: DebtLookupRefusal,
        id: &ConsentId,
        client: &ClientId,
    ) -> ApiError {
        match refusal {
            DebtLookupRefusal::NoUsableConsent => self.invalid_consent(id, client).await,
            DebtLookupRefusal::PurposeNotGranted => self.error(ApiErrorKind::InsufficientScope),
        }
    }

    /// The refusal of a consent id that `client` may not use: why, if it
    /// is the client's own consent and has ended (SPEC §7); otherwise the
    /// one answer for unknown ids and other clients' consents. Only these
    /// failure paths read the consent for it, so a served lookup costs
    /// nothing more.
    async fn invalid_consent(&self, id: &ConsentId, client: &ClientId) -> ApiError {
        match self.state.store.find_consent(id).await {
            Ok(consent) => self.error(ApiErrorKind::InvalidConsent(
                consent.and_then(|c| c.end_told_to(client, self.now)),
            )),
            Err(e) => ApiError::from_store(e, self.trace, self.now),
        }
    }
}

fn with_trace(mut response: Response, trace: &str) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        axum::http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-store"),
    );
    if let Ok(v) = HeaderValue::from_str(trace) {
        headers.insert("x-trace-id", v);
    }
    response
}

fn call<'a>(state: &'a AppState, trace: &'a TraceId) -> Call<'a> {
    Call {
        state,
        trace: &trace.0,
        now: state.clock.now(),
    }
}

fn into_response(result: Result<Response, ApiError>) -> Response {
    result.unwrap_or_else(IntoResponse::into_response)
}

/// `GET /v1/debt/{id}` with a client-credentials token.
#[utoipa::path(get, path = "/v1/debt/{id}", tag = "Debt Api", operation_id = "getDebtWithConsentID",
    params(("id" = String, Path, description = "The consent id"), ("X-Trace-ID" = Option<String>, Header, description = "Echoed as trace_id")),
    responses(
        (status = 200, description = "Successfully fetched debt info", body = DebtInformation),
        (status = 400, description = "Bad request", body = ApiErrorBody),
        (status = 403, description = "Invalid access token (missing, malformed, expired or revoked; with `WWW-Authenticate: Bearer`), wrong audience or scope (insufficient_scope), or no valid consent (invalid consent: for the caller's own consent that has ended, `error_description` says why, e.g. `Consent expired at 2021-02-26T09:31:07.265053Z`)", body = ApiErrorBody),
        (status = 500, description = "Unknown server error", body = ApiErrorBody)),
    security(("bearer" = ["debt.unsecured.presentation", "debt.unsecured.processing"])))]
pub async fn get_debt_by_consent(
    State(state): State<AppState>,
    trace: TraceId,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let call = call(&state, &trace);
    into_response(
        async {
            let token = call.debt_token_unchecked(&headers).await?;
            let Some(id) = ConsentId::parse(&id) else {
                call.live(token).await?;
                return Err(call.error(ApiErrorKind::InvalidConsent(None)));
            };
            call.fetch_debt(&token, id).await
        }
        .await,
    )
}

/// `GET /v1/debt` with a token bound to a consent (authorization-code flow).
#[utoipa::path(get, path = "/v1/debt", tag = "Debt Api", operation_id = "getDebtWithAuthCodeToken",
    params(("X-Trace-ID" = Option<String>, Header, description = "Echoed as trace_id")),
    responses(
        (status = 200, description = "Successfully fetched debt info", body = DebtInformation),
        (status = 400, description = "The token is not bound to a consent", body = ApiErrorBody),
        (status = 403, description = "Invalid access token (missing, malformed, expired or revoked; with `WWW-Authenticate: Bearer`), wrong audience or scope (insufficient_scope), or the token's consent is consumed, expired or revoked (no valid consent; `error_description` says which and when, e.g. `Consent consumed at 2021-02-26T09:31:07.265053Z`)", body = ApiErrorBody),
        (status = 500, description = "Unknown server error", body = ApiErrorBody)),
    security(("bearer" = ["debt.unsecured.presentation", "debt.unsecured.processing"])))]
pub async fn get_debt_of_bound_consent(
    State(state): State<AppState>,
    trace: TraceId,
    headers: HeaderMap,
) -> Response {
    let call = call(&state, &trace);
    into_response(
        async {
            let token = call.debt_token_unchecked(&headers).await?;
            let Some(id) = token.record().consent_id else {
                call.live(token).await?;
                return Err(call.error(ApiErrorKind::BadRequest(
                    "this access token is not bound to a consent; use GET /v1/debt/{id}".into(),
                )));
            };
            call.fetch_debt(&token, id).await.map_err(|e| match e.kind {
                ApiErrorKind::InvalidConsent(end) => call.error(ApiErrorKind::NoValidConsent(end)),
                _ => e,
            })
        }
        .await,
    )
}

/// `GET /v1/debt/{id}/status`: `{active, expires_at}` for one of the
/// caller's consents.
#[utoipa::path(get, path = "/v1/debt/{id}/status", tag = "Debt Api", operation_id = "getConsentStatusWithID",
    params(("id" = String, Path, description = "The consent id")),
    responses(
        (status = 200, description = "Successfully fetched consent status", body = ConsentStatusDTO),
        (status = 403, description = "Invalid access token (missing, malformed, expired or revoked; with `WWW-Authenticate: Bearer`), wrong audience (insufficient_scope), or not one of the caller's consents (invalid consent). The caller's own ended consent is 200 with `active: false`.", body = ApiErrorBody),
        (status = 500, description = "Unknown server error", body = ApiErrorBody)),
    security(("bearer" = [])))]
pub async fn get_consent_status(
    State(state): State<AppState>,
    trace: TraceId,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let call = call(&state, &trace);
    into_response(
        async {
            let token = call.debt_token(&headers).await?;
            let consent = match ConsentId::parse(&id) {
                Some(id) => state
                    .store
                    .find_consent(&id)
                    .await
                    .map_err(|e| ApiError::from_store(e, call.trace, call.now))?,
                None => None,
            }
            .filter(|c| c.client_id == token.client_id)
            .ok_or_else(|| call.error(ApiErrorKind::InvalidConsent(None)))?;
            let body = ConsentStatusDTO {
                active: consent.status_at(call.now) == ConsentStatus::Active,
                expires_at: consent.expires_at.unix_timestamp(),
            };
            Ok(with_trace(Json(body).into_response(), call.trace))
        }
        .await,
    )
}

/// `DELETE /v1/debt/{id}`: revokes one of the caller's active consents
/// (204). One that has already ended (expired, consumed or revoked, also by
/// a DELETE a moment before) is 403 `invalid consent` with the reason, as
/// the published example answers.
#[utoipa::path(delete, path = "/v1/debt/{id}", tag = "Debt Api", operation_id = "revokeConsentByID",
    params(("id" = String, Path, description = "The consent id")),
    responses(
        (status = 204, description = "Consent revoked"),
        (status = 403, description = "Invalid access token (missing, malformed, expired or revoked; with `WWW-Authenticate: Bearer`), wrong audience (insufficient_scope), or no valid consent (invalid consent: not one of the caller's consents, or one that has already ended, with the reason in `error_description`, e.g. `Consent revoked at 2021-02-26T09:31:07.265053Z`)", body = ApiErrorBody),
        (status = 500, description = "Unknown server error", body = ApiErrorBody)),
    security(("bearer" = [])))]
pub async fn delete_consent(
    State(state): State<AppState>,
    trace: TraceId,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let call = call(&state, &trace);
    into_response(
        async {
            let token = call.debt_token(&headers).await?;
            let id = ConsentId::parse(&id)
                .ok_or_else(|| call.error(ApiErrorKind::InvalidConsent(None)))?;
            let outcome = state
                .store
                .revoke_consent(&id, &token.client_id, RevokedBy::Client, call.now)
                .await
                .map_err(|e| ApiError::from_store(e, call.trace, call.now))?;
            match outcome {
                RevokeOutcome::Revoked => {
                    state.metrics.consent_revoked(RevokedBy::Client);
                    tracing::info!(client_id = %token.client_id, consent_id = %id, "consent revoked by client");
                    Ok(with_trace(StatusCode::NO_CONTENT.into_response(), call.trace))
                }
                // The store's conditional update decided: of concurrent
                // DELETEs of one active consent, the others get here and
                // read the revocation that the first committed.
                RevokeOutcome::AlreadyEnded => Err(call.invalid_consent(&id, &token.client_id).await),
                RevokeOutcome::NotFound => Err(call.error(ApiErrorKind::InvalidConsent(None))),
            }
        }
        .await,
    )
}
