//! Finds what a presented access token stands for, whichever kind it is
//! (see [`samtykke_core::token`]).

use samtykke_core::store::StoreError;
use samtykke_core::token::{AccessToken, AccessTokenRecord, UnsealError};

use crate::AppState;

/// A presented token that opened or was found.
#[derive(Debug)]
pub(crate) enum Resolved {
    /// A token whose revocation state is known: a stored token as stored,
    /// or a sealed one that has been checked.
    Checked(AccessTokenRecord),
    /// A sealed token whose revocation state is not checked yet: its
    /// `revoked` is false until [`Resolved::checked`] asks the store, or
    /// a store step that checks it (a debt lookup) does.
    Sealed {
        record: AccessTokenRecord,
        generation: i64,
    },
}

impl Resolved {
    pub(crate) fn record(&self) -> &AccessTokenRecord {
        match self {
            Self::Checked(record) | Self::Sealed { record, .. } => record,
        }
    }

    /// The record with its current revocation state.
    pub(crate) async fn checked(self, state: &AppState) -> Result<AccessTokenRecord, StoreError> {
        match self {
            Self::Checked(record) => Ok(record),
            Self::Sealed {
                mut record,
                generation,
            } => {
                record.revoked = state
                    .store
                    .sealed_token_revoked(&record, generation)
                    .await?;
                Ok(record)
            }
        }
    }
}

/// The token's record with its current revocation state, or None if the
/// token is unknown, forged or malformed. Expiry is left to the caller.
pub(crate) async fn resolve(
    state: &AppState,
    presented: &str,
) -> Result<Option<AccessTokenRecord>, StoreError> {
    match resolve_unchecked(state, presented).await? {
        Some(resolved) => resolved.checked(state).await.map(Some),
        None => Ok(None),
    }
}

/// Like [`resolve`], but leaves a sealed token's revocation check to the
/// caller (no database read for it).
pub(crate) async fn resolve_unchecked(
    state: &AppState,
    presented: &str,
) -> Result<Option<Resolved>, StoreError> {
    let token = AccessToken::from_presented(presented);
    if !token.is_sealed() {
        let found = state.store.find_access_token(&token.hash()).await?;
        return Ok(found.map(Resolved::Checked));
    }
    let mut opened = state.token_keys().await?.unseal(&token);
    if opened == Err(UnsealError::UnknownKey) {
        // Perhaps a key another process seals with since this one last
        // read the keys (see [`crate::token_keys`]).
        opened = state.token_keys_after_unknown_key().await?.unseal(&token);
    }
    Ok(opened
        .ok()
        .map(|(record, generation)| Resolved::Sealed { record, generation }))
}
