//! The one storage trait. SQLite and PostgreSQL implement it in their own crates.
//!
//! Every method that reports success has committed its write.

use async_trait::async_trait;

use time::OffsetDateTime;

use crate::consent::{
    Consent, ConsentDuration, ConsentEvent, ConsentEventType, ConsentId, ConsentKind,
    ConsentStatus, RevokedBy, UsageRecord,
};
use crate::creditor::{
    Creditor, CreditorEndpoint, CreditorRecord, CreditorSyncState, FinancialInstitutionId,
    StoredCreditorDebt, SyncId, SyncOutcome, SyncReport,
};
use crate::creditor_lookup::CreditorUsage;
use crate::debt::{DebtEntry, Delivery, Loan, ProviderId};
use crate::debt_lookup::{DebtLookup, DebtLookupOutcome};
use crate::domain::{
    ApiAudience, Client, ClientId, ClientKeySet, ClientKeys, ClientName, ClientSecret, FetchUri,
    Nin, NinPolicy, OrgNumber, Purpose, RedirectUri, RequestObjectPolicy, ScopeSet, SecretHash,
};
use crate::flow::{AuthFlow, LoginSession};
use crate::grant::authorization_code::AuthorizationCodeRecord;
use crate::keys::SigningKey;
use crate::token::{AccessTokenRecord, TokenHash};

/// A claimed authorization code (see [`Store::claim_authorization_code`]).
#[derive(Debug, Clone)]
pub struct CodeClaim {
    /// The code as it was before the claim.
    pub code: AuthorizationCodeRecord,
    pub consent: Consent,
    /// Whether this call marked the code used.
    pub claimed: bool,
}

/// What [`Store::insert_consent`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConsentInsert {
    Created,
    /// The client already registered this `client_consent_id`.
    Existing(Consent),
}

/// What [`Store::revoke_consent`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevokeOutcome {
    Revoked,
    /// It exists and belongs to the client but was no longer active.
    AlreadyEnded,
    /// Unknown, or another client's.
    NotFound,
}

/// One page of an individual's consents (see [`Store::consents_of_person`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersonConsents {
    /// Newest first, each with how many times it was used to fetch debt.
    pub consents: Vec<(Consent, u64)>,
    /// How many consents the person has in all.
    pub total: u64,
}

/// One of an individual's consents with one page of its usage log (see
/// [`Store::person_consent_usage`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersonConsentUsage {
    pub consent: Consent,
    /// Newest first.
    pub uses: Vec<UsageRecord>,
    /// How many uses the consent has in all.
    pub total: u64,
}

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

