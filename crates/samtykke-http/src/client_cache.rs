//! The clients this process has read lately, so that the token,
//! introspection and revocation endpoints, the authorization pages and the
//! agreement API need not read (and parse) the client on every request.
//!
//! An entry is used for at most [`CLIENT_CACHE_TTL`] after it was read.
//! Clients change only through the `samtykke client` commands, which run in
//! a process of their own and wait that long after a change before they
//! return; so once such a command has returned, every running server judges
//! by the new state. Unknown clients are not kept (a new client works at
//! once). While such a command waits, a stale entry can still let a
//! disabled or deleted client get a token, but not use it: a sealed token
//! carries its client's `token_generation`, and every use and introspection
//! checks the client in the database.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use samtykke_core::domain::{Client, ClientId};
use samtykke_core::store::{Store, StoreError};

/// How long a process trusts a client it has read.
pub const CLIENT_CACHE_TTL: Duration = Duration::from_millis(250);

/// More entries than this and the cache starts over (clients are registered
/// by operators, so this is far above any real number).
const MAX_ENTRIES: usize = 10_000;

#[derive(Default)]
pub(crate) struct ClientCache {
    entries: Mutex<HashMap<ClientId, (Arc<Client>, Instant)>>,
}

impl ClientCache {
    /// The client as stored, from the cache while its entry is fresh.
    pub(crate) async fn find(
        &self,
        store: &dyn Store,
        id: &ClientId,
    ) -> Result<Option<Arc<Client>>, StoreError> {
        if let Some(client) = self.fresh(id) {
            return Ok(Some(client));
        }
        // Taken before the read: an entry must not outlive a change that
        // committed while the read was under way.
        let read_at = Instant::now();
        let Some(client) = store.find_client(id).await? else {
            self.lock().remove(id);
            return Ok(None);
        };
        let client = Arc::new(client);
        let mut entries = self.lock();
        if entries.len() >= MAX_ENTRIES {
            entries.clear();
        }
        entries.insert(id.clone(), (Arc::clone(&client), read_at));
        Ok(Some(client))
    }

    fn fresh(&self, id: &ClientId) -> Option<Arc<Client>> {
        let entries = self.lock();
        let (client, read_at) = entries.get(id)?;
        (read_at.elapsed() < CLIENT_CACHE_TTL).then(|| Arc::clone(client))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ClientId, (Arc<Client>, Instant)>> {
        self.entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
