//! The hot statements that run in cross-request batches (see [`crate::batch`]):
//! the sealed-token revocation check of every API call, the debt lookup,
//! the agreement registration, the consent decision, the authorization
//! code's claim and the feed page. Each takes its inputs as arrays and
//! keeps them apart by ordinal, so a batch decides exactly what the same
//! inputs would decide one by one.
//!
//! The batched updates (a single-use consent's consumption, a code's claim)
//! join the rows that the same statement's primary-key reads found by
//! `ctid`; the planner, which expects few of them, probes each row by TID.
//! Found by key (`id = ANY (…)`), or by `ctid = ANY (…)`, a session that
//! planned the statement while the table was small kept a generic plan
//! that scanned the whole table for every batch, a scan that grew with the
//! table until autovacuum's next ANALYZE (on a fresh database, in the
//! benchmark's flows: a third of the lookup batches by key and nearly
//! every code claim; BENCHMARKS.md, stop 17). A row that a concurrent
//! statement updated after the read is updated only if its newest version
//! still meets the conditions (`used_at IS NULL`, an active `status`);
//! otherwise the claim or the consumption fails, as if the other statement
//! had come first.

use samtykke_core::consent::{Consent, ConsentEventType};
use samtykke_core::creditor_lookup::CreditorUsage;
use samtykke_core::debt_lookup::{DebtLookup, DebtLookupOutcome, DebtLookupRefusal};
use samtykke_core::store::{
    new_event_id, unix_micros, AuthorizationCodeRow, CodeClaim, ConsentEventRow, ConsentRow,
    StoreError,
};
use sqlx::postgres::{PgPool, PgRow};
use sqlx::Row;

use crate::batch::Batcher;
use crate::{code_from_row, consent_row, unavailable};

/// Workers per batcher: batches of one kind in flight at once. Fewer
/// workers make fuller batches; on the 2-core benchmark machine 2 did
/// 15–30% better than 4 (fewer statements for the same work) and about as
/// well as 1, which would leave a kind's requests waiting for one commit at
/// a time (BENCHMARKS.md, stop 13).
const WORKERS: usize = 2;
/// Inputs per batch at most.
const MAX_BATCH: usize = 64;
/// Feed pages per batch at most: a page holds up to 1,000 events (about
/// 150 kB), so a batch of feed pages is kept to a few MB.
const MAX_PAGE_BATCH: usize = 16;

/// The batchers of one store (one per process), sharing its pool.
#[derive(Debug)]
pub(crate) struct Batches {
    pub(crate) sealed_token_revoked: Batcher<SealedTokenCheck, bool>,
    pub(crate) debt_lookup: Batcher<LookupCall, Result<Option<DebtLookupOutcome>, StoreError>>,
    pub(crate) consent_insert: Batcher<NewConsent, bool>,
    pub(crate) flow_accept: Batcher<FlowAccept, bool>,
    pub(crate) code_claim: Batcher<ClaimCall, Result<Option<CodeClaim>, StoreError>>,
    pub(crate) feed_page: Batcher<PageRead, Option<Vec<String>>>,
}

impl Batches {
    pub(crate) fn start(pool: &PgPool) -> Self {
        /// A batcher whose batches run `$run(&pool, inputs)`, `$max` inputs
        /// at most.
        macro_rules! batcher {
            ($max:expr, $run:ident) => {{
                let pool = pool.clone();
                Batcher::start(WORKERS, $max, move |inputs| {
                    let pool = pool.clone();
                    async move { $run(&pool, inputs).await }
                })
            }};
        }
        Self {
            sealed_token_revoked: batcher!(MAX_BATCH, sealed_tokens_revoked),
            debt_lookup: batcher!(MAX_BATCH, look_up_debts),
            consent_insert: batcher!(MAX_BATCH, insert_consents),
            flow_accept: batcher!(MAX_BATCH, accept_flows),
            code_claim: batcher!(MAX_BATCH, claim_codes),
            feed_page: batcher!(MAX_PAGE_BATCH, read_pages),
        }
    }
}