/// The connection pool's state, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolStats {
    /// Open connections, idle or in use.
    pub size: u32,
    /// Open connections not in use.
    pub idle: u32,
    /// The most connections the pool opens.
    pub max: u32,
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
    /// The connection pool's state (cheap, no query); None if there is none.
    fn pool_stats(&self) -> Option<PoolStats> {
        None
    }

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
    /// NotFound if there is no such client. Disabling also revokes every
    /// token issued to the client.
    async fn set_client_disabled(&self, id: &ClientId, disabled: bool) -> Result<(), StoreError>;
    /// Deletes the client and every token issued to it. NotFound if absent.
    async fn delete_client(&self, id: &ClientId) -> Result<(), StoreError>;
    /// Replaces the client's registered redirect URIs (the sandbox client
    /// gets the server's own `/sandbox/callback`). NotFound if absent.
    async fn set_client_redirect_uris(
        &self,
        id: &ClientId,
        redirect_uris: &[RedirectUri],
    ) -> Result<(), StoreError>;

    // --- access tokens -----------------------------------------------------

    async fn insert_access_token(&self, token: &AccessTokenRecord) -> Result<(), StoreError>;
    /// Looks a token up by the hash of its value (primary key).
    async fn find_access_token(
        &self,
        hash: &TokenHash,
    ) -> Result<Option<AccessTokenRecord>, StoreError>;
    /// Records the token revoked: marks a stored token, or keeps a revoked
    /// row under a sealed token's hash until it would have expired anyway.
    async fn revoke_access_token(&self, token: &AccessTokenRecord) -> Result<(), StoreError>;
    /// Whether a sealed token (see [`crate::token`]) of the client's token
    /// `generation` no longer counts: it was revoked, or its client is gone,
    /// disabled, or has been disabled since (a later generation), or it is
    /// bound to a consent whose tokens are revoked (the consent was
    /// revoked, or its code replayed) or that is gone.
    async fn sealed_token_revoked(
        &self,
        token: &AccessTokenRecord,
        generation: i64,
    ) -> Result<bool, StoreError>;

    // --- consents ----------------------------------------------------------

    /// Inserts the consent and its `SAMTYKKE_OPPRETTET` event in one
    /// transaction. When the client already has a consent with the same
    /// `client_consent_id`, nothing is written and that consent is returned.
    async fn insert_consent(&self, consent: &Consent) -> Result<ConsentInsert, StoreError>;
    async fn find_consent(&self, id: &ConsentId) -> Result<Option<Consent>, StoreError>;
    /// Carries out one debt fetch atomically: judges the consent with
    /// [`DebtLookup::judge`] as it is stored at that moment, and only if it
    /// may serve, writes the usage record with the lookup's per-creditor
    /// report (a single-use consent becomes consumed, with its
    /// `SAMTYKKE_ARKIVERT` event). Of concurrent lookups of a single-use
    /// consent exactly one is served. A refused lookup writes nothing.
    async fn look_up_debt(&self, lookup: &DebtLookup) -> Result<DebtLookupOutcome, StoreError>;
    /// [`Store::look_up_debt`] for a call made with a sealed token whose
    /// revocation state is not checked yet: the lookup happens only if the
    /// token still counts (see [`Store::sealed_token_revoked`]); None if it
    /// does not, and then nothing is read or written. A store may do both
    /// in one step, as the PostgreSQL store does.
    async fn look_up_debt_with_sealed_token(
        &self,
        token: &AccessTokenRecord,
        generation: i64,
        lookup: &DebtLookup,
    ) -> Result<Option<DebtLookupOutcome>, StoreError> {
        if self.sealed_token_revoked(token, generation).await? {
            return Ok(None);
        }
        self.look_up_debt(lookup).await.map(Some)
    }
    /// Revokes an active consent of `client_id` (event `SAMTYKKE_ARKIVERT`,
    /// tokens bound to it revoked).
    async fn revoke_consent(
        &self,
        id: &ConsentId,
        client_id: &ClientId,
        by: RevokedBy,
        now: OffsetDateTime,
    ) -> Result<RevokeOutcome, StoreError>;
    /// The usage log of one consent, oldest first.
    async fn consent_usage(&self, id: &ConsentId) -> Result<Vec<UsageRecord>, StoreError>;
    /// Marks up to `batch` active consents whose time is up as expired, with
    /// their events; returns how many. Safe to run in several processes.
    async fn expire_consents(&self, now: OffsetDateTime, batch: u32) -> Result<u64, StoreError>;

    // --- the individual's portal -------------------------------------------

    /// The consents given by `nin`, newest first (by when they were given,
    /// then by id, so that pages never overlap), skipping `offset`, at most
    /// `limit`, each with its number of uses; and how many there are.
    async fn consents_of_person(
        &self,
        nin: &Nin,
        offset: u64,
        limit: u32,
    ) -> Result<PersonConsents, StoreError>;
    /// The consent `id` if `nin` gave it, with its uses newest first,
    /// skipping `offset`, at most `limit`, and their number; None if there is
    /// no such consent or another person gave it (the same answer).
    async fn person_consent_usage(
        &self,
        nin: &Nin,
        id: &ConsentId,
        offset: u64,
        limit: u32,
    ) -> Result<Option<PersonConsentUsage>, StoreError>;
    /// Withdrawal by the individual: revokes the consent `id` given by `nin`
    /// if it is active (revoked by [`RevokedBy::Individual`], its
    /// `SAMTYKKE_ARKIVERT` event, tokens bound to it revoked), in one
    /// transaction. `AlreadyEnded` if it is theirs but no longer active,
    /// `NotFound` if there is no such consent or another person gave it.
    async fn revoke_consent_of_person(
        &self,
        id: &ConsentId,
        nin: &Nin,
        now: OffsetDateTime,
    ) -> Result<RevokeOutcome, StoreError>;

    // --- consent event feed -------------------------------------------------

    /// The client's events with sequence number ≥ `from`, at most `limit`.
    async fn consent_events(
        &self,
        client_id: &ClientId,
        from: i64,
        limit: u32,
    ) -> Result<Vec<ConsentEvent>, StoreError>;
    /// The client's lowest and highest sequence numbers, if it has events.
    async fn consent_event_bounds(
        &self,
        client_id: &ClientId,
    ) -> Result<Option<(i64, i64)>, StoreError>;
    /// Deletes events created before `before`; returns how many.
    async fn purge_consent_events(&self, before: OffsetDateTime) -> Result<u64, StoreError>;

    // --- debt registry -----------------------------------------------------

    /// Replaces every loan of the delivery's financial institutions with the
    /// delivery's loans, in one transaction, recording `at` as when their
    /// data was delivered; returns the number of loans.
    async fn import_delivery(
        &self,
        delivery: &Delivery,
        at: OffsetDateTime,
    ) -> Result<u64, StoreError>;
    /// The person's loans, by creditor.
    async fn debt_of(&self, nin: &Nin) -> Result<Vec<DebtEntry>, StoreError>;

    // --- live creditors (issue 21) -------------------------------------------

    /// Registers a creditor. Conflict if its financialInstitutionID is taken.
    async fn insert_creditor(&self, creditor: &Creditor) -> Result<(), StoreError>;
    /// Replaces a registration (all but `created_at`; the sync state stays).
    /// NotFound if absent.
    async fn update_creditor(&self, creditor: &Creditor) -> Result<(), StoreError>;
    async fn find_creditor(
        &self,
        id: &FinancialInstitutionId,
    ) -> Result<Option<CreditorRecord>, StoreError>;
    /// Every registered creditor with its sync state, by id.
    async fn list_creditors(&self) -> Result<Vec<CreditorRecord>, StoreError>;
    /// Removes the registration and the creditor's stored loans (they are no
    /// longer served), in one transaction. NotFound if absent.
    async fn delete_creditor(&self, id: &FinancialInstitutionId) -> Result<(), StoreError>;
    /// The registered creditors (enabled or not) whose certificates carry
    /// `org` (their `certificate_org`, else their own number): one for a
    /// bank, several for an IT provider serving many.
    async fn find_creditors_by_certificate_org(
        &self,
        org: &OrgNumber,
    ) -> Result<Vec<Creditor>, StoreError>;
    /// Claims the daily `getalldata` of creditor `id` for `day`: true for
    /// exactly one caller per creditor and day, across processes sharing the
    /// database; false for the others and for an unknown creditor.
    async fn claim_daily_sync(
        &self,
        id: &FinancialInstitutionId,
        day: time::Date,
    ) -> Result<bool, StoreError>;
    /// Records the end of a sync attempt (last attempt, last success and size
    /// on success, consecutive failures). NotFound if absent.
    async fn record_sync_outcome(
        &self,
        id: &FinancialInstitutionId,
        report: &SyncReport,
    ) -> Result<(), StoreError>;
    /// Stages a batch of a streamed replacement of one creditor's loans
    /// under `sync` (see [`Store::finish_loan_replacement`]); nothing is
    /// served from staged rows.
    async fn stage_loans(&self, sync: &SyncId, entries: &[DebtEntry]) -> Result<(), StoreError>;
    /// Swaps the loans staged under `sync` in as every loan of `id`, in one
    /// transaction (an empty staging empties it), with `provider_id`,
    /// records `at` as when its data was delivered, and drops the staging;
    /// returns the number of loans. Staged rows of other institutions are
    /// dropped, not stored.
    async fn finish_loan_replacement(
        &self,
        sync: &SyncId,
        id: &FinancialInstitutionId,
        provider_id: &ProviderId,
        at: OffsetDateTime,
    ) -> Result<u64, StoreError>;
    /// Drops what was staged under `sync`; the served data stays as it was.
    async fn abandon_loan_replacement(&self, sync: &SyncId) -> Result<(), StoreError>;
    /// The person's stored loans grouped by creditor (ordered by name, then
    /// id), each with the registered name (else the delivered one) and when
    /// that creditor's stored data was delivered.
    async fn stored_debt_of(&self, nin: &Nin) -> Result<Vec<StoredCreditorDebt>, StoreError>;
    /// A `pushUpdates` delivery: for each of its customers, replaces that
    /// person's loans at that institution with the delivered ones (none: all
    /// closed), and records `at` as when the institutions' data was
    /// delivered, in one transaction; returns the number of loans written.
    /// The caller has checked that the sender may push for every
    /// institution in it.
    async fn apply_push(&self, delivery: &Delivery, at: OffsetDateTime) -> Result<u64, StoreError>;

    // --- authorization-code flow ------------------------------------------

    // A flow's state, and the browser's login session, travel sealed with
    // the browser (see `flow`); the store keeps only which flows have
    // finished, until they expire, and which browsers logged out when.

    /// Finishes a flow that is not finished (denied, cancelled, failed).
    /// True if this call finished it.
    async fn end_auth_flow(&self, flow: &AuthFlow) -> Result<bool, StoreError>;
    /// The consent decision, atomically and once: finishes the flow and
    /// inserts the consent (with its `SAMTYKKE_OPPRETTET` event) and the
    /// authorization code. False, and nothing written, if the flow had
    /// finished, or if a logout of the browser has ended `session` (the
    /// login session the browser presented, which the caller has checked
    /// with [`LoginSession::vouches_for`]).
    async fn accept_auth_flow(
        &self,
        flow: &AuthFlow,
        consent: &Consent,
        code: &AuthorizationCodeRecord,
        session: &LoginSession,
    ) -> Result<bool, StoreError>;
    /// Ends `session` and every earlier login session of its browser (a
    /// logout): its flows waiting at the consent step can no longer be
    /// accepted, and its sealed session cookie no longer counts anywhere.
    /// Sessions are compared by when they began, so no clock but the one
    /// that stamped them matters. The record is kept until such sessions
    /// would have expired.
    async fn end_login_sessions(&self, session: &LoginSession) -> Result<(), StoreError>;
    /// Whether a logout has ended `session`.
    async fn login_session_ended(&self, session: &LoginSession) -> Result<bool, StoreError>;
    /// Claims a code for `client_id`, in one atomic step: marks it used if
    /// it is unused and was issued to that client, and returns the code as
    /// it was before (so `used` tells a replay), its consent, and whether
    /// this call claimed it. Of concurrent claims at most one succeeds.
    /// Another client's code, or a used one, is left as it is. A claimed
    /// code is used up even if the redemption then fails its checks.
    async fn claim_authorization_code(
        &self,
        hash: &TokenHash,
        client_id: &ClientId,
        now: OffsetDateTime,
    ) -> Result<Option<CodeClaim>, StoreError>;
    /// Revokes every access token bound to the consent: the stored ones are
    /// marked, and the consent's mark makes its sealed ones no longer count
    /// (see [`Store::sealed_token_revoked`]); returns how many stored
    /// tokens were marked.
    async fn revoke_consent_tokens(&self, consent_id: &ConsentId) -> Result<u64, StoreError>;
    /// Deletes finished-flow marks, logout records and codes whose time is
    /// up, and access tokens expired for more than a day; returns how many
    /// rows.
    async fn purge_expired_flow_state(&self, now: OffsetDateTime) -> Result<u64, StoreError>;

    // --- server secrets ----------------------------------------------------

    /// The secret stored under `name`, storing `candidate` first if there is
    /// none yet (atomically across processes).
    async fn server_secret(&self, name: &str, candidate: &[u8]) -> Result<Vec<u8>, StoreError>;
    /// Every secret whose name starts with `prefix` (compared as text, not
    /// as a pattern), as (name, value), in no particular order.
    async fn server_secrets_with_prefix(
        &self,
        prefix: &str,
    ) -> Result<Vec<(String, Vec<u8>)>, StoreError>;

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
    pub require_pkce: bool,
    pub disabled: bool,
    pub created_at: i64,
    pub token_generation: i64,
    /// The inline JWK set (JSON), if the client registered one.
    pub jwks: Option<String>,
    pub jwks_uri: Option<String>,
    /// Newline-separated.
    pub request_uris: String,
    pub allow_unsigned_request_objects: bool,
}

