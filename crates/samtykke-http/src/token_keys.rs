//! The access-token keys (see [`samtykke_core::token::TokenKeys`]) as this
//! process knows them. They are server secrets in the database
//! (`access_token_key.1`, `.2`, …; the highest number seals), shared by
//! every process: read on first use, the first one created then if there
//! is none; read again every [`REFRESH`], so that a rotation
//! (`samtykke keys rotate`) reaches the sealing of every process within
//! that time; and read again at once, at most every [`UNKNOWN_KEY_RELOAD`],
//! when a token names a key this process does not know yet (one that
//! another process has started to seal with since this one last looked).

use std::sync::{Arc, RwLock};

use samtykke_core::store::{Store, StoreError};
use samtykke_core::token::{self, TokenKeys};
use time::{Duration, OffsetDateTime};

use crate::AppState;

/// How long a process seals with the keys it read before reading them again.
const REFRESH: Duration = Duration::seconds(60);
/// How soon after a read a token under an unknown key makes the process
/// read the keys again (it bounds the reads that made-up tokens can cause).
const UNKNOWN_KEY_RELOAD: Duration = Duration::seconds(1);

/// The keys this process read last, and when.
#[derive(Default)]
pub(crate) struct TokenKeyCache {
    current: RwLock<Option<(Arc<TokenKeys>, OffsetDateTime)>>,
    /// Held while reading the keys, so that one task reads for all.
    reading: tokio::sync::Mutex<()>,
}

impl TokenKeyCache {
    fn get(&self) -> Option<(Arc<TokenKeys>, OffsetDateTime)> {
        self.current
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    fn set(&self, keys: Arc<TokenKeys>, at: OffsetDateTime) {
        *self
            .current
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some((keys, at));
    }
}

/// Read at `at`, and not older than `max_age` at `now` (a clock set back
/// counts as old).
fn fresh(at: OffsetDateTime, now: OffsetDateTime, max_age: Duration) -> bool {
    at <= now && now - at < max_age
}

/// The access-token keys as stored, the first one created if there is none
/// (atomically across processes).
pub async fn load(store: &dyn Store) -> Result<TokenKeys, StoreError> {
    let secrets = store
        .server_secrets_with_prefix(token::LEGACY_KEY_SECRET)
        .await?;
    if let Some(keys) = TokenKeys::from_secrets(&secrets) {
        return Ok(keys);
    }
    let first = store
        .server_secret(&token::key_secret_name(1), &token::new_key_secret())
        .await?;
    let mut secrets = secrets;
    secrets.push((token::key_secret_name(1), first));
    TokenKeys::from_secrets(&secrets).ok_or(StoreError::NotFound)
}

/// Adds a new access-token key, which seals from then on (in every process
/// within [`REFRESH`]); the one before it still opens. Returns its number.
pub async fn rotate(store: &dyn Store) -> Result<u32, StoreError> {
    let secrets = store
        .server_secrets_with_prefix(token::LEGACY_KEY_SECRET)
        .await?;
    let newest = secrets
        .iter()
        .filter_map(|(name, _)| token::key_number(name))
        .max()
        .unwrap_or(0);
    let number = newest.saturating_add(1);
    // Two rotations at the same instant agree on one new key.
    store
        .server_secret(&token::key_secret_name(number), &token::new_key_secret())
        .await?;
    Ok(number)
}

/// The numbers of the stored access-token keys, newest first, and whether
/// there is an `sc1.` MAC key.
pub async fn list(store: &dyn Store) -> Result<(Vec<u32>, bool), StoreError> {
    let secrets = store
        .server_secrets_with_prefix(token::LEGACY_KEY_SECRET)
        .await?;
    let mut numbers: Vec<u32> = secrets
        .iter()
        .filter_map(|(name, _)| token::key_number(name))
        .collect();
    numbers.sort_unstable_by(|a, b| b.cmp(a));
    let legacy = secrets
        .iter()
        .any(|(name, _)| name == token::LEGACY_KEY_SECRET);
    Ok((numbers, legacy))
}

impl AppState {
    /// The keys to seal and open access tokens with, read again when they
    /// are older than [`REFRESH`] (by one task, while the others go on with
    /// the keys they have; if the read fails, they keep serving).
    pub(crate) async fn token_keys(&self) -> Result<Arc<TokenKeys>, StoreError> {
        let now = self.clock.now();
        let cache = &self.token_key_cache;
        if let Some((keys, at)) = cache.get() {
            if fresh(at, now, REFRESH) {
                return Ok(keys);
            }
            let Ok(_reading) = cache.reading.try_lock() else {
                return Ok(keys);
            };
            return match self.read_token_keys(now).await {
                Ok(read) => Ok(read),
                Err(error) => {
                    tracing::warn!(%error, "could not read the access-token keys again; going on with those read before");
                    Ok(keys)
                }
            };
        }
        let _reading = cache.reading.lock().await;
        match cache.get() {
            Some((keys, _)) => Ok(keys),
            None => self.read_token_keys(now).await,
        }
    }

    /// The keys after a token named a key this process does not know: read
    /// again unless they were read less than [`UNKNOWN_KEY_RELOAD`] ago.
    pub(crate) async fn token_keys_after_unknown_key(&self) -> Result<Arc<TokenKeys>, StoreError> {
        let cache = &self.token_key_cache;
        let _reading = cache.reading.lock().await;
        let now = self.clock.now();
        match cache.get() {
            Some((keys, at)) if fresh(at, now, UNKNOWN_KEY_RELOAD) => Ok(keys),
            _ => self.read_token_keys(now).await,
        }
    }

    async fn read_token_keys(&self, now: OffsetDateTime) -> Result<Arc<TokenKeys>, StoreError> {
        let keys = Arc::new(load(self.store.as_ref()).await?);
        self.token_key_cache.set(keys.clone(), now);
        Ok(keys)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_fresh_for_their_age_only() {
        let t = OffsetDateTime::UNIX_EPOCH;
        assert!(fresh(t, t, REFRESH));
        assert!(fresh(t, t + Duration::seconds(59), REFRESH));
        assert!(!fresh(t, t + REFRESH, REFRESH));
        assert!(
            !fresh(t, t - Duration::seconds(1), REFRESH),
            "a clock set back"
        );
    }
}
