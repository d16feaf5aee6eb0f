//! PostgreSQL implementation of [`Store`]: the production engine. Several
//! server processes may share one database; every cross-process race is
//! settled inside PostgreSQL (constraints, `ON CONFLICT`, advisory locks).

mod batch;
mod batched;

use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use samtykke_core::consent::{
    Consent, ConsentEvent, ConsentEventType, ConsentId, RevokedBy, UsageRecord,
};
use samtykke_core::creditor::{
    Creditor, CreditorRecord, FinancialInstitutionId, StoredCreditorDebt, SyncId, SyncOutcome,
    SyncReport,
};
use samtykke_core::debt::{DebtEntry, Delivery, ProviderId};
use samtykke_core::debt_lookup::{DebtLookup, DebtLookupOutcome};
use samtykke_core::domain::{
    Client, ClientId, ClientSecret, Nin, OrgNumber, RedirectUri, SecretHash,
};
use samtykke_core::flow::{AuthFlow, LoginSession};
use samtykke_core::grant::authorization_code::AuthorizationCodeRecord;
use samtykke_core::keys::SigningKey;
use samtykke_core::store::{
    day_text, group_stored_debt, new_event_row, sandbox_from_row, signing_key_from_row,
    unix_micros, AccessTokenRow, AuthorizationCodeRow, ClientRow, CodeClaim, ConsentEventColumns,
    ConsentEventRow, ConsentInsert, ConsentRow, CreditorRow, LoanRow, LoginSessionEnd,
    PersonConsentUsage, PersonConsents, PoolStats, RevokeOutcome, SandboxCredentials, Store,
    StoreError, UsageRow,
};
use samtykke_core::token::{AccessTokenRecord, TokenHash};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::{PgConnection, Postgres, Row, Transaction};
use time::OffsetDateTime;

use crate::batched::{
    page_range, Batches, ClaimCall, FlowAccept, LookupCall, NewConsent, PageRead, SealedTokenCheck,
};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// The PostgreSQL store.
#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: PgPool,
    /// The hot statements' cross-request batchers (see [`batch`]).
    batches: Arc<Batches>,
    pending_vacuum: Arc<PendingVacuum>,
}

/// Advisory-lock key that serialises creation of the first signing key.
const FIRST_KEY_LOCK: i64 = 0x5341_4d54_4b01;
/// Advisory-lock key that orders event inserts (see [`insert_event`]).
const EVENT_SEQUENCE_LOCK: i64 = 0x5341_4d54_4b02;
/// Advisory-lock key that serialises debt imports.
const DEBT_IMPORT_LOCK: i64 = 0x5341_4d54_4b03;

fn unavailable(e: sqlx::Error) -> StoreError {
    match &e {
        sqlx::Error::Database(db) if db.is_unique_violation() => {
            StoreError::Conflict(db.message().to_owned())
        }
        _ => StoreError::Unavailable(e.to_string()),
    }
}

/// One connection before the pool is built, so that a server that refuses
/// connections, a wrong password or a missing database is reported at once
/// and by name (the pool retries a refused connection until its 5 s acquire
/// timeout and then says only "pool timed out").
async fn first_connection(options: &PgConnectOptions) -> Result<(), StoreError> {
    use sqlx::{ConnectOptions, Connection};
    let at = format!("{}:{}", options.get_host(), options.get_port());
    match tokio::time::timeout(Duration::from_secs(5), options.connect()).await {
        Ok(Ok(connection)) => {
            let _ = connection.close().await;
            Ok(())
        }
        Ok(Err(sqlx::Error::Io(e))) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
            Err(StoreError::Unavailable(format!(
                "connection refused by {at}: is PostgreSQL running and listening there?"
            )))
        }
        Ok(Err(e)) => Err(StoreError::Unavailable(format!(
            "could not connect to {at}: {e}"
        ))),
        Err(_) => Err(StoreError::Unavailable(format!(
            "no answer from {at} within 5 s"
        ))),
    }
}

impl PostgresStore {
    /// Connects to `url` (`postgres://…`) and applies pending migrations (the
    /// migrator holds an advisory lock, so processes starting together are safe).
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let options = PgConnectOptions::from_str(url)
            .map_err(|_| StoreError::Unavailable("bad PostgreSQL URL".into()))?
            // Every statement on the hot paths is written so that its one
            // generic plan probes the indexes whatever the parameters (see
            // `batched`). Left to choose, PostgreSQL plans a statement anew
            // for every execution while its custom plans look cheaper, which
            // for a batch of one lookup costs three times the execution
            // (BENCHMARKS.md, stop 14). The janitor's range deletes, whose
            // best plan does depend on the cut-off, opt back in to custom
            // plans ([`begin_custom_planned`]).
            .options([("plan_cache_mode", "force_generic_plan")]);
        first_connection(&options).await?;
        let max = std::env::var("SAMTYKKE_PG_POOL_SIZE")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(16);
        let pool = PgPoolOptions::new()
            .max_connections(max)
            .acquire_timeout(Duration::from_secs(5))
            // No ping before every acquire (one round trip more per query);
            // a connection that broke fails its query, which answers 503
            // once, and the pool then drops it.
            .test_before_acquire(false)
            .connect_with(options)
            .await
            .map_err(unavailable)?;
        MIGRATOR
            .run(&pool)
            .await
            .map_err(|e| StoreError::Unavailable(format!("migration failed: {e}")))?;
        let batches = Arc::new(Batches::start(&pool));
        Ok(Self {
            pool,
            batches,
            pending_vacuum: Arc::default(),
        })
    }

    /// [`publish_events`] if any event is pending.
    async fn publish_pending_events(&self) -> Result<(), StoreError> {
        let pending: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM consent_events_pending)")
                .fetch_one(&self.pool)
                .await
                .map_err(unavailable)?;
        if pending {
            self.publish_events().await?;
        }
        Ok(())
    }

    /// [`publish_events`], counting the moved events for [`PendingVacuum`].
    async fn publish_events(&self) -> Result<(), StoreError> {
        let moved = publish_events(&self.pool).await?;
        self.pending_vacuum.count(&self.pool, moved);
        Ok(())
    }
}

/// Appends an event to the pending events; it gets its feed number when a
/// feed read publishes it (see [`publish_events`]). No lock: event-writing
/// transactions commit in parallel.
async fn insert_event(conn: &mut PgConnection, e: &ConsentEventRow) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO consent_events_pending (event_id, event_type, client_id, consent_id, purpose, client_consent_id, created_at_us) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(&e.event_id)
    .bind(&e.event_type)
    .bind(&e.client_id)
    .bind(&e.consent_id)
    .bind(&e.purpose)
    .bind(&e.client_consent_id)
    .bind(e.created_at_us)
    .execute(conn)
    .await
    .map_err(unavailable)?;
    Ok(())
}

/// Feed order = commit order. A sequence taken by each writer would let a
/// reader see number 11 committed before 10 and skip 10 for good. Instead,
/// numbers are taken only here, by one publisher at a time (the advisory
/// lock is held until this transaction commits): every committed pending
/// event moves into `consent_events` in one transaction, so any later
/// publication gets higher numbers, and a reader that sees number n sees
/// every number below it. Called before a feed read that finds events
/// pending, so a read sees every event committed before it. Returns how
/// many events it moved.
async fn publish_events(pool: &PgPool) -> Result<u64, StoreError> {
    let mut tx = pool.begin().await.map_err(unavailable)?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(EVENT_SEQUENCE_LOCK)
        .execute(&mut *tx)
        .await
        .map_err(unavailable)?;
    let moved = sqlx::query(
        "WITH moved AS (DELETE FROM consent_events_pending RETURNING *) \
         INSERT INTO consent_events (event_id, event_type, client_id, consent_id, purpose, client_consent_id, created_at_us) \
         SELECT event_id, event_type, client_id, consent_id, purpose, client_consent_id, created_at_us FROM moved ORDER BY id",
    )
    .execute(&mut *tx)
    .await
    .map_err(unavailable)?
    .rows_affected();
    tx.commit().await.map_err(unavailable)?;
    Ok(moved)
}