/// Redirect URIs as [`ClientRow::redirect_uris`] keeps them.
pub fn join_redirect_uris(uris: &[RedirectUri]) -> String {
    uris.iter()
        .map(RedirectUri::as_str)
        .collect::<Vec<_>>()
        .join("\n")
}

impl From<&Client> for ClientRow {
    fn from(c: &Client) -> Self {
        Self {
            id: c.id.as_str().to_owned(),
            secret_hash: c.secret_hash.as_bytes().to_vec(),
            name: c.name.as_str().to_owned(),
            org_number: c.org_number.as_str().to_owned(),
            redirect_uris: join_redirect_uris(&c.redirect_uris),
            purposes: c
                .purposes
                .iter()
                .map(|p| p.as_str())
                .collect::<Vec<_>>()
                .join(" "),
            may_create_agreements: c.may_create_agreements,
            may_read_events: c.may_read_events,
            require_pkce: c.require_pkce,
            disabled: c.disabled,
            created_at: c.created_at.unix_timestamp(),
            token_generation: c.token_generation,
            jwks: match &c.request_objects.keys {
                Some(ClientKeys::Inline(set)) => Some(set.to_json()),
                _ => None,
            },
            jwks_uri: match &c.request_objects.keys {
                Some(ClientKeys::Remote(uri)) => Some(uri.as_str().to_owned()),
                _ => None,
            },
            request_uris: c
                .request_objects
                .request_uris
                .iter()
                .map(FetchUri::as_str)
                .collect::<Vec<_>>()
                .join("\n"),
            allow_unsigned_request_objects: c.request_objects.allow_unsigned,
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
            require_pkce: r.require_pkce,
            disabled: r.disabled,
            created_at: timestamp(r.created_at)?,
            token_generation: r.token_generation,
            request_objects: RequestObjectPolicy {
                keys: match (r.jwks, r.jwks_uri) {
                    (Some(json), _) => Some(ClientKeys::Inline(
                        ClientKeySet::parse_lenient(&json).map_err(|_| corrupt("client jwks"))?,
                    )),
                    (None, Some(uri)) => Some(ClientKeys::Remote(
                        FetchUri::parse(&uri).map_err(|_| corrupt("client jwks_uri"))?,
                    )),
                    (None, None) => None,
                },
                request_uris: r
                    .request_uris
                    .lines()
                    .filter(|l| !l.is_empty())
                    .map(|l| FetchUri::parse(l).map_err(|_| corrupt("request uri")))
                    .collect::<Result<_, _>>()?,
                allow_unsigned: r.allow_unsigned_request_objects,
            },
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
    pub consent_id: Option<String>,
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
            consent_id: t.consent_id.map(|c| c.to_string()),
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
            consent_id: r
                .consent_id
                .map(|c| ConsentId::parse(&c).ok_or_else(|| corrupt("consent id")))
                .transpose()?,
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

fn parse_nin(s: &str) -> Result<Nin, StoreError> {
    Nin::parse(s, NinPolicy::AllowSynthetic).map_err(|_| corrupt("national identity number"))
}

fn parse_consent_id(s: &str) -> Result<ConsentId, StoreError> {
    ConsentId::parse(s).ok_or_else(|| corrupt("consent id"))
}

fn parse_purpose(s: &str) -> Result<Purpose, StoreError> {
    Purpose::parse(s).ok_or_else(|| corrupt("purpose"))
}

/// A consent as the SQL engines keep it.
#[derive(Debug, Clone)]
pub struct ConsentRow {
    pub id: String,
    pub client_id: String,
    pub nin: String,
    pub purpose: String,
    pub kind: String,
    /// 0 = single use.
    pub duration_days: i64,
    pub client_consent_id: Option<String>,
    pub created_at: i64,
    pub expires_at: i64,
    pub status: String,
    pub revoked_by: Option<String>,
    /// Unix seconds (kept for rows and tools that only know this column).
    pub ended_at: Option<i64>,
    /// Unix microseconds: the exact end, which the debt API tells (SPEC
    /// §7). NULL in rows that ended before migration `20261205000013`;
    /// `ended_at` stands in for it there.
    pub ended_at_us: Option<i64>,
}

impl From<&Consent> for ConsentRow {
    fn from(c: &Consent) -> Self {
        Self {
            id: c.id.to_string(),
            client_id: c.client_id.as_str().to_owned(),
            nin: c.nin.as_str().to_owned(),
            purpose: c.purpose.as_str().to_owned(),
            kind: c.kind.as_str().to_owned(),
            duration_days: i64::from(c.duration.as_days()),
            client_consent_id: c.client_consent_id.clone(),
            created_at: c.created_at.unix_timestamp(),
            expires_at: c.expires_at.unix_timestamp(),
            status: c.status.as_str().to_owned(),
            revoked_by: c.revoked_by.map(|r| r.as_str().to_owned()),
            ended_at: c.ended_at.map(OffsetDateTime::unix_timestamp),
            ended_at_us: c.ended_at.map(unix_micros),
        }
    }
}

impl TryFrom<ConsentRow> for Consent {
    type Error = StoreError;

    fn try_from(r: ConsentRow) -> Result<Self, StoreError> {
        Ok(Consent {
            id: parse_consent_id(&r.id)?,
            client_id: ClientId::parse(&r.client_id).map_err(|_| corrupt("client id"))?,
            nin: parse_nin(&r.nin)?,
            purpose: parse_purpose(&r.purpose)?,
            kind: ConsentKind::parse(&r.kind).ok_or_else(|| corrupt("consent kind"))?,
            duration: ConsentDuration::from_days(
                u32::try_from(r.duration_days).map_err(|_| corrupt("duration"))?,
            ),
            client_consent_id: r.client_consent_id,
            created_at: timestamp(r.created_at)?,
            expires_at: timestamp(r.expires_at)?,
            status: ConsentStatus::parse(&r.status).ok_or_else(|| corrupt("consent status"))?,
            revoked_by: r
                .revoked_by
                .map(|s| RevokedBy::parse(&s).ok_or_else(|| corrupt("revoked by")))
                .transpose()?,
            ended_at: match (r.ended_at_us, r.ended_at) {
                (Some(us), _) => Some(from_unix_micros(us)?),
                (None, seconds) => seconds.map(timestamp).transpose()?,
            },
        })
    }
}

/// A consent event as the SQL engines keep it.
#[derive(Debug, Clone)]
pub struct ConsentEventRow {
    pub sequence_nr: i64,
    pub event_id: String,
    pub event_type: String,
    pub client_id: String,
    pub consent_id: String,
    pub purpose: String,
    pub client_consent_id: Option<String>,
    /// Microseconds since the Unix epoch.
    pub created_at_us: i64,
}

/// Microseconds since the Unix epoch, for timestamps that are shown with
/// sub-second precision.
pub fn unix_micros(t: OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos() / 1000).unwrap_or(i64::MAX)
}

/// The inverse of [`unix_micros`].
pub(crate) fn from_unix_micros(us: i64) -> Result<OffsetDateTime, StoreError> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(us) * 1000)
        .map_err(|_| corrupt("timestamp"))
}

