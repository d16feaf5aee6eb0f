//! The one storage trait. SQLite and PostgreSQL implement it in their own crates.
//!
//! Every method that reports success has committed its write.

use async_trait::async_trait;

use time::OffsetDateTime;

use crate::domain::{
    ApiAudience, Client, ClientId, ClientName, ClientSecret, OrgNumber, Purpose, RedirectUri,
    ScopeSet, SecretHash,
};
use crate::keys::SigningKey;
use crate::token::{AccessTokenRecord, TokenHash};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("not found")]
    NotFound,
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
}

/// The sandbox client's credentials, kept readable so that a sandbox can print
/// them at every start. Production mode never creates them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxCredentials {
    pub client_id: ClientId,
    pub client_secret: ClientSecret,
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Fails unless the database answers.
    async fn ping(&self) -> Result<(), StoreError>;

    // --- clients -----------------------------------------------------------

    /// Conflict if the id is taken.
    async fn insert_client(&self, client: &Client) -> Result<(), StoreError>;
    async fn find_client(&self, id: &ClientId) -> Result<Option<Client>, StoreError>;
    /// All clients, oldest first.
    async fn list_clients(&self) -> Result<Vec<Client>, StoreError>;
    /// NotFound if there is no such client.
    async fn replace_client_secret(
        &self,
        id: &ClientId,
        hash: &SecretHash,
    ) -> Result<(), StoreError>;
    /// NotFound if there is no such client.
    async fn set_client_disabled(&self, id: &ClientId, disabled: bool) -> Result<(), StoreError>;
    /// Deletes the client and every token issued to it. NotFound if absent.
    async fn delete_client(&self, id: &ClientId) -> Result<(), StoreError>;

    // --- access tokens -----------------------------------------------------

    async fn insert_access_token(&self, token: &AccessTokenRecord) -> Result<(), StoreError>;
    /// Looks a token up by the hash of its value (primary key).
    async fn find_access_token(
        &self,
        hash: &TokenHash,
    ) -> Result<Option<AccessTokenRecord>, StoreError>;
    /// Marks the token revoked; false if no such token exists.
    async fn revoke_access_token(&self, hash: &TokenHash) -> Result<bool, StoreError>;

    // --- signing keys ------------------------------------------------------

    /// All keys, newest (the active one) first.
    async fn list_signing_keys(&self) -> Result<Vec<SigningKey>, StoreError>;
    /// Inserts `key` only if no key exists yet, atomically across processes;
    /// returns whether it was inserted.
    async fn insert_first_signing_key(&self, key: &SigningKey) -> Result<bool, StoreError>;
    /// Adds a key (rotation); the newest key is the active one.
    async fn insert_signing_key(&self, key: &SigningKey) -> Result<(), StoreError>;

    // --- sandbox -----------------------------------------------------------

    /// Creates the sandbox client unless one exists, atomically across
    /// processes, and returns the credentials of the one that exists.
    async fn bootstrap_sandbox_client(
        &self,
        client: &Client,
        secret: &ClientSecret,
    ) -> Result<SandboxCredentials, StoreError>;
    async fn sandbox_credentials(&self) -> Result<Option<SandboxCredentials>, StoreError>;
    /// Keeps the readable sandbox secret in step after a rotation.
    async fn update_sandbox_secret(&self, secret: &ClientSecret) -> Result<(), StoreError>;
}

/// A client as the SQL engines keep it: plain columns. Both engines convert
/// through this one type so that the encoding lives in one place.
#[derive(Debug, Clone)]
pub struct ClientRow {
    pub id: String,
    pub secret_hash: Vec<u8>,
    pub name: String,
    pub org_number: String,
    /// Newline-separated.
    pub redirect_uris: String,
    /// Space-separated purpose names.
    pub purposes: String,
    pub may_create_agreements: bool,
    pub may_read_events: bool,
    pub disabled: bool,
    pub created_at: i64,
}