/// The probes that tell whether a sealed token no longer counts, joined to
/// a row `r` with `r_hash` (null: no token to check), `r_client`,
/// `r_generation` and `r_bound` (the consent it is bound to, if any); see
/// `Store::sealed_token_revoked`. Each probes a primary key (`LATERAL …
/// OFFSET 0` keeps the planner from scanning whole tables for a hashed join
/// or subplan, which is what it picks for correlated `EXISTS` over
/// `unnest`). Shared by the standalone check and the debt lookup, so that
/// the rule is written once; [`token_refused!`] is the verdict.
macro_rules! token_probes {
    () => {
        "LEFT JOIN LATERAL (SELECT hash FROM access_tokens WHERE r.r_hash IS NOT NULL \
           AND hash = r.r_hash AND revoked OFFSET 0) a ON TRUE \
         LEFT JOIN LATERAL (SELECT id FROM clients WHERE r.r_hash IS NOT NULL AND id = r.r_client \
           AND NOT disabled AND token_generation = r.r_generation OFFSET 0) cl ON TRUE \
         LEFT JOIN LATERAL (SELECT id FROM consents WHERE r.r_bound IS NOT NULL AND id = r.r_bound \
           AND NOT tokens_revoked OFFSET 0) b ON TRUE "
    };
}

/// Whether the token of [`token_probes!`]'s row no longer counts.
macro_rules! token_refused {
    () => {
        "(r.r_hash IS NOT NULL AND (a.hash IS NOT NULL OR cl.id IS NULL \
           OR (r.r_bound IS NOT NULL AND b.id IS NULL)))"
    };
}

/// A sealed token to check: its hash, client, the client's token
/// generation it was issued in, and the consent it is bound to.
#[derive(Debug)]
pub(crate) struct SealedTokenCheck {
    pub(crate) hash: Vec<u8>,
    pub(crate) client_id: String,
    pub(crate) generation: i64,
    pub(crate) consent_id: Option<String>,
}

/// For each token, whether it no longer counts: revoked, or its client is
/// gone, disabled or of a later generation, or it is bound to a consent
/// that is gone or whose tokens are revoked.
async fn sealed_tokens_revoked(
    pool: &PgPool,
    checks: Vec<SealedTokenCheck>,
) -> Result<Vec<bool>, StoreError> {
    let mut hashes = Vec::with_capacity(checks.len());
    let mut clients = Vec::with_capacity(checks.len());
    let mut generations = Vec::with_capacity(checks.len());
    let mut consents = Vec::with_capacity(checks.len());
    for check in checks {
        hashes.push(check.hash);
        clients.push(check.client_id);
        generations.push(check.generation);
        consents.push(check.consent_id);
    }
    sqlx::query_scalar(concat!(
        "SELECT ",
        token_refused!(),
        " FROM unnest($1::bytea[], $2::text[], $3::bigint[], $4::text[]) \
           WITH ORDINALITY AS r(r_hash, r_client, r_generation, r_bound, r_i) ",
        token_probes!(),
        "ORDER BY r.r_i"
    ))
    .bind(hashes)
    .bind(clients)
    .bind(generations)
    .bind(consents)
    .fetch_all(pool)
    .await
    .map_err(unavailable)
}

/// A debt lookup, and the sealed token it is made with if that token's
/// revocation state is still to be checked.
#[derive(Debug)]
pub(crate) struct LookupCall {
    pub(crate) lookup: DebtLookup,
    pub(crate) token: Option<SealedTokenCheck>,
}