/// A consent event's columns as a feed read gets them, borrowed from the
/// engine's row: the page is decoded without copying each text column into
/// a `String` first. The client is the reader, known before the read.
#[derive(Debug, Clone, Copy)]
pub struct ConsentEventColumns<'r> {
    pub sequence_nr: i64,
    pub event_id: &'r str,
    pub event_type: &'r str,
    pub consent_id: &'r str,
    pub purpose: &'r str,
    pub client_consent_id: Option<&'r str>,
    /// Microseconds since the Unix epoch.
    pub created_at_us: i64,
}

impl ConsentEventColumns<'_> {
    /// The event of `client_id` these columns describe.
    pub fn into_event(self, client_id: ClientId) -> Result<ConsentEvent, StoreError> {
        Ok(ConsentEvent {
            sequence_nr: self.sequence_nr,
            event_id: uuid::Uuid::try_parse(self.event_id).map_err(|_| corrupt("event id"))?,
            event_type: ConsentEventType::parse(self.event_type)
                .ok_or_else(|| corrupt("event type"))?,
            client_id,
            consent_id: parse_consent_id(self.consent_id)?,
            purpose: parse_purpose(self.purpose)?,
            client_consent_id: self.client_consent_id.map(str::to_owned),
            timestamp: from_unix_micros(self.created_at_us)?,
        })
    }
}