/// Events moved out of `consent_events_pending` (by this process) after
/// which the table is vacuumed.
const PENDING_VACUUM_AFTER: u64 = 10_000;

/// Keeps `consent_events_pending` small on disk. Every publication leaves
/// the moved rows dead in it, and until a vacuum removes them, each check
/// for pending events reads past all of them (100,000 dead rows cost about
/// 0.4 ms per check; autovacuum may take a minute to come). So once this
/// process has moved [`PENDING_VACUUM_AFTER`] events, it vacuums the table
/// in the background (`SKIP_LOCKED`: if another process is at it already,
/// that one suffices).
#[derive(Debug, Default)]
struct PendingVacuum {
    moved: AtomicU64,
}

impl PendingVacuum {
    fn count(&self, pool: &PgPool, moved: u64) {
        if moved == 0 {
            return;
        }
        let total = self.moved.fetch_add(moved, Ordering::Relaxed) + moved;
        if total < PENDING_VACUUM_AFTER || self.moved.swap(0, Ordering::Relaxed) == 0 {
            return;
        }
        let pool = pool.clone();
        tokio::spawn(async move {
            if let Err(e) = sqlx::raw_sql("VACUUM (SKIP_LOCKED) consent_events_pending")
                .execute(&pool)
                .await
            {
                tracing::warn!(error = %e, "vacuuming consent_events_pending failed");
            }
        });
    }
}

fn consent_row(row: &PgRow) -> Result<ConsentRow, StoreError> {
    Ok(ConsentRow {
        id: row.try_get("id").map_err(unavailable)?,
        client_id: row.try_get("client_id").map_err(unavailable)?,
        nin: row.try_get("nin").map_err(unavailable)?,
        purpose: row.try_get("purpose").map_err(unavailable)?,
        kind: row.try_get("kind").map_err(unavailable)?,
        duration_days: row.try_get("duration_days").map_err(unavailable)?,
        client_consent_id: row.try_get("client_consent_id").map_err(unavailable)?,
        created_at: row.try_get("created_at").map_err(unavailable)?,
        expires_at: row.try_get("expires_at").map_err(unavailable)?,
        status: row.try_get("status").map_err(unavailable)?,
        revoked_by: row.try_get("revoked_by").map_err(unavailable)?,
        ended_at: row.try_get("ended_at").map_err(unavailable)?,
        ended_at_us: row.try_get("ended_at_us").map_err(unavailable)?,
    })
}

/// Whose consent a revocation must be: the client's (`DELETE
/// /v1/debt/{id}`) or the person's (the portal).
#[derive(Clone, Copy)]
enum Owner<'a> {
    Client(&'a str),
    Person(&'a str),
}

/// Revokes the active consent `id` of `owner` (its event, its tokens) in
/// one transaction, or tells whether it is the owner's at all.
async fn revoke(
    pool: &PgPool,
    id: &ConsentId,
    owner: Owner<'_>,
    by: RevokedBy,
    now: OffsetDateTime,
) -> Result<RevokeOutcome, StoreError> {
    // One of two fixed column names, never input.
    let (column, owner) = match owner {
        Owner::Client(client_id) => ("client_id", client_id),
        Owner::Person(nin) => ("nin", nin),
    };
    let update = format!(
        "UPDATE consents SET status = 'revoked', revoked_by = $1, ended_at = $2, ended_at_us = $6, \
         tokens_revoked = TRUE \
         WHERE id = $3 AND {column} = $4 AND status = 'active' AND expires_at > $5 RETURNING *"
    );
    let exists = format!("SELECT 1 FROM consents WHERE id = $1 AND {column} = $2");
    let mut tx = pool.begin().await.map_err(unavailable)?;
    let revoked = sqlx::query(&update)
        .bind(by.as_str())
        .bind(now.unix_timestamp())
        .bind(id.to_string())
        .bind(owner)
        .bind(now.unix_timestamp())
        .bind(unix_micros(now))
        .fetch_optional(&mut *tx)
        .await
        .map_err(unavailable)?;
    let outcome = match revoked {
        Some(row) => {
            let row = consent_row(&row)?;
            insert_event(
                &mut tx,
                &new_event_row(&row, ConsentEventType::Archived, now),
            )
            .await?;
            sqlx::query("UPDATE access_tokens SET revoked = TRUE WHERE consent_id = $1")
                .bind(&row.id)
                .execute(&mut *tx)
                .await
                .map_err(unavailable)?;
            RevokeOutcome::Revoked
        }
        None => {
            let found = sqlx::query(&exists)
                .bind(id.to_string())
                .bind(owner)
                .fetch_optional(&mut *tx)
                .await
                .map_err(unavailable)?;
            if found.is_some() {
                RevokeOutcome::AlreadyEnded
            } else {
                RevokeOutcome::NotFound
            }
        }
    };
    tx.commit().await.map_err(unavailable)?;
    Ok(outcome)
}

/// A usage-log row.
fn pg_usage_row(r: &PgRow) -> Result<UsageRow, StoreError> {
    Ok(UsageRow {
        consent_id: r.try_get("consent_id").map_err(unavailable)?,
        client_id: r.try_get("client_id").map_err(unavailable)?,
        used_at_us: r.try_get("used_at_us").map_err(unavailable)?,
        purpose: r.try_get("purpose").map_err(unavailable)?,
        trace_id: r.try_get("trace_id").map_err(unavailable)?,
        creditor_report: r.try_get("creditor_report").map_err(unavailable)?,
    })
}

/// A row count as SQL gives it (never negative).
fn row_count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

/// The event of `client_id` that its `packed` column holds (migration
/// `20261125000010_packed_feed_entries.sql`): one value in place of seven.
fn packed_event(packed: &str, client_id: &ClientId) -> Result<ConsentEvent, StoreError> {
    unpack_event(packed)?.into_event(client_id.clone())
}

/// The columns of an event as its `packed` column holds them, separated by
/// single spaces: `sequence_nr event_id event_type consent_id purpose
/// created_at_us`, then ` client_consent_id` if it is not NULL. Only that
/// last field may itself hold spaces (or be empty).
fn unpack_event(packed: &str) -> Result<ConsentEventColumns<'_>, StoreError> {
    let corrupt = || StoreError::Corrupt("packed feed event".into());
    let mut fields = packed.splitn(7, ' ');
    let mut next = || fields.next().ok_or_else(corrupt);
    let sequence_nr = next()?.parse().map_err(|_| corrupt())?;
    let event_id = next()?;
    let event_type = next()?;
    let consent_id = next()?;
    let purpose = next()?;
    let created_at_us = next()?.parse().map_err(|_| corrupt())?;
    Ok(ConsentEventColumns {
        sequence_nr,
        event_id,
        event_type,
        consent_id,
        purpose,
        client_consent_id: fields.next(),
        created_at_us,
    })
}