/// Debt lookups in one statement and one commit. First each sealed token
/// still to check is checked as [`sealed_tokens_revoked`] does (`v`); the
/// lookup of a token that no longer counts reads and writes nothing, and
/// its outcome is None. The conditions of [`DebtLookup::judge`] pick the
/// lookups that may serve (`ok`). A duration consent serves every such
/// lookup; a single-use consent is consumed by a conditional update, which
/// only the first of its lookups in the batch (`once`) attempts, and which
/// of concurrent statements only one wins (the update waits on the row and
/// checks `status` again). Exactly the served lookups (`served`) get their
/// usage record (with the lookup's per-creditor report) and a consumed
/// consent its `SAMTYKKE_ARKIVERT` event. Every lookup has exactly one row,
/// in order, carrying its ordinal (`o_i`), whether its token was refused,
/// the consent's columns (null if there is no such consent) and whether it
/// was served. Tokens, clients and consents are read through `LATERAL (…
/// OFFSET 0)`, so that each lookup probes the indexes: a plain join with
/// `unnest` lets the planner pick a hash join over whole tables, which a
/// prepared statement's generic plan then keeps as they grow. The update
/// joins its rows by `ctid` (see the module docs). Its status check is
/// written `(status || '') = 'active'` so that it can never match the
/// partial index `consents_active_by_expiry`: given the plain `status =
/// 'active'` (when rows were found by `id`), the planner AND-ed a scan of
/// that whole index (every active consent) with the primary-key probe,
/// once per batch.
async fn look_up_debts(
    pool: &PgPool,
    calls: Vec<LookupCall>,
) -> Result<Vec<Result<Option<DebtLookupOutcome>, StoreError>>, StoreError> {
    let n = calls.len();
    let mut columns = LookupColumns::with_capacity(n);
    for call in &calls {
        columns.push(call);
    }
    let rows = sqlx::query(concat!(
        "WITH r AS ( \
           SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[], $5::text[], $6::text[], \
             $7::text[], $9::bytea[], $10::bigint[], $11::text[], $12::text[]) \
             WITH ORDINALITY AS r(r_consent, r_client, r_at, r_at_us, r_trace, r_purposes, r_event, \
               r_hash, r_generation, r_bound, r_report, r_i) \
         ), v AS ( \
           SELECT r.*, ",
        token_refused!(),
        " AS r_revoked FROM r ",
        token_probes!(),
        "         ), c AS ( \
           SELECT v.r_i, v.r_client, v.r_at, v.r_at_us, v.r_trace, v.r_purposes, v.r_event, v.r_report, k.* \
           FROM v CROSS JOIN LATERAL (SELECT ctid AS consent_row, * FROM consents WHERE id = v.r_consent OFFSET 0) AS k \
           WHERE NOT v.r_revoked \
         ), ok AS ( \
           SELECT * FROM c WHERE client_id = r_client AND status = 'active' AND expires_at > r_at \
             AND purpose = ANY (string_to_array(r_purposes, ',')) \
         ), once AS ( \
           SELECT DISTINCT ON (id) id, consent_row, r_i, r_at, r_at_us FROM ok WHERE duration_days = 0 \
             ORDER BY id, r_i \
         ), used AS ( \
           UPDATE consents SET status = 'consumed', ended_at = once.r_at, ended_at_us = once.r_at_us FROM once \
           WHERE consents.ctid = once.consent_row AND (consents.status || '') = 'active' \
             AND consents.duration_days = 0 AND consents.expires_at > once.r_at \
           RETURNING consents.id \
         ), served AS ( \
           SELECT * FROM ok WHERE duration_days <> 0 \
           UNION ALL \
           SELECT ok.* FROM ok JOIN once ON once.r_i = ok.r_i JOIN used ON used.id = once.id \
         ), logged AS ( \
           INSERT INTO consent_usage (consent_id, client_id, used_at_us, purpose, trace_id, creditor_report) \
           SELECT id, client_id, r_at_us, purpose, r_trace, r_report FROM served ORDER BY r_i \
         ), archived AS ( \
           INSERT INTO consent_events_pending (event_id, event_type, client_id, consent_id, purpose, \
             client_consent_id, created_at_us) \
           SELECT r_event, $8, client_id, id, purpose, client_consent_id, r_at_us \
           FROM served WHERE duration_days = 0 \
         ) SELECT v.r_i AS o_i, v.r_revoked AS o_revoked, c.id, c.client_id, c.nin, c.purpose, c.kind, \
             c.duration_days, c.client_consent_id, c.created_at, c.expires_at, c.status, c.revoked_by, \
             c.ended_at, c.ended_at_us, s.r_i IS NOT NULL AS served \
           FROM v LEFT JOIN c ON c.r_i = v.r_i LEFT JOIN served s ON s.r_i = c.r_i \
           ORDER BY v.r_i"
    ))
    .bind(&columns.ids)
    .bind(&columns.clients)
    .bind(&columns.ats)
    .bind(&columns.ats_us)
    .bind(&columns.traces)
    .bind(&columns.purposes)
    .bind(&columns.events)
    .bind(ConsentEventType::Archived.as_str())
    .bind(&columns.hashes)
    .bind(&columns.generations)
    .bind(&columns.bound)
    .bind(&columns.reports)
    .fetch_all(pool)
    .await
    .map_err(unavailable)?;

    one_row_each(&rows, n, "debt lookups")?;
    Ok(calls
        .iter()
        .zip(&rows)
        .map(|(call, row)| lookup_outcome(&call.lookup, row))
        .collect())
}