impl TryFrom<ConsentEventRow> for ConsentEvent {
    type Error = StoreError;

    fn try_from(r: ConsentEventRow) -> Result<Self, StoreError> {
        ConsentEventColumns {
            sequence_nr: r.sequence_nr,
            event_id: &r.event_id,
            event_type: &r.event_type,
            consent_id: &r.consent_id,
            purpose: &r.purpose,
            client_consent_id: r.client_consent_id.as_deref(),
            created_at_us: r.created_at_us,
        }
        .into_event(ClientId::parse(&r.client_id).map_err(|_| corrupt("client id"))?)
    }
}

/// A fresh id for a feed event.
pub fn new_event_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// A new event for `consent`, to be inserted by the engine (which assigns
/// the sequence number).
pub fn new_event_row(
    consent: &ConsentRow,
    event_type: ConsentEventType,
    at: OffsetDateTime,
) -> ConsentEventRow {
    ConsentEventRow {
        sequence_nr: 0,
        event_id: new_event_id(),
        event_type: event_type.as_str().to_owned(),
        client_id: consent.client_id.clone(),
        consent_id: consent.id.clone(),
        purpose: consent.purpose.clone(),
        client_consent_id: consent.client_consent_id.clone(),
        created_at_us: unix_micros(at),
    }
}

