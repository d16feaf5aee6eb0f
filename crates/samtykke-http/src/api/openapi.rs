//! `GET /openapi.json`: our OpenAPI 3 document, generated from the handlers'
//! annotations and the wire types in [`super::dto`].

use axum::response::{IntoResponse, Response};
use axum::Json;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::dto;

struct BearerScheme;

impl Modify for BearerScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "An access token from POST /oauth2/token (client credentials with `audience`, or the authorization-code flow).",
                    ))
                    .build(),
            ),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "Samtykke resource APIs", description = "Agreement consents, debt lookup and the consent event feed, wire-compatible with the published Norsk Gjeldsinformasjon contract."),
    paths(
        super::agreement::put_agreement_consent,
        super::feed::get_feed,
        super::feed::get_last_sequence_nr,
        super::feed::get_first_sequence_nr,
        super::debt::get_debt_of_bound_consent,
        super::debt::get_debt_by_consent,
        super::debt::delete_consent,
        super::debt::get_consent_status,
    ),
    components(schemas(
        dto::SpringErrorSchema,
        dto::CreateConsentRequestDTO,
        dto::ConsentResponseDTO,
        dto::CreateConsentResponseDTO,
        dto::SamtykkeArkivertEventDTO,
        dto::SamtykkeFeedEventDTO,
        dto::SamtykkeFeedResponseDTO,
        dto::SamtykkeOpprettetEventDTO,
        dto::LastSequenceNrResponse,
        dto::FirstSequenceNrResponse,
        dto::DebtInformation,
        dto::CreditFacilitySchema,
        dto::RepaymentLoanSchema,
        dto::ChargeCardSchema,
        dto::ConsentMetadata,
        dto::ConsentStatusDTO,
        dto::ApiErrorBody,
    )),
    modifiers(&BearerScheme),
    tags(
        (name = "Agreement API", description = "Register consents collected by the institution"),
        (name = "Debt Api", description = "Fetch debt under a consent; consent status and revocation"),
        (name = "Consents Feed API", description = "Events about the caller's consents"),
    )
)]
struct ApiDoc;

/// The generated document.
pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

pub async fn get_openapi() -> Response {
    Json(document()).into_response()
}
