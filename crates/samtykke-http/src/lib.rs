//! Samtykke's HTTP edge: it parses requests into typed values, asks the core
//! to decide, and writes the exact wire format (RFC 6749 JSON for OAuth
//! endpoints). No SQL here: persistence goes through [`Store`].

mod access_token;
mod api;
mod client_auth;
mod client_cache;
pub mod creditor_fanout;
pub mod creditors;
pub mod delivery;
mod discovery;
mod error;
// Public only for the fuzz targets (feature `fuzzing`).
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod form;
#[cfg(not(feature = "fuzzing"))]
mod form;
mod health;
pub mod identity;
mod metrics;
mod oauth;
pub mod operator;
mod pages;
mod remote;
mod router;
mod server;
pub mod token_keys;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use samtykke_core::domain::{ApiAudiences, ClientSecret, SecretHash};
use samtykke_core::id_token::{IdTokenSigner, PAIRWISE_SALT};
use samtykke_core::opaque::OpaqueToken;
use samtykke_core::store::{Store, StoreError};
use samtykke_core::{Clock, OAuthError};

use crate::error::OAuthErrorResponse;
use crate::identity::IdentityProvider;

pub use client_cache::CLIENT_CACHE_TTL;
pub use pages::sandbox::SANDBOX_CALLBACK_PATH;
pub use router::{admin_router, router, router_with};
pub use server::{ConnectionLimits, DeliveryListener, ServeOptions, ADMIN_MAX_CONNECTIONS};

/// Settings the HTTP layer reads.
#[derive(Debug, Clone)]
pub struct ServerSettings {
    /// The issuer identifier exactly as configured (OpenID Connect Discovery
    /// §4.3, RFC 9207: relying parties compare it byte for byte), e.g.
    /// `https://access.example.no/` with its trailing slash, if it has one.
    pub issuer: String,
    /// API base URL without a trailing slash; audiences derive from it.
    pub api_base: String,
    /// Lifetime of access tokens.
    pub access_token_ttl: time::Duration,
    /// Sandbox mode (test identities, TestID, the sandbox client).
    pub sandbox: bool,
}

impl ServerSettings {
    /// The issuer without a trailing slash: what this server's own URLs are
    /// built on (`{base}/oauth2/token`), so that an issuer configured with a
    /// trailing slash never yields a double slash.
    pub fn base_url(&self) -> &str {
        self.issuer.trim_end_matches('/')
    }
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
    /// How individuals identify; None when nothing is configured (then the
    /// authorization endpoint answers `server_error`).
    pub(crate) identity: Option<Arc<dyn IdentityProvider>>,
    secrets: Arc<tokio::sync::OnceCell<ServerSecrets>>,
    signer: Arc<Mutex<Option<(IdTokenSigner, Instant)>>>,
    /// The access-token keys as this process read them last; reach them
    /// through [`AppState::token_keys`].
    token_key_cache: Arc<token_keys::TokenKeyCache>,
    /// This server's Prometheus metrics (`GET /metrics`).
    pub(crate) metrics: Arc<metrics::Metrics>,
    /// Clients read lately; reach them through [`AppState::client`].
    clients: Arc<client_cache::ClientCache>,
    /// Fetches clients' JWK sets and request objects (see [`remote`]).
    pub(crate) remote: Arc<remote::Remote>,
    /// The sandbox client's id, in sandbox mode (the landing page and
    /// `/sandbox/callback` show it; never its secret).
    pub(crate) sandbox_client: Option<Arc<str>>,
    /// Who runs the installation (`serve --operator-…`), and how every
    /// page shows it.
    pub(crate) operator: Arc<operator::Operator>,
    pub(crate) operator_views: Arc<operator::OperatorViews>,
    /// The origin of an external logo, allowed in the pages' `img-src`.
    pub(crate) operator_logo_origin: Option<Arc<str>>,
    /// Calls live creditors (issue 21); None when not set up.
    pub(crate) creditor_client: Option<creditors::CreditorClient>,
    /// The lookups' side of the live creditors: their breakers, limits and
    /// settings (see [`creditor_fanout`]).
    pub(crate) fanout: Arc<creditor_fanout::CreditorFanout>,
}

/// Secrets shared by every process on the database.
pub(crate) struct ServerSecrets {
    /// Salts pairwise `sub` values.
    pub pairwise_salt: Vec<u8>,
    /// Keys the CSRF tokens of the pages.
    pub csrf_key: Vec<u8>,
    /// Seals the authorization flows' state (see `samtykke_core::flow`).
    pub flow_key: samtykke_core::flow::FlowSealKey,
}

/// How long a process signs with the key it loaded before looking for a
/// newer one (a rotation publishes the new key at once; signing follows
/// within this time, while the old key stays published).
const SIGNER_REFRESH: Duration = Duration::from_secs(60);