/// A usage record as the SQL engines keep it.
#[derive(Debug, Clone)]
pub struct UsageRow {
    pub consent_id: String,
    pub client_id: String,
    pub used_at_us: i64,
    pub purpose: String,
    pub trace_id: String,
    /// The per-creditor report as JSON (see [`CreditorUsage::to_json`]).
    pub creditor_report: Option<String>,
}

impl From<&UsageRecord> for UsageRow {
    fn from(u: &UsageRecord) -> Self {
        Self {
            consent_id: u.consent_id.to_string(),
            client_id: u.client_id.as_str().to_owned(),
            used_at_us: unix_micros(u.used_at),
            purpose: u.purpose.as_str().to_owned(),
            trace_id: u.trace_id.clone(),
            creditor_report: u.creditors.as_deref().map(CreditorUsage::to_json),
        }
    }
}

impl TryFrom<UsageRow> for UsageRecord {
    type Error = StoreError;

    fn try_from(r: UsageRow) -> Result<Self, StoreError> {
        Ok(UsageRecord {
            consent_id: parse_consent_id(&r.consent_id)?,
            client_id: ClientId::parse(&r.client_id).map_err(|_| corrupt("client id"))?,
            used_at: from_unix_micros(r.used_at_us)?,
            purpose: parse_purpose(&r.purpose)?,
            trace_id: r.trace_id,
            creditors: r
                .creditor_report
                .map(|json| CreditorUsage::from_json(&json).map_err(|_| corrupt("creditor report")))
                .transpose()?,
        })
    }
}

/// A loan as the SQL engines keep it.
#[derive(Debug, Clone)]
pub struct LoanRow {
    pub nin: String,
    pub creditor_org: String,
    pub creditor_name: String,
    pub provider_id: String,
    pub account_id: String,
    pub loan_json: String,
}

/// A delivery as the stores write it: its institutions' ids and its loan
/// rows (an import and a push both start from these).
pub fn delivery_rows(delivery: &Delivery) -> (Vec<String>, Vec<LoanRow>) {
    let institutions = delivery
        .financial_institutions
        .iter()
        .map(|fi| fi.as_str().to_owned())
        .collect();
    let rows = delivery
        .entries
        .iter()
        .map(|e| LoanRow::from_entry(e, &delivery.provider_id))
        .collect();
    (institutions, rows)
}