/// Checks that a batch of `n` inputs got one row each, in order: the first
/// column, the input's ordinal, counts them from 1.
fn one_row_each(rows: &[PgRow], n: usize, inputs: &str) -> Result<(), StoreError> {
    if rows.len() != n {
        return Err(StoreError::Corrupt(format!(
            "{} rows for a batch of {n} {inputs}",
            rows.len()
        )));
    }
    for (ordinal, row) in (1_i64..).zip(rows) {
        if row.try_get::<i64, _>(0).map_err(unavailable)? != ordinal {
            return Err(StoreError::Corrupt(format!("{inputs}: rows out of order")));
        }
    }
    Ok(())
}

/// Lookup calls column by column, as `unnest` takes them.
struct LookupColumns<'a> {
    ids: Vec<String>,
    clients: Vec<&'a str>,
    ats: Vec<i64>,
    ats_us: Vec<i64>,
    traces: Vec<&'a str>,
    purposes: Vec<String>,
    events: Vec<String>,
    hashes: Vec<Option<&'a [u8]>>,
    generations: Vec<Option<i64>>,
    bound: Vec<Option<&'a str>>,
    reports: Vec<String>,
}

impl<'a> LookupColumns<'a> {
    fn with_capacity(n: usize) -> Self {
        Self {
            ids: Vec::with_capacity(n),
            clients: Vec::with_capacity(n),
            ats: Vec::with_capacity(n),
            ats_us: Vec::with_capacity(n),
            traces: Vec::with_capacity(n),
            purposes: Vec::with_capacity(n),
            events: Vec::with_capacity(n),
            hashes: Vec::with_capacity(n),
            generations: Vec::with_capacity(n),
            bound: Vec::with_capacity(n),
            reports: Vec::with_capacity(n),
        }
    }

    fn push(&mut self, call: &'a LookupCall) {
        let lookup = &call.lookup;
        self.ids.push(lookup.consent_id.to_string());
        self.clients.push(lookup.client_id.as_str());
        self.ats.push(lookup.at.unix_timestamp());
        self.ats_us.push(unix_micros(lookup.at));
        self.traces.push(lookup.trace_id.as_str());
        // Purpose names are single words, so a comma joins them safely.
        let granted: Vec<&str> = lookup.purposes.iter().map(|p| p.as_str()).collect();
        self.purposes.push(granted.join(","));
        // The id of the archive event, should this lookup consume its consent.
        self.events.push(new_event_id());
        self.hashes
            .push(call.token.as_ref().map(|t| t.hash.as_slice()));
        self.generations
            .push(call.token.as_ref().map(|t| t.generation));
        self.bound
            .push(call.token.as_ref().and_then(|t| t.consent_id.as_deref()));
        self.reports.push(CreditorUsage::to_json(&lookup.creditors));
    }
}

/// One lookup's outcome from its row: None if its token was refused.
fn lookup_outcome(
    lookup: &DebtLookup,
    first: &PgRow,
) -> Result<Option<DebtLookupOutcome>, StoreError> {
    if first.try_get::<bool, _>("o_revoked").map_err(unavailable)? {
        return Ok(None);
    }
    if first
        .try_get::<Option<&str>, _>("id")
        .map_err(unavailable)?
        .is_none()
    {
        return Ok(Some(DebtLookupOutcome::Refused(
            DebtLookupRefusal::NoUsableConsent,
        )));
    }
    let consent = Consent::try_from(consent_row(first)?)?;
    if first.try_get::<bool, _>("served").map_err(unavailable)? {
        return Ok(Some(DebtLookupOutcome::Served { consent }));
    }
    // Not served: judge names the refusal. A consent that judge finds
    // usable is a single-use one that another lookup consumed first (in
    // this batch, or in a statement that committed first).
    Ok(Some(DebtLookupOutcome::Refused(
        match lookup.judge(Some(consent)) {
            Ok(_) => DebtLookupRefusal::NoUsableConsent,
            Err(refusal) => refusal,
        },
    )))
}

/// A claim of an authorization code (see `Store::claim_authorization_code`):
/// the code's hash, the client redeeming it, and when (Unix seconds).
#[derive(Debug)]
pub(crate) struct ClaimCall {
    pub(crate) hash: Vec<u8>,
    pub(crate) client_id: String,
    pub(crate) now: i64,
}

