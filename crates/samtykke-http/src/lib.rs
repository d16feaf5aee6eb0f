//! Samtykke's HTTP edge: it parses requests into typed values, asks the core
//! to decide, and writes the exact wire format (RFC 6749 JSON for OAuth
//! endpoints). No SQL here: persistence goes through [`Store`].

mod api;
mod client_auth;
mod discovery;
mod error;
mod form;
mod health;
mod metrics;
mod oauth;
mod router;

use std::sync::Arc;

use samtykke_core::domain::{ApiAudiences, ClientSecret, SecretHash};
use samtykke_core::store::Store;
use samtykke_core::Clock;

pub use router::router;

/// Settings the HTTP layer reads.
#[derive(Debug, Clone)]
pub struct ServerSettings {
    /// Issuer URL without a trailing slash, e.g. `https://access.example.no`.
    pub issuer: String,
    /// API base URL without a trailing slash; audiences derive from it.
    pub api_base: String,
    /// Lifetime of access tokens.
    pub access_token_ttl: time::Duration,
    /// Sandbox mode (test identities, TestID, the sandbox client).
    pub sandbox: bool,
}

/// Shared state of every request handler.
#[derive(Clone)]
pub struct AppState {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) settings: Arc<ServerSettings>,
    pub(crate) audiences: Arc<ApiAudiences>,
    /// Compared against when the client is unknown, so that "unknown client"
    /// and "wrong secret" cost the same.
    pub(crate) dummy_secret_hash: Arc<SecretHash>,
    /// This server's Prometheus metrics (`GET /metrics`).
    pub(crate) metrics: Arc<metrics::Metrics>,
}

impl AppState {
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>, settings: ServerSettings) -> Self {
        let settings = ServerSettings {
            issuer: settings.issuer.trim_end_matches('/').to_owned(),
            api_base: settings.api_base.trim_end_matches('/').to_owned(),
            ..settings
        };
        Self {
            audiences: Arc::new(ApiAudiences::new(&settings.api_base)),
            store,
            clock,
            settings: Arc::new(settings),
            dummy_secret_hash: Arc::new(ClientSecret::generate().hash()),
            metrics: Arc::new(metrics::Metrics::new()),
        }
    }

    pub fn settings(&self) -> &ServerSettings {
        &self.settings
    }

    /// Synthetic test identity numbers are accepted only in sandbox mode.
    pub(crate) fn nin_policy(&self) -> samtykke_core::domain::NinPolicy {
        if self.settings.sandbox {
            samtykke_core::domain::NinPolicy::AllowSynthetic
        } else {
            samtykke_core::domain::NinPolicy::RealOnly
        }
    }
}

/// Serves `router(state)` on `listener` until `shutdown` completes, then
/// finishes the requests in flight.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
}