impl LoanRow {
    /// A staged loan of a `getalldata` (see [`Store::stage_loans`]): its
    /// providerID comes with the swap.
    pub fn staged(entry: &DebtEntry) -> Self {
        Self {
            nin: entry.nin.as_str().to_owned(),
            creditor_org: entry.creditor_org.as_str().to_owned(),
            creditor_name: entry.creditor_name.clone(),
            provider_id: String::new(),
            account_id: entry.account_id.clone(),
            loan_json: entry.loan.to_json().to_string(),
        }
    }

    pub fn from_entry(entry: &DebtEntry, provider_id: &ProviderId) -> Self {
        Self {
            nin: entry.nin.as_str().to_owned(),
            creditor_org: entry.creditor_org.as_str().to_owned(),
            creditor_name: entry.creditor_name.clone(),
            provider_id: provider_id.as_str().to_owned(),
            account_id: entry.account_id.clone(),
            loan_json: entry.loan.to_json().to_string(),
        }
    }
}

impl TryFrom<LoanRow> for DebtEntry {
    type Error = StoreError;

    fn try_from(r: LoanRow) -> Result<Self, StoreError> {
        Ok(DebtEntry {
            nin: parse_nin(&r.nin)?,
            creditor_org: FinancialInstitutionId::parse(&r.creditor_org)
                .map_err(|_| corrupt("creditor org"))?,
            creditor_name: r.creditor_name,
            account_id: r.account_id,
            loan: Loan::from_stored_json(&r.loan_json).map_err(|_| corrupt("loan"))?,
        })
    }
}

/// A registered creditor as the SQL engines keep it.
#[derive(Debug, Clone, Default)]
pub struct CreditorRow {
    pub id: String,
    pub name: String,
    pub endpoint: String,
    pub timeout_ms: i64,
    pub max_concurrent: Option<i64>,
    pub certificate_org: Option<String>,
    pub always_ask: bool,
    pub enabled: bool,
    pub page_size: Option<i64>,
    pub created_at_us: i64,
    pub last_attempt_at_us: Option<i64>,
    pub last_success_at_us: Option<i64>,
    pub last_outcome: Option<String>,
    pub last_size: Option<i64>,
    pub last_error: Option<String>,
    pub consecutive_failures: i64,
    /// `YYYY-MM-DD`.
    pub claimed_day: Option<String>,
    /// From `debt_deliveries`.
    pub stored_at_us: Option<i64>,
}

impl From<&Creditor> for CreditorRow {
    fn from(c: &Creditor) -> Self {
        Self {
            id: c.id.as_str().to_owned(),
            name: c.name.clone(),
            endpoint: c.endpoint.as_str().to_owned(),
            timeout_ms: i64::try_from(c.timeout.as_millis()).unwrap_or(i64::MAX),
            max_concurrent: c.max_concurrent.map(i64::from),
            certificate_org: c.certificate_org.as_ref().map(|o| o.as_str().to_owned()),
            always_ask: c.always_ask,
            enabled: c.enabled,
            page_size: c.page_size.map(i64::from),
            created_at_us: unix_micros(c.created_at),
            ..Self::default()
        }
    }
}

/// `YYYY-MM-DD`, as `claimed_day` keeps a day (sorts as text).
pub fn day_text(day: time::Date) -> String {
    format!(
        "{:04}-{:02}-{:02}",
        day.year(),
        u8::from(day.month()),
        day.day()
    )
}

fn parse_day(s: &str) -> Result<time::Date, StoreError> {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    time::Date::parse(s, &format).map_err(|_| corrupt("claimed day"))
}

impl TryFrom<CreditorRow> for CreditorRecord {
    type Error = StoreError;

    fn try_from(r: CreditorRow) -> Result<Self, StoreError> {
        let micros = |v: Option<i64>| v.map(from_unix_micros).transpose();
        let small = |v: Option<i64>, what| {
            v.map(|n| u32::try_from(n).map_err(|_| corrupt(what)))
                .transpose()
        };
        Ok(CreditorRecord {
            creditor: Creditor {
                id: FinancialInstitutionId::parse(&r.id).map_err(|_| corrupt("creditor id"))?,
                name: r.name,
                // Stored endpoints were checked when registered (http only
                // in sandbox mode); read them back as they are.
                endpoint: CreditorEndpoint::parse(&r.endpoint, true)
                    .map_err(|_| corrupt("creditor endpoint"))?,
                timeout: std::time::Duration::from_millis(
                    u64::try_from(r.timeout_ms).map_err(|_| corrupt("creditor timeout"))?,
                ),
                max_concurrent: small(r.max_concurrent, "max concurrent")?,
                certificate_org: r
                    .certificate_org
                    .map(|o| OrgNumber::parse(&o).map_err(|_| corrupt("certificate org")))
                    .transpose()?,
                always_ask: r.always_ask,
                enabled: r.enabled,
                page_size: small(r.page_size, "page size")?,
                created_at: from_unix_micros(r.created_at_us)?,
            },
            sync: CreditorSyncState {
                last_attempt_at: micros(r.last_attempt_at_us)?,
                last_success_at: micros(r.last_success_at_us)?,
                last_outcome: r
                    .last_outcome
                    .map(|o| SyncOutcome::parse(&o).ok_or_else(|| corrupt("sync outcome")))
                    .transpose()?,
                last_size: r
                    .last_size
                    .map(|n| u64::try_from(n).map_err(|_| corrupt("sync size")))
                    .transpose()?,
                last_error: r.last_error,
                consecutive_failures: u32::try_from(r.consecutive_failures)
                    .map_err(|_| corrupt("failures"))?,
                claimed_day: r.claimed_day.as_deref().map(parse_day).transpose()?,
            },
            stored_at: micros(r.stored_at_us)?,
        })
    }
}