/// Authorization-code claims in one statement and one commit, each
/// deciding what it would decide alone: the code and its consent as they
/// were before the statement, and whether this claim marked the code used.
/// Of the claims of one unused code by the client it was issued to, the
/// first in the batch (`first`) makes the claim; the others, like another
/// client's, claim nothing, so a client's redemption is not used up by
/// another client's attempt in the same batch. The update checks `used_at`
/// again, so of concurrent statements only one claims a code (the other
/// waits on the row and then finds it used). Codes and consents are read
/// through `LATERAL (… OFFSET 0)`, so that each claim probes a primary key.
async fn claim_codes(
    pool: &PgPool,
    calls: Vec<ClaimCall>,
) -> Result<Vec<Result<Option<CodeClaim>, StoreError>>, StoreError> {
    let n = calls.len();
    let mut hashes = Vec::with_capacity(n);
    let mut clients = Vec::with_capacity(n);
    let mut nows = Vec::with_capacity(n);
    for call in &calls {
        hashes.push(call.hash.as_slice());
        clients.push(call.client_id.as_str());
        nows.push(call.now);
    }
    let rows = sqlx::query(
        "WITH r AS ( \
           SELECT * FROM unnest($1::bytea[], $2::text[], $3::bigint[]) \
             WITH ORDINALITY AS r(r_hash, r_client, r_now, r_i) \
         ), k AS ( \
           SELECT r.r_i, r.r_client, r.r_now, a.* \
           FROM r CROSS JOIN LATERAL (SELECT ctid AS code_row, * FROM authorization_codes WHERE hash = r.r_hash OFFSET 0) AS a \
         ), first AS ( \
           SELECT DISTINCT ON (hash) hash, code_row, r_i, r_now FROM k \
           WHERE used_at IS NULL AND client_id = r_client ORDER BY hash, r_i \
         ), claimed AS ( \
           UPDATE authorization_codes SET used_at = first.r_now FROM first \
           WHERE authorization_codes.ctid = first.code_row AND authorization_codes.used_at IS NULL \
           RETURNING authorization_codes.hash \
         ) SELECT r.r_i AS o_i, c.*, k.hash, k.client_id AS code_client_id, k.redirect_uri, k.consent_id, \
             k.scopes, k.nonce, k.code_challenge, k.issued_at, k.expires_at AS code_expires_at, k.used_at, \
             EXISTS (SELECT 1 FROM first f JOIN claimed d ON d.hash = f.hash WHERE f.r_i = r.r_i) AS claimed \
           FROM r LEFT JOIN k ON k.r_i = r.r_i \
             LEFT JOIN LATERAL (SELECT * FROM consents WHERE id = k.consent_id OFFSET 0) AS c ON TRUE \
           ORDER BY r.r_i",
    )
    .bind(&hashes)
    .bind(&clients)
    .bind(&nows)
    .fetch_all(pool)
    .await
    .map_err(unavailable)?;
    one_row_each(&rows, n, "code claims")?;
    Ok(rows
        .iter()
        .map(|row| {
            // No such code, or (never, as consents are not deleted) no
            // consent behind it.
            let consent_id: Option<&str> = row.try_get("id").map_err(unavailable)?;
            if consent_id.is_none() {
                return Ok(None);
            }
            Ok(Some(CodeClaim {
                code: code_from_row(row)?,
                consent: Consent::try_from(consent_row(row)?)?,
                claimed: row.try_get("claimed").map_err(unavailable)?,
            }))
        })
        .collect())
}

/// A new consent and its `SAMTYKKE_OPPRETTET` event.
#[derive(Debug)]
pub(crate) struct NewConsent {
    pub(crate) consent: ConsentRow,
    pub(crate) event: ConsentEventRow,
}

