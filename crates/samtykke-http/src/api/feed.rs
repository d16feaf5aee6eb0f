//! The consent event feed (SPEC §8): `GET /feed/v1/consent`,
//! `/feed/v1/consent/firstSequenceNr`, `/feed/v1/consent/lastSequenceNr`.

use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use samtykke_core::consent::{ConsentEvent, ConsentEventType};
use samtykke_core::domain::{ApiAudience, ClientId, Scope};

use super::bearer::authenticate;
use super::dto::{
    ApiErrorBody, EventType, FirstSequenceNrResponse, LastSequenceNrResponse,
    SamtykkeArkivertEventDTO, SamtykkeFeedEventDTO, SamtykkeFeedResponseDTO,
    SamtykkeOpprettetEventDTO,
};
use super::error::{ApiError, ApiErrorKind};
use super::iso;
use super::trace::TraceId;
use crate::AppState;

/// The most events one page returns.
pub const MAX_LIMIT: u32 = 1000;

async fn feed_client(
    state: &AppState,
    headers: &HeaderMap,
    trace: &str,
    now: time::OffsetDateTime,
) -> Result<ClientId, ApiError> {
    let token = authenticate(state, headers)
        .await
        .map_err(|e| ApiError::from_bearer(e, trace, now))?;
    if token.audience != ApiAudience::ConsentFeed || !token.scopes.contains(Scope::ConsentEvents) {
        return Err(ApiError::new(ApiErrorKind::InsufficientScope, trace, now));
    }
    Ok(token.client_id)
}

fn event_dto(e: &ConsentEvent) -> SamtykkeFeedEventDTO {
    let consent_id = e.consent_id.to_string();
    let client_id = e.client_id.as_str().to_owned();
    let (event_type, created, archived) = match e.event_type {
        ConsentEventType::Created => (
            EventType::SAMTYKKE_OPPRETTET,
            Some(SamtykkeOpprettetEventDTO {
                clientId: client_id,
                consentId: consent_id.clone(),
                scope: e.purpose.scope_name().to_owned(),
                externalConsentId: e.client_consent_id.clone(),
            }),
            None,
        ),
        ConsentEventType::Archived => (
            EventType::SAMTYKKE_ARKIVERT,
            None,
            Some(SamtykkeArkivertEventDTO {
                clientId: client_id,
                consentId: consent_id.clone(),
            }),
        ),
    };
    SamtykkeFeedEventDTO {
        sequenceNr: e.sequence_nr,
        eventId: e.event_id.to_string(),
        consentId: consent_id,
        timestamp: iso(e.timestamp),
        eventType: event_type,
        samtykkeOpprettetEvent: created,
        samtykkeArkivertEvent: archived,
    }
}

fn no_store(body: impl serde::Serialize) -> Response {
    let mut response = Json(body).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// `fromSequenceNr` (≥ 0) and `limit` (≥ 1, capped at [`MAX_LIMIT`]), both required.
fn parse_query(query: Option<&str>) -> Result<(i64, u32), String> {
    let mut from = None;
    let mut limit = None;
    for (name, value) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        let slot = match name.as_ref() {
            "fromSequenceNr" => &mut from,
            "limit" => &mut limit,
            _ => continue,
        };
        if slot.replace(value.into_owned()).is_some() {
            return Err(format!("{name} is repeated"));
        }
    }
    let from: i64 = from
        .ok_or("fromSequenceNr is required")?
        .parse()
        .ok()
        .filter(|n| *n >= 0)
        .ok_or("fromSequenceNr must be a whole number ≥ 0")?;
    let limit: i64 = limit
        .ok_or("limit is required")?
        .parse()
        .ok()
        .filter(|n| *n >= 1)
        .ok_or("limit must be a whole number ≥ 1")?;
    let limit = u32::try_from(limit.min(i64::from(MAX_LIMIT))).unwrap_or(MAX_LIMIT);
    Ok((from, limit))
}

/// `GET /feed/v1/consent`: the caller's events from `fromSequenceNr`.
#[utoipa::path(get, path = "/feed/v1/consent", tag = "Consents Feed API", operation_id = "feed",
    params(("fromSequenceNr" = i64, Query, description = "First sequence number to return (≥ 0)"),
           ("limit" = i32, Query, description = "How many events at most (≥ 1; capped at 1000)")),
    responses(
        (status = 200, description = "Events of the calling client", body = SamtykkeFeedResponseDTO),
        (status = 400, description = "fromSequenceNr or limit missing or invalid", body = ApiErrorBody),
        (status = 403, description = "Invalid access token (missing, malformed, expired or revoked; with `WWW-Authenticate: Bearer`), or wrong audience or scope (insufficient_scope)", body = ApiErrorBody)),
    security(("bearer" = ["client.access.consent.events"])))]