/// Groups a person's loan rows, each with its creditor's delivery time and
/// registered name, by creditor in row order (see [`Store::stored_debt_of`]).
pub fn group_stored_debt(
    rows: Vec<(LoanRow, Option<i64>, Option<String>)>,
) -> Result<Vec<StoredCreditorDebt>, StoreError> {
    let mut out: Vec<StoredCreditorDebt> = Vec::new();
    for (row, stored_at_us, registered_name) in rows {
        let mut entry = DebtEntry::try_from(row)?;
        if let Some(name) = registered_name {
            entry.creditor_name = name;
        }
        match out.iter_mut().find(|d| d.id == entry.creditor_org) {
            Some(group) => group.entries.push(entry),
            None => out.push(StoredCreditorDebt {
                id: entry.creditor_org.clone(),
                name: entry.creditor_name.clone(),
                stored_at: stored_at_us.map(from_unix_micros).transpose()?,
                entries: vec![entry],
            }),
        }
    }
    Ok(out)
}

fn token_hash(bytes: &[u8]) -> Result<TokenHash, StoreError> {
    TokenHash::from_bytes(bytes).ok_or_else(|| corrupt("hash"))
}

/// A logout as the SQL engines record it (see
/// [`Store::end_login_sessions`]): the browser's sessions begun up to
/// `upto_micros` (Unix microseconds) are ended; the record is kept until
/// `kept_until` (Unix seconds), when every such session has expired anyway.
#[derive(Debug, Clone, Copy)]
pub struct LoginSessionEnd {
    pub upto_micros: i64,
    pub kept_until: i64,
}

impl LoginSessionEnd {
    pub fn of(session: &LoginSession) -> Self {
        Self {
            upto_micros: session.created_at_micros(),
            kept_until: session.expires_at.unix_timestamp() + 1,
        }
    }
}

/// An authorization code as the SQL engines keep it.
#[derive(Debug, Clone)]
pub struct AuthorizationCodeRow {
    pub hash: Vec<u8>,
    pub client_id: String,
    pub redirect_uri: String,
    pub consent_id: String,
    pub scopes: String,
    pub nonce: Option<String>,
    pub code_challenge: Option<String>,
    pub issued_at: i64,
    pub expires_at: i64,
    pub used_at: Option<i64>,
}

impl From<&AuthorizationCodeRecord> for AuthorizationCodeRow {
    fn from(c: &AuthorizationCodeRecord) -> Self {
        Self {
            hash: c.hash.as_bytes().to_vec(),
            client_id: c.client_id.as_str().to_owned(),
            redirect_uri: c.redirect_uri.clone(),
            consent_id: c.consent_id.to_string(),
            scopes: c.scopes.to_string(),
            nonce: c.nonce.clone(),
            code_challenge: c.code_challenge.clone(),
            issued_at: c.issued_at.unix_timestamp(),
            expires_at: c.expires_at.unix_timestamp(),
            used_at: c.used.then(|| c.issued_at.unix_timestamp()),
        }
    }
}

impl TryFrom<AuthorizationCodeRow> for AuthorizationCodeRecord {
    type Error = StoreError;

    fn try_from(r: AuthorizationCodeRow) -> Result<Self, StoreError> {
        Ok(AuthorizationCodeRecord {
            hash: token_hash(&r.hash)?,
            client_id: ClientId::parse(&r.client_id).map_err(|_| corrupt("client id"))?,
            redirect_uri: r.redirect_uri,
            consent_id: parse_consent_id(&r.consent_id)?,
            scopes: ScopeSet::parse(&r.scopes).map_err(|_| corrupt("scopes"))?,
            nonce: r.nonce,
            code_challenge: r.code_challenge,
            issued_at: timestamp(r.issued_at)?,
            expires_at: timestamp(r.expires_at)?,
            used: r.used_at.is_some(),
        })
    }
}