/// Inserts the consents, each with its pending event, in one statement and
/// one commit; for each, whether it was inserted (false: its client already
/// has a consent with that `client_consent_id`, possibly one of this batch).
/// The event copies the consent's client, id, purpose and client consent id.
async fn insert_consents(pool: &PgPool, new: Vec<NewConsent>) -> Result<Vec<bool>, StoreError> {
    let mut columns = ConsentColumns::default();
    for c in &new {
        columns.push(c);
    }
    let inserted: Vec<String> = sqlx::query_scalar(
        "WITH n AS ( \
           SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bigint[], \
             $7::text[], $8::bigint[], $9::bigint[], $10::text[], $11::text[], $12::bigint[], \
             $13::text[], $14::text[], $15::bigint[], $16::bigint[]) WITH ORDINALITY AS n(id, client_id, nin, \
             purpose, kind, duration_days, client_consent_id, created_at, expires_at, status, revoked_by, \
             ended_at, event_id, event_type, event_at_us, ended_at_us, i) \
         ), c AS ( \
           INSERT INTO consents (id, client_id, nin, purpose, kind, duration_days, client_consent_id, \
             created_at, expires_at, status, revoked_by, ended_at, ended_at_us) \
           SELECT id, client_id, nin, purpose, kind, duration_days, client_consent_id, \
             created_at, expires_at, status, revoked_by, ended_at, ended_at_us FROM n ORDER BY i \
           ON CONFLICT DO NOTHING RETURNING id \
         ), e AS ( \
           INSERT INTO consent_events_pending (event_id, event_type, client_id, consent_id, purpose, \
             client_consent_id, created_at_us) \
           SELECT n.event_id, n.event_type, n.client_id, n.id, n.purpose, n.client_consent_id, n.event_at_us \
           FROM n JOIN c ON c.id = n.id ORDER BY n.i \
         ) SELECT id FROM c",
    )
    .bind(columns.id)
    .bind(columns.client_id)
    .bind(columns.nin)
    .bind(columns.purpose)
    .bind(columns.kind)
    .bind(columns.duration_days)
    .bind(columns.client_consent_id)
    .bind(columns.created_at)
    .bind(columns.expires_at)
    .bind(columns.status)
    .bind(columns.revoked_by)
    .bind(columns.ended_at)
    .bind(columns.event_id)
    .bind(columns.event_type)
    .bind(columns.event_at_us)
    .bind(columns.ended_at_us)
    .fetch_all(pool)
    .await
    .map_err(unavailable)?;
    Ok(new
        .iter()
        .map(|c| inserted.contains(&c.consent.id))
        .collect())
}

/// New consents column by column, as `unnest` takes them.
#[derive(Default)]
struct ConsentColumns<'a> {
    id: Vec<&'a str>,
    client_id: Vec<&'a str>,
    nin: Vec<&'a str>,
    purpose: Vec<&'a str>,
    kind: Vec<&'a str>,
    duration_days: Vec<i64>,
    client_consent_id: Vec<Option<&'a str>>,
    created_at: Vec<i64>,
    expires_at: Vec<i64>,
    status: Vec<&'a str>,
    revoked_by: Vec<Option<&'a str>>,
    ended_at: Vec<Option<i64>>,
    ended_at_us: Vec<Option<i64>>,
    event_id: Vec<&'a str>,
    event_type: Vec<&'a str>,
    event_at_us: Vec<i64>,
}

impl<'a> ConsentColumns<'a> {
    fn push(&mut self, new: &'a NewConsent) {
        let c = &new.consent;
        self.id.push(&c.id);
        self.client_id.push(&c.client_id);
        self.nin.push(&c.nin);
        self.purpose.push(&c.purpose);
        self.kind.push(&c.kind);
        self.duration_days.push(c.duration_days);
        self.client_consent_id.push(c.client_consent_id.as_deref());
        self.created_at.push(c.created_at);
        self.expires_at.push(c.expires_at);
        self.status.push(&c.status);
        self.revoked_by.push(c.revoked_by.as_deref());
        self.ended_at.push(c.ended_at);
        self.ended_at_us.push(c.ended_at_us);
        self.event_id.push(&new.event.event_id);
        self.event_type.push(&new.event.event_type);
        self.event_at_us.push(new.event.created_at_us);
    }
}

/// A consent decision to write (see `Store::accept_auth_flow`): the flow to
/// finish, the login session that must not have been ended by a logout,
/// the new consent with its event, and its code.
#[derive(Debug)]
pub(crate) struct FlowAccept {
    pub(crate) flow_id: String,
    pub(crate) flow_expires_at: i64,
    pub(crate) browser_hash: Vec<u8>,
    pub(crate) session_began_us: i64,
    pub(crate) consent: NewConsent,
    pub(crate) code: AuthorizationCodeRow,
}

