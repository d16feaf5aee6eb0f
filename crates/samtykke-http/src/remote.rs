//! What the server fetches on a client's behalf: the client's JWK set (at
//! its registered `jwks_uri`) and request objects (at a registered
//! `request_uri`).
//!
//! Server-side request forgery is ruled out by what may be fetched at all:
//! only URIs an operator registered for the client (`samtykke client create
//! --jwks-uri`, `--request-uri`), a `request_uri` only when it equals a
//! registered one byte for byte. Nothing a request says can point the server
//! anywhere else. Each fetch is a plain GET with a 2-second timeout, no
//! redirects followed (a 3xx is a failure), no cookies, at most 64 KiB read;
//! `https` only, except `http` on a loopback host in sandbox mode (for local
//! tests).
//!
//! A fetched JWK set is kept [`JWKS_CACHE_TTL`]; a request object signed
//! with a key id the cached set lacks makes one fresh fetch. A URI is
//! fetched at most once per [`JWKS_MIN_REFETCH`], failed fetches included,
//! so that unknown key ids or a key server that is down cannot make the
//! server hammer it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use samtykke_core::domain::client_keys::MAX_REMOTE_DOCUMENT;
use samtykke_core::domain::{ClientKeySet, FetchUri};
use time::{Duration, OffsetDateTime};

/// How long a fetch may take, connection included.
const FETCH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// How long a fetched JWK set is used before it is fetched again.
pub const JWKS_CACHE_TTL: Duration = Duration::minutes(5);

/// The least time between two fetches of one JWK set.
pub const JWKS_MIN_REFETCH: Duration = Duration::seconds(10);

/// More cached key sets than this and the cache starts over.
const MAX_CACHED_SETS: usize = 10_000;

/// Why a fetch failed. The text is for the log (it names no secret).
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum FetchError {
    #[error("only https URIs are fetched outside sandbox mode")]
    NotHttps,
    #[error("the HTTP client could not be built: {0}")]
    Client(String),
    #[error("the request failed: {0}")]
    Request(String),
    #[error("the answer was {0}, not 200")]
    Status(u16),
    #[error("the answer is larger than 64 KiB")]
    TooLarge,
    #[error("the answer is not UTF-8")]
    NotText,
    #[error("the answer is not a JWK set: {0}")]
    NotAKeySet(String),
    #[error("the last fetch failed moments ago")]
    RecentlyFailed,
}

/// What is known of one `jwks_uri`: the set last fetched (if any) and
/// when a fetch was last tried.
#[derive(Clone)]
struct CachedKeys {
    keys: Option<(Arc<ClientKeySet>, OffsetDateTime)>,
    tried_at: OffsetDateTime,
}

/// The fetcher with its HTTP client and JWK-set cache; one per process.
#[derive(Default)]
pub(crate) struct Remote {
    client: OnceLock<Result<reqwest::Client, String>>,
    jwks: Mutex<HashMap<String, CachedKeys>>,
}

impl Remote {
    fn client(&self) -> Result<&reqwest::Client, FetchError> {
        self.client
            .get_or_init(|| {
                reqwest::Client::builder()
                    .redirect(reqwest::redirect::Policy::none())
                    .timeout(FETCH_TIMEOUT)
                    .connect_timeout(FETCH_TIMEOUT)
                    .user_agent(concat!("samtykke/", env!("CARGO_PKG_VERSION")))
                    .build()
                    .map_err(|e| e.to_string())
            })
            .as_ref()
            .map_err(|e| FetchError::Client(e.clone()))
    }

    /// The body of `uri` as text: status 200, at most 64 KiB.
    pub(crate) async fn fetch(&self, uri: &FetchUri, sandbox: bool) -> Result<String, FetchError> {
        if !uri.is_https() && !sandbox {
            return Err(FetchError::NotHttps);
        }
        let mut response = self
            .client()?
            .get(uri.without_fragment())
            .send()
            .await
            .map_err(|e| FetchError::Request(e.without_url().to_string()))?;
        if response.status() != reqwest::StatusCode::OK {
            return Err(FetchError::Status(response.status().as_u16()));
        }
        if response
            .content_length()
            .is_some_and(|n| n > MAX_REMOTE_DOCUMENT as u64)
        {
            return Err(FetchError::TooLarge);
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| FetchError::Request(e.without_url().to_string()))?
        {
            if body.len() + chunk.len() > MAX_REMOTE_DOCUMENT {
                return Err(FetchError::TooLarge);
            }
            body.extend_from_slice(&chunk);
        }
        String::from_utf8(body).map_err(|_| FetchError::NotText)
    }

    /// The client's JWK set at `uri`: from the cache while it is fresh
    /// (`refresh` asks for a new fetch). A fetch is tried at most once per
    /// [`JWKS_MIN_REFETCH`], also after a failure; when a fetch fails, a
    /// set fetched before is used rather than none.
    pub(crate) async fn client_keys(
        &self,
        uri: &FetchUri,
        sandbox: bool,
        now: OffsetDateTime,
        refresh: bool,
    ) -> Result<Arc<ClientKeySet>, FetchError> {
        let cached = self.cached(uri);
        if let Some(c) = &cached {
            let fresh = c
                .keys
                .as_ref()
                .filter(|(_, at)| !refresh && now - *at < JWKS_CACHE_TTL);
            if let Some((keys, _)) = fresh {
                return Ok(Arc::clone(keys));
            }
            if now - c.tried_at < JWKS_MIN_REFETCH {
                return match &c.keys {
                    Some((keys, _)) => Ok(Arc::clone(keys)),
                    None => Err(FetchError::RecentlyFailed),
                };
            }
        }
        let fetched = async {
            let body = self.fetch(uri, sandbox).await?;
            ClientKeySet::parse_lenient(&body).map_err(|e| FetchError::NotAKeySet(e.to_string()))
        }
        .await;
        let before = cached.and_then(|c| c.keys);
        let (entry, answer) = match fetched {
            Ok(keys) => {
                let keys = Arc::new(keys);
                (Some((Arc::clone(&keys), now)), Ok(keys))
            }
            Err(e) => match before.clone() {
                Some((stale, _)) => {
                    tracing::warn!(error = %e, "client jwks_uri failed; using the keys fetched before");
                    (before, Ok(stale))
                }
                None => (None, Err(e)),
            },
        };
        let mut cache = self.lock();
        if cache.len() >= MAX_CACHED_SETS {
            cache.clear();
        }
        cache.insert(
            uri.as_str().to_owned(),
            CachedKeys {
                keys: entry,
                tried_at: now,
            },
        );
        answer
    }

    fn cached(&self, uri: &FetchUri) -> Option<CachedKeys> {
        self.lock().get(uri.as_str()).cloned()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, CachedKeys>> {
        self.jwks
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