impl AppState {
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>, settings: ServerSettings) -> Self {
        let operator = operator::Operator::default();
        let operator_views =
            operator::OperatorViews::new(&operator, settings.sandbox, settings.base_url());
        Self {
            operator: Arc::new(operator),
            operator_views: Arc::new(operator_views),
            operator_logo_origin: None,
            audiences: Arc::new(ApiAudiences::new(&settings.api_base)),
            store,
            clock,
            settings: Arc::new(settings),
            dummy_secret_hash: Arc::new(ClientSecret::generate().hash()),
            identity: None,
            secrets: Arc::new(tokio::sync::OnceCell::new()),
            signer: Arc::new(Mutex::new(None)),
            token_key_cache: Arc::default(),
            metrics: Arc::new(metrics::Metrics::new()),
            clients: Arc::new(client_cache::ClientCache::default()),
            remote: Arc::new(remote::Remote::default()),
            sandbox_client: None,
            creditor_client: None,
            fanout: Arc::default(),
        }
    }

    /// Sets how lookups treat the creditors.
    pub fn with_lookup_settings(mut self, settings: creditor_fanout::LookupSettings) -> Self {
        self.fanout = Arc::new(creditor_fanout::CreditorFanout::new(settings));
        self
    }

    /// Sets the client that calls live creditors.
    pub fn with_creditor_client(mut self, client: creditors::CreditorClient) -> Self {
        self.creditor_client = Some(client);
        self
    }

    /// The client that calls live creditors, if set up.
    pub fn creditor_client(&self) -> Option<&creditors::CreditorClient> {
        self.creditor_client.as_ref()
    }

    /// Names the sandbox client (sandbox mode only).
    pub fn with_sandbox_client(mut self, client_id: &str) -> Self {
        self.sandbox_client = Some(Arc::from(client_id));
        self
    }

    /// Names the operator the pages show (`serve --operator-…`).
    pub fn with_operator(mut self, operator: operator::Operator) -> Self {
        self.operator_views = Arc::new(operator::OperatorViews::new(
            &operator,
            self.settings.sandbox,
            self.settings.base_url(),
        ));
        self.operator_logo_origin = operator.logo_origin().map(Arc::from);
        self.operator = Arc::new(operator);
        self
    }

    /// Sets how individuals identify.
    pub fn with_identity_provider(mut self, provider: Arc<dyn IdentityProvider>) -> Self {
        self.identity = Some(provider);
        self
    }

    /// A client as stored, through the process's client cache (see
    /// [`client_cache`]).
    pub(crate) async fn client(
        &self,
        id: &samtykke_core::domain::ClientId,
    ) -> Result<Option<Arc<samtykke_core::domain::Client>>, StoreError> {
        self.clients.find(self.store.as_ref(), id).await
    }

    pub(crate) async fn secrets(&self) -> Result<&ServerSecrets, StoreError> {
        self.secrets
            .get_or_try_init(|| async {
                let candidate = OpaqueToken::generate();
                let pairwise_salt = self
                    .store
                    .server_secret(PAIRWISE_SALT, candidate.expose().as_bytes())
                    .await?;
                let candidate = OpaqueToken::generate();
                let csrf_key = self
                    .store
                    .server_secret("csrf_key", candidate.expose().as_bytes())
                    .await?;
                let candidate = OpaqueToken::generate();
                let flow_secret = self
                    .store
                    .server_secret("flow_key", candidate.expose().as_bytes())
                    .await?;
                Ok(ServerSecrets {
                    pairwise_salt,
                    csrf_key,
                    flow_key: samtykke_core::flow::FlowSealKey::derive(&flow_secret),
                })
            })
            .await
    }

    /// The signer of the newest key, reloaded every [`SIGNER_REFRESH`].
    pub(crate) async fn id_token_signer(&self) -> Result<IdTokenSigner, OAuthErrorResponse> {
        if let Ok(guard) = self.signer.lock() {
            if let Some((signer, loaded)) = guard.as_ref() {
                if loaded.elapsed() < SIGNER_REFRESH {
                    return Ok(signer.clone());
                }
            }
        }
        let keys = self.store.list_signing_keys().await?;
        let newest = keys.first().ok_or_else(|| {
            tracing::error!("no signing key");
            OAuthErrorResponse(OAuthError::server_error())
        })?;
        let signer = IdTokenSigner::new(newest).map_err(|e| {
            tracing::error!(error = %e, "unusable signing key");
            OAuthErrorResponse(OAuthError::server_error())
        })?;
        if let Ok(mut guard) = self.signer.lock() {
            *guard = Some((signer.clone(), Instant::now()));
        }
        Ok(signer)
    }

    pub fn settings(&self) -> &ServerSettings {
        &self.settings
    }

    /// Who runs the installation (`serve --operator-…`).
    pub fn operator(&self) -> &operator::Operator {
        &self.operator
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

/// Serves the public routes on `listener` (and the operator routes on
/// `options.admin`) with the connection limits of `options` until `shutdown`
/// completes, then finishes the requests in flight (see `server.rs`).
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    options: ServeOptions,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    server::serve(listener, state, options, shutdown).await
}