/// Consent decisions in one statement and one commit; for each, whether
/// it was accepted. A decision is accepted if no logout has ended its
/// login session (`live`) and its flow was not finished before: the
/// finished-flow mark is inserted with `ON CONFLICT DO NOTHING`, which
/// also lets only one of concurrent statements finish a flow, and of a
/// flow decided twice in one batch only the first is attempted (`once`).
/// Only then are the consent, its pending event and its code inserted.
/// A consent id collision fails the whole statement.
async fn accept_flows(pool: &PgPool, accepts: Vec<FlowAccept>) -> Result<Vec<bool>, StoreError> {
    let mut consents = ConsentColumns::default();
    let mut flow = FlowColumns::default();
    for a in &accepts {
        consents.push(&a.consent);
        flow.push(a);
    }
    let accepted: Vec<i64> = sqlx::query_scalar(
        "WITH n AS ( \
           SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bigint[], \
             $7::text[], $8::bigint[], $9::bigint[], $10::text[], $11::text[], $12::bigint[], \
             $13::text[], $14::text[], $15::bigint[], $16::text[], $17::bigint[], $18::bytea[], $19::bigint[], \
             $20::bytea[], $21::text[], $22::text[], $23::text[], $24::text[], $25::bigint[], $26::bigint[], \
             $27::bigint[]) \
             WITH ORDINALITY AS n(id, client_id, nin, purpose, kind, duration_days, client_consent_id, \
             created_at, expires_at, status, revoked_by, ended_at, event_id, event_type, event_at_us, \
             flow_id, flow_expires_at, browser_hash, session_began_us, code_hash, redirect_uri, scopes, \
             nonce, code_challenge, code_issued_at, code_expires_at, ended_at_us, i) \
         ), once AS ( \
           SELECT DISTINCT ON (flow_id) * FROM n ORDER BY flow_id, i \
         ), live AS ( \
           SELECT * FROM once WHERE NOT EXISTS (SELECT 1 FROM ended_logins e \
             WHERE e.browser_hash = once.browser_hash AND e.ended_at_us >= once.session_began_us) \
         ), moved AS ( \
           INSERT INTO finished_flows (id, expires_at) \
           SELECT flow_id, flow_expires_at FROM live ORDER BY i \
           ON CONFLICT (id) DO NOTHING RETURNING id \
         ), won AS ( \
           SELECT live.* FROM live JOIN moved ON moved.id = live.flow_id \
         ), c AS ( \
           INSERT INTO consents (id, client_id, nin, purpose, kind, duration_days, client_consent_id, \
             created_at, expires_at, status, revoked_by, ended_at, ended_at_us) \
           SELECT id, client_id, nin, purpose, kind, duration_days, client_consent_id, \
             created_at, expires_at, status, revoked_by, ended_at, ended_at_us FROM won ORDER BY i \
         ), e AS ( \
           INSERT INTO consent_events_pending (event_id, event_type, client_id, consent_id, purpose, \
             client_consent_id, created_at_us) \
           SELECT event_id, event_type, client_id, id, purpose, client_consent_id, event_at_us \
           FROM won ORDER BY i \
         ), k AS ( \
           INSERT INTO authorization_codes (hash, client_id, redirect_uri, consent_id, scopes, nonce, \
             code_challenge, issued_at, expires_at, used_at) \
           SELECT code_hash, client_id, redirect_uri, id, scopes, nonce, code_challenge, code_issued_at, \
             code_expires_at, NULL FROM won ORDER BY i \
         ) SELECT i FROM won",
    )
    .bind(consents.id)
    .bind(consents.client_id)
    .bind(consents.nin)
    .bind(consents.purpose)
    .bind(consents.kind)
    .bind(consents.duration_days)
    .bind(consents.client_consent_id)
    .bind(consents.created_at)
    .bind(consents.expires_at)
    .bind(consents.status)
    .bind(consents.revoked_by)
    .bind(consents.ended_at)
    .bind(consents.event_id)
    .bind(consents.event_type)
    .bind(consents.event_at_us)
    .bind(flow.flow_id)
    .bind(flow.flow_expires_at)
    .bind(flow.browser_hash)
    .bind(flow.session_began_us)
    .bind(flow.code_hash)
    .bind(flow.redirect_uri)
    .bind(flow.scopes)
    .bind(flow.nonce)
    .bind(flow.code_challenge)
    .bind(flow.code_issued_at)
    .bind(flow.code_expires_at)
    .bind(consents.ended_at_us)
    .fetch_all(pool)
    .await
    .map_err(unavailable)?;
    Ok((1_i64..)
        .take(accepts.len())
        .map(|i| accepted.contains(&i))
        .collect())
}