fn creditor_from_row(row: &PgRow) -> Result<CreditorRecord, StoreError> {
    let get_err = unavailable;
    CreditorRecord::try_from(CreditorRow {
        id: row.try_get("id").map_err(get_err)?,
        name: row.try_get("name").map_err(get_err)?,
        endpoint: row.try_get("endpoint").map_err(get_err)?,
        timeout_ms: row.try_get("timeout_ms").map_err(get_err)?,
        max_concurrent: row.try_get("max_concurrent").map_err(get_err)?,
        certificate_org: row.try_get("certificate_org").map_err(get_err)?,
        always_ask: row.try_get("always_ask").map_err(get_err)?,
        enabled: row.try_get("enabled").map_err(get_err)?,
        page_size: row.try_get("page_size").map_err(get_err)?,
        created_at_us: row.try_get("created_at_us").map_err(get_err)?,
        last_attempt_at_us: row.try_get("last_attempt_at_us").map_err(get_err)?,
        last_success_at_us: row.try_get("last_success_at_us").map_err(get_err)?,
        last_outcome: row.try_get("last_outcome").map_err(get_err)?,
        last_size: row.try_get("last_size").map_err(get_err)?,
        last_error: row.try_get("last_error").map_err(get_err)?,
        consecutive_failures: row.try_get("consecutive_failures").map_err(get_err)?,
        claimed_day: row.try_get("claimed_day").map_err(get_err)?,
        stored_at_us: row.try_get("stored_at_us").map_err(get_err)?,
    })
}

async fn insert_loan(conn: &mut PgConnection, row: &LoanRow) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO debt_loans (nin, creditor_org, creditor_name, provider_id, account_id, loan_json) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&row.nin)
    .bind(&row.creditor_org)
    .bind(&row.creditor_name)
    .bind(&row.provider_id)
    .bind(&row.account_id)
    .bind(&row.loan_json)
    .execute(conn)
    .await
    .map_err(unavailable)?;
    Ok(())
}

/// Records when `fi`'s stored data was delivered.
async fn set_stored_at(conn: &mut PgConnection, fi: &str, at_us: i64) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO debt_deliveries (creditor_org, stored_at_us) VALUES ($1, $2) \
         ON CONFLICT (creditor_org) DO UPDATE SET stored_at_us = EXCLUDED.stored_at_us",
    )
    .bind(fi)
    .bind(at_us)
    .execute(conn)
    .await
    .map_err(unavailable)?;
    Ok(())
}

/// The person's loans, by creditor.
async fn loans_of<'e>(
    executor: impl sqlx::PgExecutor<'e>,
    nin: &Nin,
) -> Result<Vec<DebtEntry>, StoreError> {
    sqlx::query("SELECT * FROM debt_loans WHERE nin = $1 ORDER BY creditor_name, creditor_org, id")
        .bind(nin.as_str())
        .fetch_all(executor)
        .await
        .map_err(unavailable)?
        .iter()
        .map(|r| debt_entry(r, nin))
        .collect()
}

/// One loan of `nin` from a row carrying `debt_loans`' loan columns.
fn debt_entry(row: &PgRow, nin: &Nin) -> Result<DebtEntry, StoreError> {
    DebtEntry::try_from(LoanRow {
        nin: nin.as_str().to_owned(),
        creditor_org: row.try_get("creditor_org").map_err(unavailable)?,
        creditor_name: row.try_get("creditor_name").map_err(unavailable)?,
        provider_id: row.try_get("provider_id").map_err(unavailable)?,
        account_id: row.try_get("account_id").map_err(unavailable)?,
        loan_json: row.try_get("loan_json").map_err(unavailable)?,
    })
}

/// A transaction whose statements are planned for their own parameter
/// values, for the janitor's range deletes: the sessions plan every other
/// statement once, generically (see [`PostgresStore::connect`]), and the
/// generic plan of `expires_at < $1` assumes that a third of the table
/// matches and is costed for that (on a million rows in random order, a
/// bitmap scan), where the cut-off usually matches a few rows of an index.
async fn begin_custom_planned(pool: &PgPool) -> Result<Transaction<'_, Postgres>, StoreError> {
    let mut tx = pool.begin().await.map_err(unavailable)?;
    sqlx::query("SET LOCAL plan_cache_mode = force_custom_plan")
        .execute(&mut *tx)
        .await
        .map_err(unavailable)?;
    Ok(tx)
}

fn client_from_row(row: &PgRow) -> Result<Client, StoreError> {
    let raw = ClientRow {
        id: row.try_get("id").map_err(unavailable)?,
        secret_hash: row.try_get("secret_hash").map_err(unavailable)?,
        name: row.try_get("name").map_err(unavailable)?,
        org_number: row.try_get("org_number").map_err(unavailable)?,
        redirect_uris: row.try_get("redirect_uris").map_err(unavailable)?,
        purposes: row.try_get("purposes").map_err(unavailable)?,
        may_create_agreements: row.try_get("may_create_agreements").map_err(unavailable)?,
        may_read_events: row.try_get("may_read_events").map_err(unavailable)?,
        require_pkce: row.try_get("require_pkce").map_err(unavailable)?,
        disabled: row.try_get("disabled").map_err(unavailable)?,
        created_at: row.try_get("created_at").map_err(unavailable)?,
        token_generation: row.try_get("token_generation").map_err(unavailable)?,
        jwks: row.try_get("jwks").map_err(unavailable)?,
        jwks_uri: row.try_get("jwks_uri").map_err(unavailable)?,
        request_uris: row.try_get("request_uris").map_err(unavailable)?,
        allow_unsigned_request_objects: row
            .try_get("allow_unsigned_request_objects")
            .map_err(unavailable)?,
    };
    Client::try_from(raw)
}

fn token_from_row(row: &PgRow) -> Result<AccessTokenRecord, StoreError> {
    let raw = AccessTokenRow {
        hash: row.try_get("hash").map_err(unavailable)?,
        client_id: row.try_get("client_id").map_err(unavailable)?,
        audience: row.try_get("audience").map_err(unavailable)?,
        scopes: row.try_get("scopes").map_err(unavailable)?,
        issued_at: row.try_get("issued_at").map_err(unavailable)?,
        expires_at: row.try_get("expires_at").map_err(unavailable)?,
        revoked: row.try_get("revoked").map_err(unavailable)?,
        consent_id: row.try_get("consent_id").map_err(unavailable)?,
    };
    AccessTokenRecord::try_from(raw)
}

const INSERT_CLIENT: &str =
    "INSERT INTO clients (id, secret_hash, name, org_number, redirect_uris, \
     purposes, may_create_agreements, may_read_events, require_pkce, disabled, created_at, token_generation, \
     jwks, jwks_uri, request_uris, allow_unsigned_request_objects) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)";

fn insert_client_query(
    row: &ClientRow,
) -> sqlx::query::Query<'_, sqlx::Postgres, sqlx::postgres::PgArguments> {
    sqlx::query(INSERT_CLIENT)
        .bind(&row.id)
        .bind(&row.secret_hash)
        .bind(&row.name)
        .bind(&row.org_number)
        .bind(&row.redirect_uris)
        .bind(&row.purposes)
        .bind(row.may_create_agreements)
        .bind(row.may_read_events)
        .bind(row.require_pkce)
        .bind(row.disabled)
        .bind(row.created_at)
        .bind(row.token_generation)
        .bind(&row.jwks)
        .bind(&row.jwks_uri)
        .bind(&row.request_uris)
        .bind(row.allow_unsigned_request_objects)
}

/// A code from its row joined with its consent's (see
/// `find_authorization_code`: the columns both have are renamed).
fn code_from_row(row: &PgRow) -> Result<AuthorizationCodeRecord, StoreError> {
    AuthorizationCodeRecord::try_from(AuthorizationCodeRow {
        hash: row.try_get("hash").map_err(unavailable)?,
        client_id: row.try_get("code_client_id").map_err(unavailable)?,
        redirect_uri: row.try_get("redirect_uri").map_err(unavailable)?,
        consent_id: row.try_get("consent_id").map_err(unavailable)?,
        scopes: row.try_get("scopes").map_err(unavailable)?,
        nonce: row.try_get("nonce").map_err(unavailable)?,
        code_challenge: row.try_get("code_challenge").map_err(unavailable)?,
        issued_at: row.try_get("issued_at").map_err(unavailable)?,
        expires_at: row.try_get("code_expires_at").map_err(unavailable)?,
        used_at: row.try_get("used_at").map_err(unavailable)?,
    })
}