pub async fn get_feed(
    State(state): State<AppState>,
    trace: TraceId,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let now = state.clock.now();
    let result: Result<Response, ApiError> = async {
        let client = feed_client(&state, &headers, &trace.0, now).await?;
        let (from, limit) = parse_query(query.as_deref())
            .map_err(|m| ApiError::new(ApiErrorKind::BadRequest(m), &trace.0, now))?;
        let events = state
            .store
            .consent_events(&client, from, limit)
            .await
            .map_err(|e| ApiError::from_store(e, &trace.0, now))?;
        // The published schema's minimum for both bounds is 1, so a page
        // asked for from 0 starts at 1. An empty page ends just before where
        // it started, so that "next = endSequenceNr + 1" never skips
        // anything; at the very start of the feed that would be 0, so it is
        // 1 there, which is safe because no event is ever given sequence
        // number 1 (the stores' migration `no_sequence_number_one`).
        let start = from.max(1);
        let end = events.last().map_or((start - 1).max(1), |e| e.sequence_nr);
        Ok(no_store(SamtykkeFeedResponseDTO {
            startSequenceNr: start,
            endSequenceNr: end,
            generatedAt: iso(now),
            result: events.iter().map(event_dto).collect(),
        }))
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}

async fn bound(state: &AppState, headers: &HeaderMap, trace: &TraceId, first: bool) -> Response {
    let now = state.clock.now();
    let result: Result<Response, ApiError> = async {
        let client = feed_client(state, headers, &trace.0, now).await?;
        let bounds = state
            .store
            .consent_event_bounds(&client)
            .await
            .map_err(|e| ApiError::from_store(e, &trace.0, now))?;
        Ok(if first {
            no_store(FirstSequenceNrResponse {
                firstSequenceNr: bounds.map_or(0, |b| b.0),
            })
        } else {
            no_store(LastSequenceNrResponse {
                lastSequenceNr: bounds.map_or(0, |b| b.1),
            })
        })
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}

/// `GET /feed/v1/consent/firstSequenceNr`
#[utoipa::path(get, path = "/feed/v1/consent/firstSequenceNr", tag = "Consents Feed API", operation_id = "firstSequenceNr",
    responses((status = 200, description = "OK", body = FirstSequenceNrResponse),
              (status = 403, description = "Invalid access token (missing, malformed, expired or revoked), or wrong audience or scope (insufficient_scope)", body = ApiErrorBody)),
    security(("bearer" = ["client.access.consent.events"])))]
pub async fn get_first_sequence_nr(
    State(state): State<AppState>,
    trace: TraceId,
    headers: HeaderMap,
) -> Response {
    bound(&state, &headers, &trace, true).await
}

/// `GET /feed/v1/consent/lastSequenceNr`
#[utoipa::path(get, path = "/feed/v1/consent/lastSequenceNr", tag = "Consents Feed API", operation_id = "lastSequenceNr",
    responses((status = 200, description = "OK", body = LastSequenceNrResponse),
              (status = 403, description = "Invalid access token (missing, malformed, expired or revoked), or wrong audience or scope (insufficient_scope)", body = ApiErrorBody)),
    security(("bearer" = ["client.access.consent.events"])))]
pub async fn get_last_sequence_nr(
    State(state): State<AppState>,
    trace: TraceId,
    headers: HeaderMap,
) -> Response {
    bound(&state, &headers, &trace, false).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_query_is_validated() {
        assert_eq!(
            parse_query(Some("fromSequenceNr=1&limit=100")),
            Ok((1, 100))
        );
        assert_eq!(
            parse_query(Some("fromSequenceNr=0&limit=5000")),
            Ok((0, MAX_LIMIT))
        );
        for bad in [
            None,
            Some("limit=1"),
            Some("fromSequenceNr=1"),
            Some("fromSequenceNr=-1&limit=1"),
            Some("fromSequenceNr=a&limit=1"),
            Some("fromSequenceNr=1&limit=0"),
            Some("fromSequenceNr=1&limit=1&limit=2"),
        ] {
            assert!(parse_query(bad).is_err(), "{bad:?}");
        }
    }
}