/// The flow and code columns of consent decisions, as `unnest` takes them.
#[derive(Default)]
struct FlowColumns<'a> {
    flow_id: Vec<&'a str>,
    flow_expires_at: Vec<i64>,
    browser_hash: Vec<&'a [u8]>,
    session_began_us: Vec<i64>,
    code_hash: Vec<&'a [u8]>,
    redirect_uri: Vec<&'a str>,
    scopes: Vec<&'a str>,
    nonce: Vec<Option<&'a str>>,
    code_challenge: Vec<Option<&'a str>>,
    code_issued_at: Vec<i64>,
    code_expires_at: Vec<i64>,
}

impl<'a> FlowColumns<'a> {
    fn push(&mut self, a: &'a FlowAccept) {
        self.flow_id.push(&a.flow_id);
        self.flow_expires_at.push(a.flow_expires_at);
        self.browser_hash.push(&a.browser_hash);
        self.session_began_us.push(a.session_began_us);
        self.code_hash.push(&a.code.hash);
        self.redirect_uri.push(&a.code.redirect_uri);
        self.scopes.push(&a.code.scopes);
        self.nonce.push(a.code.nonce.as_deref());
        self.code_challenge.push(a.code.code_challenge.as_deref());
        self.code_issued_at.push(a.code.issued_at);
        self.code_expires_at.push(a.code.expires_at);
    }
}

/// The condition, order and limit of a feed page: `client`'s events from
/// sequence number `from` on, `limit` at most, in sequence order, written
/// so that only the index `consent_events_by_client` can serve it. The plain
/// `client_id = c AND sequence_nr >= f ORDER BY sequence_nr` lets a generic
/// plan walk the primary key instead, filtering by client: cheap-looking
/// when one client has nearly every event (a sandbox), but a read of every
/// event for a client that has few or none. Here the range starts at the
/// row `(client, from)` and stops after `client` (`>=` and `<=` together
/// are `=`), and the order names the index's columns; the primary key gives
/// neither.
macro_rules! page_range {
    ($client:literal, $from:literal, $limit:literal) => {
        concat!(
            "(client_id, sequence_nr) >= (",
            $client,
            ", ",
            $from,
            ") AND client_id <= ",
            $client,
            " ORDER BY client_id, sequence_nr LIMIT ",
            $limit
        )
    };
}
pub(crate) use page_range;

/// A feed page to read: the reader's events from sequence number `from`,
/// `limit` at most.
#[derive(Debug)]
pub(crate) struct PageRead {
    pub(crate) client_id: String,
    pub(crate) from: i64,
    pub(crate) limit: i64,
}

/// Feed pages in one statement. Each page is one row and one value: an
/// array of its events' `packed` columns in sequence order (see
/// `unpack_event`), so that PostgreSQL sends neither a row per event nor a
/// value per field. Beside it, read once in the same snapshot, whether any
/// committed event still waits for its number (see
/// `PostgresStore::publish_events`). If one does, a page may lack it, and
/// every page of the batch is None: the reader publishes and reads again.
/// Measured with 100-event pages on the 2-core benchmark machine, one page
/// alone costs PostgreSQL 130–145 µs of CPU and a page in a batch of 8 about
/// 50 µs (BENCHMARKS.md, stop 16).
async fn read_pages(
    pool: &PgPool,
    reads: Vec<PageRead>,
) -> Result<Vec<Option<Vec<String>>>, StoreError> {
    let n = reads.len();
    let mut clients = Vec::with_capacity(n);
    let mut froms = Vec::with_capacity(n);
    let mut limits = Vec::with_capacity(n);
    for read in &reads {
        clients.push(read.client_id.as_str());
        froms.push(read.from);
        limits.push(read.limit);
    }
    let rows = sqlx::query(concat!(
        "SELECT r.r_i, ARRAY(SELECT packed FROM consent_events WHERE ",
        page_range!("r.r_client", "r.r_from", "r.r_limit"),
        ") AS page, \
           EXISTS (SELECT 1 FROM consent_events_pending) AS pending \
         FROM unnest($1::text[], $2::bigint[], $3::bigint[]) WITH ORDINALITY \
           AS r(r_client, r_from, r_limit, r_i) \
         ORDER BY r.r_i"
    ))
    .bind(&clients)
    .bind(&froms)
    .bind(&limits)
    .fetch_all(pool)
    .await
    .map_err(unavailable)?;
    one_row_each(&rows, n, "feed pages")?;
    rows.iter()
        .map(|row| {
            let pending: bool = row.try_get(2).map_err(unavailable)?;
            Ok(if pending {
                None
            } else {
                Some(row.try_get(1).map_err(unavailable)?)
            })
        })
        .collect()
}