async fn insert_token(
    conn: &mut PgConnection,
    token: &AccessTokenRecord,
) -> Result<(), StoreError> {
    let row = AccessTokenRow::from(token);
    sqlx::query(
        "INSERT INTO access_tokens (hash, client_id, audience, scopes, issued_at, expires_at, revoked, consent_id) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(&row.hash)
    .bind(&row.client_id)
    .bind(&row.audience)
    .bind(&row.scopes)
    .bind(row.issued_at)
    .bind(row.expires_at)
    .bind(row.revoked)
    .bind(&row.consent_id)
    .execute(conn)
    .await
    .map_err(unavailable)?;
    Ok(())
}

fn found(rows_affected: u64) -> Result<(), StoreError> {
    if rows_affected == 0 {
        Err(StoreError::NotFound)
    } else {
        Ok(())
    }
}

#[async_trait]
impl Store for PostgresStore {
    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    fn pool_stats(&self) -> Option<PoolStats> {
        Some(PoolStats {
            size: self.pool.size(),
            idle: u32::try_from(self.pool.num_idle()).unwrap_or(u32::MAX),
            max: self.pool.options().get_max_connections(),
        })
    }

    async fn insert_client(&self, client: &Client) -> Result<(), StoreError> {
        let row = ClientRow::from(client);
        insert_client_query(&row)
            .execute(&self.pool)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn find_client(&self, id: &ClientId) -> Result<Option<Client>, StoreError> {
        sqlx::query("SELECT * FROM clients WHERE id = $1")
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(unavailable)?
            .as_ref()
            .map(client_from_row)
            .transpose()
    }

    async fn list_clients(&self) -> Result<Vec<Client>, StoreError> {
        sqlx::query("SELECT * FROM clients ORDER BY created_at, id")
            .fetch_all(&self.pool)
            .await
            .map_err(unavailable)?
            .iter()
            .map(client_from_row)
            .collect()
    }

    async fn replace_client_secret(
        &self,
        id: &ClientId,
        hash: &SecretHash,
    ) -> Result<(), StoreError> {
        let done = sqlx::query("UPDATE clients SET secret_hash = $1 WHERE id = $2")
            .bind(hash.as_bytes())
            .bind(id.as_str())
            .execute(&self.pool)
            .await
            .map_err(unavailable)?;
        found(done.rows_affected())
    }

    async fn set_client_disabled(&self, id: &ClientId, disabled: bool) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(unavailable)?;
        // Disabling also ends every sealed token issued until now.
        let done = sqlx::query(
            "UPDATE clients SET disabled = $1, \
             token_generation = token_generation + CASE WHEN $1 THEN 1 ELSE 0 END WHERE id = $2",
        )
        .bind(disabled)
        .bind(id.as_str())
        .execute(&mut *tx)
        .await
        .map_err(unavailable)?;
        found(done.rows_affected())?;
        if disabled {
            sqlx::query("UPDATE access_tokens SET revoked = TRUE WHERE client_id = $1")
                .bind(id.as_str())
                .execute(&mut *tx)
                .await
                .map_err(unavailable)?;
        }
        tx.commit().await.map_err(unavailable)
    }

    async fn delete_client(&self, id: &ClientId) -> Result<(), StoreError> {
        let done = sqlx::query("DELETE FROM clients WHERE id = $1")
            .bind(id.as_str())
            .execute(&self.pool)
            .await
            .map_err(unavailable)?;
        found(done.rows_affected())
    }

    async fn set_client_redirect_uris(
        &self,
        id: &ClientId,
        redirect_uris: &[RedirectUri],
    ) -> Result<(), StoreError> {
        let done = sqlx::query("UPDATE clients SET redirect_uris = $1 WHERE id = $2")
            .bind(samtykke_core::store::join_redirect_uris(redirect_uris))
            .bind(id.as_str())
            .execute(&self.pool)
            .await
            .map_err(unavailable)?;
        found(done.rows_affected())
    }

    async fn insert_access_token(&self, token: &AccessTokenRecord) -> Result<(), StoreError> {
        let mut conn = self.pool.acquire().await.map_err(unavailable)?;
        insert_token(&mut conn, token).await
    }

    async fn find_access_token(
        &self,
        hash: &TokenHash,
    ) -> Result<Option<AccessTokenRecord>, StoreError> {
        sqlx::query("SELECT * FROM access_tokens WHERE hash = $1")
            .bind(hash.as_bytes())
            .fetch_optional(&self.pool)
            .await
            .map_err(unavailable)?
            .as_ref()
            .map(token_from_row)
            .transpose()
    }

    async fn revoke_access_token(&self, token: &AccessTokenRecord) -> Result<(), StoreError> {
        let row = AccessTokenRow::from(token);
        sqlx::query(
            "INSERT INTO access_tokens (hash, client_id, audience, scopes, issued_at, expires_at, revoked, consent_id) \
             VALUES ($1, $2, $3, $4, $5, $6, TRUE, $7) ON CONFLICT (hash) DO UPDATE SET revoked = TRUE",
        )
        .bind(&row.hash)
        .bind(&row.client_id)
        .bind(&row.audience)
        .bind(&row.scopes)
        .bind(row.issued_at)
        .bind(row.expires_at)
        .bind(&row.consent_id)
        .execute(&self.pool)
        .await
        .map_err(unavailable)?;
        Ok(())
    }

    async fn sealed_token_revoked(
        &self,
        token: &AccessTokenRecord,
        generation: i64,
    ) -> Result<bool, StoreError> {
        self.batches
            .sealed_token_revoked
            .run(sealed_token_check(token, generation))
            .await
    }

    async fn insert_consent(&self, consent: &Consent) -> Result<ConsentInsert, StoreError> {
        let row = ConsentRow::from(consent);
        let event = new_event_row(&row, ConsentEventType::Created, consent.created_at);
        // The consent and its pending event in one batched statement (see
        // `batched::insert_consents`); the event exists only if the
        // consent was inserted.
        let (client_id, client_consent_id) = (row.client_id.clone(), row.client_consent_id.clone());
        let inserted = self
            .batches
            .consent_insert
            .run(NewConsent {
                consent: row,
                event,
            })
            .await?;
        if inserted {
            return Ok(ConsentInsert::Created);
        }
        let existing =
            sqlx::query("SELECT * FROM consents WHERE client_id = $1 AND client_consent_id = $2")
                .bind(&client_id)
                .bind(&client_consent_id)
                .fetch_optional(&self.pool)
                .await
                .map_err(unavailable)?
                .ok_or_else(|| StoreError::Conflict("consent id collision".into()))?;
        Ok(ConsentInsert::Existing(Consent::try_from(consent_row(
            &existing,
        )?)?))
    }

    async fn find_consent(&self, id: &ConsentId) -> Result<Option<Consent>, StoreError> {
        sqlx::query("SELECT * FROM consents WHERE id = $1")
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await
            .map_err(unavailable)?
            .map(|r| Consent::try_from(consent_row(&r)?))
            .transpose()
    }

    async fn look_up_debt(&self, lookup: &DebtLookup) -> Result<DebtLookupOutcome, StoreError> {
        // A batched statement (see `batched::look_up_debts`): one round
        // trip and one commit shared by the lookups waiting at the same
        // time, single-use consumption included.
        let call = LookupCall {
            lookup: lookup.clone(),
            token: None,
        };
        let outcome = self.batches.debt_lookup.run(call).await??;
        outcome.ok_or_else(|| StoreError::Corrupt("a lookup without a token was refused".into()))
    }

    async fn look_up_debt_with_sealed_token(
        &self,
        token: &AccessTokenRecord,
        generation: i64,
        lookup: &DebtLookup,
    ) -> Result<Option<DebtLookupOutcome>, StoreError> {
        // The token's check rides in the lookup's batched statement: one
        // round trip for both.
        let call = LookupCall {
            lookup: lookup.clone(),
            token: Some(sealed_token_check(token, generation)),
        };
        self.batches.debt_lookup.run(call).await?
    }
    async fn revoke_consent(
        &self,
        id: &ConsentId,
        client_id: &ClientId,
        by: RevokedBy,
        now: OffsetDateTime,
    ) -> Result<RevokeOutcome, StoreError> {
        revoke(&self.pool, id, Owner::Client(client_id.as_str()), by, now).await
    }

    async fn consent_usage(&self, id: &ConsentId) -> Result<Vec<UsageRecord>, StoreError> {
        sqlx::query("SELECT * FROM consent_usage WHERE consent_id = $1 ORDER BY id")
            .bind(id.to_string())
            .fetch_all(&self.pool)
            .await
            .map_err(unavailable)?
            .iter()
            .map(|r| UsageRecord::try_from(pg_usage_row(r)?))
            .collect()
    }

    async fn consents_of_person(
        &self,
        nin: &Nin,
        offset: u64,
        limit: u32,
    ) -> Result<PersonConsents, StoreError> {
        let offset = i64::try_from(offset).unwrap_or(i64::MAX);
        // One statement: the page and the person's total in one snapshot.
        let rows = sqlx::query(
            "SELECT c.*, \
                    (SELECT COUNT(*) FROM consent_usage u WHERE u.consent_id = c.id) AS uses, \
                    COUNT(*) OVER () AS total \
             FROM consents c WHERE c.nin = $1 \
             ORDER BY c.created_at DESC, c.id DESC LIMIT $2 OFFSET $3",
        )
        .bind(nin.as_str())
        .bind(i64::from(limit))
        .bind(offset)
        .fetch_all(&self.pool)
        .await
        .map_err(unavailable)?;
        // A page past the end has no row to carry the total.
        let total: i64 = match rows.first() {
            Some(r) => r.try_get("total").map_err(unavailable)?,
            None => sqlx::query_scalar("SELECT COUNT(*) FROM consents WHERE nin = $1")
                .bind(nin.as_str())
                .fetch_one(&self.pool)
                .await
                .map_err(unavailable)?,
        };
        Ok(PersonConsents {
            consents: rows
                .iter()
                .map(|r| {
                    let uses: i64 = r.try_get("uses").map_err(unavailable)?;
                    Ok((Consent::try_from(consent_row(r)?)?, row_count(uses)))
                })
                .collect::<Result<_, StoreError>>()?,
            total: row_count(total),
        })
    }

    async fn person_consent_usage(
        &self,
        nin: &Nin,
        id: &ConsentId,
        offset: u64,
        limit: u32,
    ) -> Result<Option<PersonConsentUsage>, StoreError> {
        let offset = i64::try_from(offset).unwrap_or(i64::MAX);
        let mut tx = self.pool.begin().await.map_err(unavailable)?;
        let consent = sqlx::query("SELECT * FROM consents WHERE id = $1 AND nin = $2")
            .bind(id.to_string())
            .bind(nin.as_str())
            .fetch_optional(&mut *tx)
            .await
            .map_err(unavailable)?;
        let Some(consent) = consent else {
            return Ok(None);
        };
        let consent = Consent::try_from(consent_row(&consent)?)?;
        let uses = sqlx::query(
            "SELECT * FROM consent_usage WHERE consent_id = $1 ORDER BY id DESC LIMIT $2 OFFSET $3",
        )
        .bind(id.to_string())
        .bind(i64::from(limit))
        .bind(offset)
        .fetch_all(&mut *tx)
        .await
        .map_err(unavailable)?;
        let total: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM consent_usage WHERE consent_id = $1")
                .bind(id.to_string())
                .fetch_one(&mut *tx)
                .await
                .map_err(unavailable)?;
        tx.commit().await.map_err(unavailable)?;
        Ok(Some(PersonConsentUsage {
            consent,
            uses: uses
                .iter()
                .map(|r| UsageRecord::try_from(pg_usage_row(r)?))
                .collect::<Result<_, _>>()?,
            total: row_count(total),
        }))
    }

    async fn revoke_consent_of_person(
        &self,
        id: &ConsentId,
        nin: &Nin,
        now: OffsetDateTime,
    ) -> Result<RevokeOutcome, StoreError> {
        revoke(
            &self.pool,
            id,
            Owner::Person(nin.as_str()),
            RevokedBy::Individual,
            now,
        )
        .await
    }

    async fn expire_consents(&self, now: OffsetDateTime, batch: u32) -> Result<u64, StoreError> {
        let mut tx = begin_custom_planned(&self.pool).await?;
        let rows = sqlx::query(
            "UPDATE consents SET status = 'expired', ended_at = expires_at, \
             ended_at_us = expires_at * 1000000 \
             WHERE id IN (SELECT id FROM consents WHERE status = 'active' AND expires_at <= $1 \
                          ORDER BY expires_at LIMIT $2 FOR UPDATE SKIP LOCKED) \
               AND status = 'active' \
             RETURNING *",
        )
        .bind(now.unix_timestamp())
        .bind(i64::from(batch))
        .fetch_all(&mut *tx)
        .await
        .map_err(unavailable)?;
        for row in &rows {
            let row = consent_row(row)?;
            insert_event(
                &mut tx,
                &new_event_row(&row, ConsentEventType::Archived, now),
            )
            .await?;
        }
        tx.commit().await.map_err(unavailable)?;
        Ok(rows.len() as u64)
    }

    async fn consent_events(
        &self,
        client_id: &ClientId,
        from: i64,
        limit: u32,
    ) -> Result<Vec<ConsentEvent>, StoreError> {
        // Usually one statement, shared with the other pages being read
        // (crate::batched::read_pages): the page, and in the same snapshot
        // whether any committed event still waits for its number. If none
        // does, every event committed before this read is in the page's
        // table.
        let read = PageRead {
            client_id: client_id.as_str().to_owned(),
            from,
            limit: i64::from(limit),
        };
        if let Some(page) = self.batches.feed_page.run(read).await? {
            return page
                .iter()
                .map(|packed| packed_event(packed, client_id))
                .collect();
        }
        self.publish_events().await?;
        sqlx::query(concat!(
            "SELECT packed FROM consent_events WHERE ",
            page_range!("$1", "$2", "$3")
        ))
        .bind(client_id.as_str())
        .bind(from)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(unavailable)?
        .iter()
        .map(|row| packed_event(row.try_get(0).map_err(unavailable)?, client_id))
        .collect()
    }

    async fn consent_event_bounds(
        &self,
        client_id: &ClientId,
    ) -> Result<Option<(i64, i64)>, StoreError> {
        self.publish_pending_events().await?;
        // The client is matched by `>=` and `<=` and the order names both
        // columns of `consent_events_by_client`, so that no generic plan can
        // walk the primary key instead (see [`page_range`]).
        let row = sqlx::query(
            "SELECT (SELECT sequence_nr FROM consent_events WHERE client_id >= $1 AND client_id <= $1 \
                     ORDER BY client_id, sequence_nr LIMIT 1) AS first, \
                    (SELECT sequence_nr FROM consent_events WHERE client_id >= $1 AND client_id <= $1 \
                     ORDER BY client_id DESC, sequence_nr DESC LIMIT 1) AS last",
        )
        .bind(client_id.as_str())
        .fetch_one(&self.pool)
        .await
        .map_err(unavailable)?;
        let first: Option<i64> = row.try_get("first").map_err(unavailable)?;
        let last: Option<i64> = row.try_get("last").map_err(unavailable)?;
        Ok(first.zip(last))
    }

    async fn purge_consent_events(&self, before: OffsetDateTime) -> Result<u64, StoreError> {
        // Events nobody has read yet are published first, so that pending
        // events never pile up and age out by the same rule.
        self.publish_pending_events().await?;
        let mut tx = begin_custom_planned(&self.pool).await?;
        let done = sqlx::query("DELETE FROM consent_events WHERE created_at_us < $1")
            .bind(unix_micros(before))
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?;
        tx.commit().await.map_err(unavailable)?;
        Ok(done.rows_affected())
    }

    async fn import_delivery(
        &self,
        delivery: &Delivery,
        at: OffsetDateTime,
    ) -> Result<u64, StoreError> {
        let mut tx = self.pool.begin().await.map_err(unavailable)?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(DEBT_IMPORT_LOCK)
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?;
        let now = unix_micros(at);
        for fi in &delivery.financial_institutions {
            sqlx::query("DELETE FROM debt_loans WHERE creditor_org = $1")
                .bind(fi.as_str())
                .execute(&mut *tx)
                .await
                .map_err(unavailable)?;
            set_stored_at(&mut tx, fi.as_str(), now).await?;
        }
        for entry in &delivery.entries {
            insert_loan(&mut tx, &LoanRow::from_entry(entry, &delivery.provider_id)).await?;
        }
        tx.commit().await.map_err(unavailable)?;
        Ok(delivery.entries.len() as u64)
    }

    async fn debt_of(&self, nin: &Nin) -> Result<Vec<DebtEntry>, StoreError> {
        loans_of(&self.pool, nin).await
    }

    async fn insert_creditor(&self, creditor: &Creditor) -> Result<(), StoreError> {
        let row = CreditorRow::from(creditor);
        sqlx::query(
            "INSERT INTO creditors (id, name, endpoint, timeout_ms, max_concurrent, certificate_org, \
             always_ask, enabled, page_size, created_at_us) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(&row.id)
        .bind(&row.name)
        .bind(&row.endpoint)
        .bind(row.timeout_ms)
        .bind(row.max_concurrent)
        .bind(&row.certificate_org)
        .bind(row.always_ask)
        .bind(row.enabled)
        .bind(row.page_size)
        .bind(row.created_at_us)
        .execute(&self.pool)
        .await
        .map_err(unavailable)?;
        Ok(())
    }

    async fn update_creditor(&self, creditor: &Creditor) -> Result<(), StoreError> {
        let row = CreditorRow::from(creditor);
        let done = sqlx::query(
            "UPDATE creditors SET name = $1, endpoint = $2, timeout_ms = $3, max_concurrent = $4, \
             certificate_org = $5, always_ask = $6, enabled = $7, page_size = $8 WHERE id = $9",
        )
        .bind(&row.name)
        .bind(&row.endpoint)
        .bind(row.timeout_ms)
        .bind(row.max_concurrent)
        .bind(&row.certificate_org)
        .bind(row.always_ask)
        .bind(row.enabled)
        .bind(row.page_size)
        .bind(&row.id)
        .execute(&self.pool)
        .await
        .map_err(unavailable)?;
        found(done.rows_affected())
    }

    async fn find_creditor(
        &self,
        id: &FinancialInstitutionId,
    ) -> Result<Option<CreditorRecord>, StoreError> {
        sqlx::query(
            "SELECT c.*, d.stored_at_us FROM creditors c \
             LEFT JOIN debt_deliveries d ON d.creditor_org = c.id WHERE c.id = $1",
        )
        .bind(id.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(unavailable)?
        .map(|r| creditor_from_row(&r))
        .transpose()
    }

    async fn list_creditors(&self) -> Result<Vec<CreditorRecord>, StoreError> {
        sqlx::query(
            "SELECT c.*, d.stored_at_us FROM creditors c \
             LEFT JOIN debt_deliveries d ON d.creditor_org = c.id ORDER BY c.id",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(unavailable)?
        .iter()
        .map(creditor_from_row)
        .collect()
    }

    async fn delete_creditor(&self, id: &FinancialInstitutionId) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(unavailable)?;
        let done = sqlx::query("DELETE FROM creditors WHERE id = $1")
            .bind(id.as_str())
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?;
        found(done.rows_affected())?;
        for sql in [
            "DELETE FROM debt_loans WHERE creditor_org = $1",
            "DELETE FROM debt_deliveries WHERE creditor_org = $1",
        ] {
            sqlx::query(sql)
                .bind(id.as_str())
                .execute(&mut *tx)
                .await
                .map_err(unavailable)?;
        }
        tx.commit().await.map_err(unavailable)
    }

    async fn find_creditors_by_certificate_org(
        &self,
        org: &OrgNumber,
    ) -> Result<Vec<Creditor>, StoreError> {
        sqlx::query(
            "SELECT c.*, NULL::BIGINT AS stored_at_us FROM creditors c \
             WHERE c.certificate_org = $1 OR (c.certificate_org IS NULL AND c.id = $1) ORDER BY c.id",
        )
        .bind(org.as_str())
        .fetch_all(&self.pool)
        .await
        .map_err(unavailable)?
        .iter()
        .map(|r| creditor_from_row(r).map(|r| r.creditor))
        .collect()
    }

    async fn claim_daily_sync(
        &self,
        id: &FinancialInstitutionId,
        day: time::Date,
    ) -> Result<bool, StoreError> {
        // One row update: of concurrent claimers the row lock lets one
        // through, and the others re-check the condition and find the day
        // claimed.
        let done = sqlx::query(
            "UPDATE creditors SET claimed_day = $1 \
             WHERE id = $2 AND (claimed_day IS NULL OR claimed_day < $1)",
        )
        .bind(day_text(day))
        .bind(id.as_str())
        .execute(&self.pool)
        .await
        .map_err(unavailable)?;
        Ok(done.rows_affected() == 1)
    }

    async fn record_sync_outcome(
        &self,
        id: &FinancialInstitutionId,
        report: &SyncReport,
    ) -> Result<(), StoreError> {
        let done = sqlx::query(
            "UPDATE creditors SET last_attempt_at_us = $1, last_outcome = $2, last_error = $3, \
             last_success_at_us = CASE WHEN $4 THEN $1 ELSE last_success_at_us END, \
             last_size = CASE WHEN $4 THEN $5 ELSE last_size END, \
             consecutive_failures = CASE WHEN $4 THEN 0 ELSE consecutive_failures + 1 END \
             WHERE id = $6",
        )
        .bind(unix_micros(report.at))
        .bind(report.outcome.as_str())
        .bind(&report.error)
        .bind(report.outcome == SyncOutcome::Ok)
        .bind(report.loans.map(|n| i64::try_from(n).unwrap_or(i64::MAX)))
        .bind(id.as_str())
        .execute(&self.pool)
        .await
        .map_err(unavailable)?;
        found(done.rows_affected())
    }

    async fn stage_loans(&self, sync: &SyncId, entries: &[DebtEntry]) -> Result<(), StoreError> {
        if entries.is_empty() {
            return Ok(());
        }
        let rows: Vec<LoanRow> = entries.iter().map(LoanRow::staged).collect();
        let column = |f: fn(&LoanRow) -> &String| rows.iter().map(f).cloned().collect::<Vec<_>>();
        // One statement per batch, the columns as arrays.
        sqlx::query(
            "INSERT INTO creditor_sync_loans (sync_id, nin, creditor_org, creditor_name, provider_id, \
             account_id, loan_json) \
             SELECT $1, * FROM UNNEST($2::TEXT[], $3::TEXT[], $4::TEXT[], $5::TEXT[], $6::TEXT[], $7::TEXT[])",
        )
        .bind(&sync.0)
        .bind(column(|r| &r.nin))
        .bind(column(|r| &r.creditor_org))
        .bind(column(|r| &r.creditor_name))
        .bind(column(|r| &r.provider_id))
        .bind(column(|r| &r.account_id))
        .bind(column(|r| &r.loan_json))
        .execute(&self.pool)
        .await
        .map_err(unavailable)?;
        Ok(())
    }

    async fn finish_loan_replacement(
        &self,
        sync: &SyncId,
        id: &FinancialInstitutionId,
        provider_id: &ProviderId,
        at: OffsetDateTime,
    ) -> Result<u64, StoreError> {
        let mut tx = self.pool.begin().await.map_err(unavailable)?;
        // Serialised with imports and other replacements, like an import.
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(DEBT_IMPORT_LOCK)
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?;
        sqlx::query("DELETE FROM debt_loans WHERE creditor_org = $1")
            .bind(id.as_str())
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?;
        let done = sqlx::query(
            "INSERT INTO debt_loans (nin, creditor_org, creditor_name, provider_id, account_id, loan_json) \
             SELECT nin, creditor_org, creditor_name, $3, account_id, loan_json \
             FROM creditor_sync_loans WHERE sync_id = $1 AND creditor_org = $2 ORDER BY id",
        )
        .bind(&sync.0)
        .bind(id.as_str())
        .bind(provider_id.as_str())
        .execute(&mut *tx)
        .await
        .map_err(unavailable)?;
        sqlx::query("DELETE FROM creditor_sync_loans WHERE sync_id = $1")
            .bind(&sync.0)
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?;
        set_stored_at(&mut tx, id.as_str(), unix_micros(at)).await?;
        tx.commit().await.map_err(unavailable)?;
        Ok(done.rows_affected())
    }

    async fn abandon_loan_replacement(&self, sync: &SyncId) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM creditor_sync_loans WHERE sync_id = $1")
            .bind(&sync.0)
            .execute(&self.pool)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn stored_debt_of(&self, nin: &Nin) -> Result<Vec<StoredCreditorDebt>, StoreError> {
        let rows = sqlx::query(
            "SELECT l.*, d.stored_at_us, c.name AS registered_name FROM debt_loans l \
             LEFT JOIN debt_deliveries d ON d.creditor_org = l.creditor_org \
             LEFT JOIN creditors c ON c.id = l.creditor_org \
             WHERE l.nin = $1 ORDER BY COALESCE(c.name, l.creditor_name), l.creditor_org, l.id",
        )
        .bind(nin.as_str())
        .fetch_all(&self.pool)
        .await
        .map_err(unavailable)?;
        let rows = rows
            .iter()
            .map(|row| {
                Ok((
                    LoanRow {
                        nin: nin.as_str().to_owned(),
                        creditor_org: row.try_get("creditor_org").map_err(unavailable)?,
                        creditor_name: row.try_get("creditor_name").map_err(unavailable)?,
                        provider_id: row.try_get("provider_id").map_err(unavailable)?,
                        account_id: row.try_get("account_id").map_err(unavailable)?,
                        loan_json: row.try_get("loan_json").map_err(unavailable)?,
                    },
                    row.try_get("stored_at_us").map_err(unavailable)?,
                    row.try_get("registered_name").map_err(unavailable)?,
                ))
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        group_stored_debt(rows)
    }

    async fn apply_push(&self, delivery: &Delivery, at: OffsetDateTime) -> Result<u64, StoreError> {
        let mut tx = self.pool.begin().await.map_err(unavailable)?;
        let (nins, fis): (Vec<String>, Vec<String>) = delivery
            .customers
            .iter()
            .map(|(nin, fi)| (nin.as_str().to_owned(), fi.as_str().to_owned()))
            .unzip();
        sqlx::query(
            "DELETE FROM debt_loans l USING UNNEST($1::TEXT[], $2::TEXT[]) AS p(nin, creditor_org) \
             WHERE l.nin = p.nin AND l.creditor_org = p.creditor_org",
        )
        .bind(&nins)
        .bind(&fis)
        .execute(&mut *tx)
        .await
        .map_err(unavailable)?;
        for entry in &delivery.entries {
            insert_loan(&mut tx, &LoanRow::from_entry(entry, &delivery.provider_id)).await?;
        }
        for fi in &delivery.financial_institutions {
            set_stored_at(&mut tx, fi.as_str(), unix_micros(at)).await?;
        }
        tx.commit().await.map_err(unavailable)?;
        Ok(delivery.entries.len() as u64)
    }

    async fn end_auth_flow(&self, flow: &AuthFlow) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "INSERT INTO finished_flows (id, expires_at) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING",
        )
        .bind(&flow.id)
        .bind(flow.expires_at.unix_timestamp())
        .execute(&self.pool)
        .await
        .map_err(unavailable)?;
        Ok(done.rows_affected() == 1)
    }

    async fn accept_auth_flow(
        &self,
        flow: &AuthFlow,
        consent: &Consent,
        code: &AuthorizationCodeRecord,
        session: &LoginSession,
    ) -> Result<bool, StoreError> {
        let row = ConsentRow::from(consent);
        let event = new_event_row(&row, ConsentEventType::Created, consent.created_at);
        // A batched statement (see `batched::accept_flows`): the flow is
        // finished if no logout of the browser has ended the login session,
        // and only then are the consent, its pending event and the code
        // written, in one round trip and one commit shared with the
        // decisions waiting at the same time.
        self.batches
            .flow_accept
            .run(FlowAccept {
                flow_id: flow.id.clone(),
                flow_expires_at: flow.expires_at.unix_timestamp(),
                browser_hash: session.browser_hash.as_bytes().to_vec(),
                session_began_us: session.created_at_micros(),
                consent: NewConsent {
                    consent: row,
                    event,
                },
                code: AuthorizationCodeRow::from(code),
            })
            .await
    }

    async fn end_login_sessions(&self, session: &LoginSession) -> Result<(), StoreError> {
        let ended = LoginSessionEnd::of(session);
        sqlx::query(
            "INSERT INTO ended_logins (browser_hash, ended_at_us, expires_at) VALUES ($1, $2, $3) \
             ON CONFLICT (browser_hash) DO UPDATE SET \
             ended_at_us = GREATEST(ended_logins.ended_at_us, excluded.ended_at_us), \
             expires_at = GREATEST(ended_logins.expires_at, excluded.expires_at)",
        )
        .bind(session.browser_hash.as_bytes())
        .bind(ended.upto_micros)
        .bind(ended.kept_until)
        .execute(&self.pool)
        .await
        .map_err(unavailable)?;
        Ok(())
    }

    async fn login_session_ended(&self, session: &LoginSession) -> Result<bool, StoreError> {
        sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM ended_logins WHERE browser_hash = $1 AND ended_at_us >= $2)",
        )
        .bind(session.browser_hash.as_bytes())
        .bind(session.created_at_micros())
        .fetch_one(&self.pool)
        .await
        .map_err(unavailable)
    }

    async fn claim_authorization_code(
        &self,
        hash: &TokenHash,
        client_id: &ClientId,
        now: OffsetDateTime,
    ) -> Result<Option<CodeClaim>, StoreError> {
        // A batched statement (see `batched::claim_codes`): the code and
        // its consent as they were, and the claim, in one round trip and
        // one commit shared with the claims waiting at the same time.
        let call = ClaimCall {
            hash: hash.as_bytes().to_vec(),
            client_id: client_id.as_str().to_owned(),
            now: now.unix_timestamp(),
        };
        self.batches.code_claim.run(call).await?
    }

    async fn revoke_consent_tokens(&self, consent_id: &ConsentId) -> Result<u64, StoreError> {
        let done = sqlx::query(
            "WITH marked AS (UPDATE consents SET tokens_revoked = TRUE WHERE id = $1) \
             UPDATE access_tokens SET revoked = TRUE WHERE consent_id = $1 AND NOT revoked",
        )
        .bind(consent_id.to_string())
        .execute(&self.pool)
        .await
        .map_err(unavailable)?;
        Ok(done.rows_affected())
    }

    async fn purge_expired_flow_state(&self, now: OffsetDateTime) -> Result<u64, StoreError> {
        let t = now.unix_timestamp();
        let mut total = 0;
        let mut tx = begin_custom_planned(&self.pool).await?;
        for sql in [
            "DELETE FROM finished_flows WHERE expires_at < $1",
            "DELETE FROM ended_logins WHERE expires_at < $1",
            // Kept a while after expiry, so that a late replay is still
            // recognised as a replay.
            "DELETE FROM authorization_codes WHERE expires_at < $1 - 3600",
            "DELETE FROM access_tokens WHERE expires_at < $1 - 86400",
        ] {
            total += sqlx::query(sql)
                .bind(t)
                .execute(&mut *tx)
                .await
                .map_err(unavailable)?
                .rows_affected();
        }
        tx.commit().await.map_err(unavailable)?;
        Ok(total)
    }

    async fn server_secret(&self, name: &str, candidate: &[u8]) -> Result<Vec<u8>, StoreError> {
        sqlx::query("INSERT INTO server_secrets (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING")
            .bind(name)
            .bind(candidate)
            .execute(&self.pool)
            .await
            .map_err(unavailable)?;
        let row = sqlx::query("SELECT value FROM server_secrets WHERE name = $1")
            .bind(name)
            .fetch_one(&self.pool)
            .await
            .map_err(unavailable)?;
        row.try_get("value").map_err(unavailable)
    }

    async fn server_secrets_with_prefix(
        &self,
        prefix: &str,
    ) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let rows = sqlx::query(
            "SELECT name, value FROM server_secrets WHERE left(name, length($1::text)) = $1::text",
        )
        .bind(prefix)
        .fetch_all(&self.pool)
        .await
        .map_err(unavailable)?;
        rows.iter()
            .map(|row| {
                Ok((
                    row.try_get("name").map_err(unavailable)?,
                    row.try_get("value").map_err(unavailable)?,
                ))
            })
            .collect()
    }

    async fn list_signing_keys(&self) -> Result<Vec<SigningKey>, StoreError> {
        sqlx::query("SELECT kid, private_key_pem, created_at FROM signing_keys ORDER BY seq DESC")
            .fetch_all(&self.pool)
            .await
            .map_err(unavailable)?
            .iter()
            .map(|r| {
                signing_key_from_row(
                    r.try_get("kid").map_err(unavailable)?,
                    r.try_get("private_key_pem").map_err(unavailable)?,
                    r.try_get("created_at").map_err(unavailable)?,
                )
            })
            .collect()
    }

    async fn insert_first_signing_key(&self, key: &SigningKey) -> Result<bool, StoreError> {
        // READ COMMITTED would let two processes both see an empty table; the
        // transaction-scoped advisory lock makes check-and-insert atomic.
        let mut tx = self.pool.begin().await.map_err(unavailable)?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(FIRST_KEY_LOCK)
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?;
        let done = sqlx::query(
            "INSERT INTO signing_keys (kid, private_key_pem, created_at) \
             SELECT $1, $2, $3 WHERE NOT EXISTS (SELECT 1 FROM signing_keys)",
        )
        .bind(&key.kid)
        .bind(&key.private_key_pem)
        .bind(key.created_at.unix_timestamp())
        .execute(&mut *tx)
        .await
        .map_err(unavailable)?;
        tx.commit().await.map_err(unavailable)?;
        Ok(done.rows_affected() == 1)
    }

    async fn insert_signing_key(&self, key: &SigningKey) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO signing_keys (kid, private_key_pem, created_at) VALUES ($1, $2, $3)",
        )
        .bind(&key.kid)
        .bind(&key.private_key_pem)
        .bind(key.created_at.unix_timestamp())
        .execute(&self.pool)
        .await
        .map_err(unavailable)?;
        Ok(())
    }

    async fn bootstrap_sandbox_client(
        &self,
        client: &Client,
        secret: &ClientSecret,
    ) -> Result<SandboxCredentials, StoreError> {
        let row = ClientRow::from(client);
        let mut tx = self.pool.begin().await.map_err(unavailable)?;
        insert_client_query(&row)
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?;
        let done = sqlx::query(
            "INSERT INTO sandbox (singleton, client_id, client_secret) VALUES (1, $1, $2) \
             ON CONFLICT (singleton) DO NOTHING",
        )
        .bind(&row.id)
        .bind(secret.expose())
        .execute(&mut *tx)
        .await
        .map_err(unavailable)?;
        if done.rows_affected() == 1 {
            tx.commit().await.map_err(unavailable)?;
        } else {
            tx.rollback().await.map_err(unavailable)?;
        }
        self.sandbox_credentials()
            .await?
            .ok_or_else(|| StoreError::Unavailable("sandbox client vanished".into()))
    }

    async fn sandbox_credentials(&self) -> Result<Option<SandboxCredentials>, StoreError> {
        sqlx::query("SELECT client_id, client_secret FROM sandbox WHERE singleton = 1")
            .fetch_optional(&self.pool)
            .await
            .map_err(unavailable)?
            .map(|r| {
                sandbox_from_row(
                    r.try_get("client_id").map_err(unavailable)?,
                    r.try_get("client_secret").map_err(unavailable)?,
                )
            })
            .transpose()
    }

    async fn update_sandbox_secret(&self, secret: &ClientSecret) -> Result<(), StoreError> {
        sqlx::query("UPDATE sandbox SET client_secret = $1 WHERE singleton = 1")
            .bind(secret.expose())
            .execute(&self.pool)
            .await
            .map_err(unavailable)?;
        Ok(())
    }
}

