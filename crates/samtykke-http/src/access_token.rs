//! Finds what a presented access token stands for, whichever kind it is
//! (see [`samtykke_core::token`]).

use samtykke_core::store::StoreError;
use samtykke_core::token::{self, AccessToken, AccessTokenRecord};

use crate::AppState;

/// The token's record with its current revocation state, or None if the
/// token is unknown, forged or malformed. Expiry is left to the caller.
pub(crate) async fn resolve(
    state: &AppState,
    presented: &str,
) -> Result<Option<AccessTokenRecord>, StoreError> {
    let token = AccessToken::from_presented(presented);
    if !token.is_sealed() {
        return state.store.find_access_token(&token.hash()).await;
    }
    let key = &state.secrets().await?.access_token_key;
    let Some((mut record, generation)) = token::unseal(key, &token) else {
        return Ok(None);
    };
    record.revoked = state
        .store
        .sealed_token_revoked(&record, generation)
        .await?;
    Ok(Some(record))
}