impl From<&Client> for ClientRow {
    fn from(c: &Client) -> Self {
        Self {
            id: c.id.as_str().to_owned(),
            secret_hash: c.secret_hash.as_bytes().to_vec(),
            name: c.name.as_str().to_owned(),
            org_number: c.org_number.as_str().to_owned(),
            redirect_uris: c
                .redirect_uris
                .iter()
                .map(RedirectUri::as_str)
                .collect::<Vec<_>>()
                .join("\n"),
            purposes: c
                .purposes
                .iter()
                .map(|p| p.as_str())
                .collect::<Vec<_>>()
                .join(" "),
            may_create_agreements: c.may_create_agreements,
            may_read_events: c.may_read_events,
            disabled: c.disabled,
            created_at: c.created_at.unix_timestamp(),
        }
    }
}

fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt(what.to_owned())
}

fn timestamp(seconds: i64) -> Result<OffsetDateTime, StoreError> {
    OffsetDateTime::from_unix_timestamp(seconds).map_err(|_| corrupt("timestamp"))
}

impl TryFrom<ClientRow> for Client {
    type Error = StoreError;

    fn try_from(r: ClientRow) -> Result<Self, StoreError> {
        Ok(Client {
            id: ClientId::parse(&r.id).map_err(|_| corrupt("client id"))?,
            secret_hash: SecretHash::from_bytes(&r.secret_hash)
                .ok_or_else(|| corrupt("secret hash"))?,
            name: ClientName::parse(&r.name).map_err(|_| corrupt("client name"))?,
            org_number: OrgNumber::parse(&r.org_number).map_err(|_| corrupt("org number"))?,
            redirect_uris: r
                .redirect_uris
                .lines()
                .filter(|l| !l.is_empty())
                .map(|l| RedirectUri::parse(l).map_err(|_| corrupt("redirect uri")))
                .collect::<Result<_, _>>()?,
            purposes: r
                .purposes
                .split(' ')
                .filter(|p| !p.is_empty())
                .map(|p| Purpose::parse(p).ok_or_else(|| corrupt("purpose")))
                .collect::<Result<_, _>>()?,
            may_create_agreements: r.may_create_agreements,
            may_read_events: r.may_read_events,
            disabled: r.disabled,
            created_at: timestamp(r.created_at)?,
        })
    }
}

/// An access token as the SQL engines keep it.
#[derive(Debug, Clone)]
pub struct AccessTokenRow {
    pub hash: Vec<u8>,
    pub client_id: String,
    pub audience: String,
    pub scopes: String,
    pub issued_at: i64,
    pub expires_at: i64,
    pub revoked: bool,
}

impl From<&AccessTokenRecord> for AccessTokenRow {
    fn from(t: &AccessTokenRecord) -> Self {
        Self {
            hash: t.hash.as_bytes().to_vec(),
            client_id: t.client_id.as_str().to_owned(),
            audience: t.audience.as_key().to_owned(),
            scopes: t.scopes.to_string(),
            issued_at: t.issued_at.unix_timestamp(),
            expires_at: t.expires_at.unix_timestamp(),
            revoked: t.revoked,
        }
    }
}

impl TryFrom<AccessTokenRow> for AccessTokenRecord {
    type Error = StoreError;

    fn try_from(r: AccessTokenRow) -> Result<Self, StoreError> {
        Ok(AccessTokenRecord {
            hash: TokenHash::from_bytes(&r.hash).ok_or_else(|| corrupt("token hash"))?,
            client_id: ClientId::parse(&r.client_id).map_err(|_| corrupt("client id"))?,
            audience: ApiAudience::from_key(&r.audience).ok_or_else(|| corrupt("audience"))?,
            scopes: ScopeSet::parse(&r.scopes).map_err(|_| corrupt("scopes"))?,
            issued_at: timestamp(r.issued_at)?,
            expires_at: timestamp(r.expires_at)?,
            revoked: r.revoked,
        })
    }
}

/// A signing key as the SQL engines keep it.
pub fn signing_key_from_row(
    kid: String,
    private_key_pem: String,
    created_at: i64,
) -> Result<SigningKey, StoreError> {
    Ok(SigningKey {
        kid,
        private_key_pem,
        created_at: timestamp(created_at)?,
    })
}

/// Sandbox credentials as the SQL engines keep them.
pub fn sandbox_from_row(
    client_id: String,
    secret: String,
) -> Result<SandboxCredentials, StoreError> {
    Ok(SandboxCredentials {
        client_id: ClientId::parse(&client_id).map_err(|_| corrupt("client id"))?,
        client_secret: ClientSecret::from_presented(secret),
    })
}