/// What checks a sealed token's revocation state in a batch.
fn sealed_token_check(token: &AccessTokenRecord, generation: i64) -> SealedTokenCheck {
    SealedTokenCheck {
        hash: token.hash.as_bytes().to_vec(),
        client_id: token.client_id.as_str().to_owned(),
        generation,
        consent_id: token.consent_id.map(|id| id.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::unpack_event;

    const EVENT: &str = "42 0b8f5e4a-7f6e-4a43-9d4f-1c2b3a4d5e6f SAMTYKKE_OPPRETTET \
                         9c1d2e3f-4a5b-4c6d-8e7f-0a1b2c3d4e5f DEBT_INFORMATION 1764000000123456";

    #[test]
    fn unpacks_an_event_without_a_client_consent_id() {
        let e = unpack_event(EVENT).unwrap();
        assert_eq!(e.sequence_nr, 42);
        assert_eq!(e.event_id, "0b8f5e4a-7f6e-4a43-9d4f-1c2b3a4d5e6f");
        assert_eq!(e.event_type, "SAMTYKKE_OPPRETTET");
        assert_eq!(e.consent_id, "9c1d2e3f-4a5b-4c6d-8e7f-0a1b2c3d4e5f");
        assert_eq!(e.purpose, "DEBT_INFORMATION");
        assert_eq!(e.created_at_us, 1_764_000_000_123_456);
        assert_eq!(e.client_consent_id, None);
    }

    #[test]
    fn keeps_spaces_and_emptiness_of_the_client_consent_id() {
        let with = format!("{EVENT} case 17  of 2026");
        assert_eq!(
            unpack_event(&with).unwrap().client_consent_id,
            Some("case 17  of 2026")
        );
        let empty = format!("{EVENT} ");
        assert_eq!(unpack_event(&empty).unwrap().client_consent_id, Some(""));
    }

    #[test]
    fn refuses_a_truncated_or_malformed_event() {
        for bad in [
            "",
            "42",
            "x 0b8f SAMTYKKE_OPPRETTET c p 1",
            "42 a b c d not-a-number",
        ] {
            assert!(unpack_event(bad).is_err(), "{bad:?}");
        }
    }
}
