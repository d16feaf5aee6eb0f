//! SQLite implementation of [`Store`]: the embedded default engine.
//!
//! One file, WAL journal. `synchronous=NORMAL` in WAL mode keeps every
//! committed transaction across a crash of the server process (`kill -9`);
//! `synchronous=FULL` adds an fsync per commit (per batch of the group
//! commit) for power loss. [`SqliteStore::connect_with`] takes the setting
//! (`samtykke serve` passes FULL in production mode); [`SqliteStore::connect`]
//! reads `SAMTYKKE_SQLITE_SYNCHRONOUS` (default NORMAL).
//!
//! Statements run through rusqlite: writes as whole operations on one writer
//! thread with group commit, reads on the caller's thread (see [`db`]).
//! Migrations are sqlx's, applied once at start-up.

mod db;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension, Row};
use samtykke_core::consent::{
    Consent, ConsentDuration, ConsentEvent, ConsentEventType, ConsentId, RevokedBy, UsageRecord,
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
    unix_micros, AccessTokenRow, AuthorizationCodeRow, ClientRow, CodeClaim, ConsentEventRow,
    ConsentInsert, ConsentRow, CreditorRow, LoanRow, LoginSessionEnd, PersonConsentUsage,
    PersonConsents, PoolStats, RevokeOutcome, SandboxCredentials, Store, StoreError, UsageRow,
};
use samtykke_core::token::{AccessTokenRecord, TokenHash};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};
use time::OffsetDateTime;

pub use db::Synchronous;
use db::{Database, OrUnavailable};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// The SQLite store.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    db: Arc<Database>,
}

/// The file a `sqlite:` URL names, or `None` for an in-memory database.
/// An error says what is wrong with the URL.
pub fn database_file(url: &str) -> Result<Option<std::path::PathBuf>, StoreError> {
    let options = SqliteConnectOptions::from_str(url)
        .map_err(|e| StoreError::Unavailable(format!("bad SQLite URL: {e}")))?;
    let path = options.get_filename();
    if path.as_os_str().is_empty() || path.as_os_str() == ":memory:" || url.contains(":memory:") {
        return Ok(None);
    }
    Ok(Some(path.to_path_buf()))
}

/// A missing directory for the database file, named, rather than SQLite's
/// "unable to open database file" after a round of retries.
fn check_directory(url: &str) -> Result<(), StoreError> {
    let Some(file) = database_file(url)? else {
        return Ok(());
    };
    match file.parent() {
        Some(dir) if !dir.as_os_str().is_empty() && !dir.is_dir() => {
            Err(StoreError::Unavailable(format!(
                "the directory {} for the SQLite database {} does not exist; create it first (mkdir -p {})",
                dir.display(),
                file.display(),
                dir.display()
            )))
        }
        _ => Ok(()),
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `url` (`sqlite:path` or
    /// `sqlite://path`) and applies pending migrations.
    /// Commits with `synchronous` as `SAMTYKKE_SQLITE_SYNCHRONOUS` says
    /// (`FULL`/`full`), else NORMAL.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let synchronous = match std::env::var("SAMTYKKE_SQLITE_SYNCHRONOUS").as_deref() {
            Ok("FULL") | Ok("full") => Synchronous::Full,
            _ => Synchronous::Normal,
        };
        Self::connect_with(url, synchronous).await
    }

    /// [`SqliteStore::connect`] with the given `PRAGMA synchronous`.
    pub async fn connect_with(url: &str, synchronous: Synchronous) -> Result<Self, StoreError> {
        check_directory(url)?;
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|e| StoreError::Unavailable(format!("bad SQLite URL: {e}")))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        let path = options.get_filename().to_path_buf();
        let readers = std::env::var("SAMTYKKE_SQLITE_POOL_SIZE")
            .ok()
            .and_then(|v| v.parse::<u32>().ok())
            .filter(|n| *n > 0)
            .unwrap_or(8);
        {
            // Another process opening the same file at this moment may hold
            // it locked while it switches it to WAL, and SQLite does not wait
            // for that lock: retried like the migrations.
            let pool = retried("opening the database", || {
                SqlitePoolOptions::new()
                    .max_connections(1)
                    .connect_with(options.clone())
            })
            .await?;
            migrate(&pool).await?;
            pool.close().await;
        }
        let db = Database::open(path, synchronous, readers)?;
        Ok(Self { db: Arc::new(db) })
    }
}

impl SqliteStore {
    /// `PRAGMA synchronous` as the writer connection has it: what every
    /// commit of this store promises (see [`Synchronous`]).
    pub async fn synchronous(&self) -> Result<Synchronous, StoreError> {
        self.db.synchronous().await
    }
}

/// SQLite has no advisory lock, so two processes opening a new file at once
/// may both try to apply the same migration; the loser retries and then finds
/// it applied.
async fn migrate(pool: &sqlx::SqlitePool) -> Result<(), StoreError> {
    retried("migration", || MIGRATOR.run(pool)).await
}

/// `step`, tried up to six times, 50, 100, … 250 ms apart, while it fails:
/// for the moments when another process opening the same file holds it.
async fn retried<T, E, F, Fut>(what: &str, step: F) -> Result<T, StoreError>
where
    E: std::fmt::Display,
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
{
    let mut attempt = 0;
    loop {
        match step().await {
            Ok(done) => return Ok(done),
            Err(e) if attempt < 5 => {
                attempt += 1;
                tracing::debug!(error = %e, attempt, "{what} raced another process; retrying");
                tokio::time::sleep(Duration::from_millis(50 * attempt)).await;
            }
            Err(e) => return Err(StoreError::Unavailable(format!("{what} failed: {e}"))),
        }
    }
}

/// Feed order = commit order: SQLite has one writer at a time, so the
/// autoincrement key already grows in commit order.
fn insert_event(conn: &Connection, e: &ConsentEventRow) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO consent_events (event_id, event_type, client_id, consent_id, purpose, client_consent_id, created_at_us) \
         VALUES (?, ?, ?, ?, ?, ?, ?)",
    )
    .and_then(|mut s| {
        s.execute(params![
            e.event_id,
            e.event_type,
            e.client_id,
            e.consent_id,
            e.purpose,
            e.client_consent_id,
            e.created_at_us
        ])
    })
    .db()?;
    Ok(())
}

fn consent_row(row: &Row<'_>) -> rusqlite::Result<ConsentRow> {
    Ok(ConsentRow {
        id: row.get("id")?,
        client_id: row.get("client_id")?,
        nin: row.get("nin")?,
        purpose: row.get("purpose")?,
        kind: row.get("kind")?,
        duration_days: row.get("duration_days")?,
        client_consent_id: row.get("client_consent_id")?,
        created_at: row.get("created_at")?,
        expires_at: row.get("expires_at")?,
        status: row.get("status")?,
        revoked_by: row.get("revoked_by")?,
        ended_at: row.get("ended_at")?,
        ended_at_us: row.get("ended_at_us")?,
    })
}

fn event_row(row: &Row<'_>) -> rusqlite::Result<ConsentEventRow> {
    Ok(ConsentEventRow {
        sequence_nr: row.get("sequence_nr")?,
        event_id: row.get("event_id")?,
        event_type: row.get("event_type")?,
        client_id: row.get("client_id")?,
        consent_id: row.get("consent_id")?,
        purpose: row.get("purpose")?,
        client_consent_id: row.get("client_consent_id")?,
        created_at_us: row.get("created_at_us")?,
    })
}

fn insert_usage(conn: &Connection, u: &UsageRow) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO consent_usage (consent_id, client_id, used_at_us, purpose, trace_id, creditor_report) \
         VALUES (?, ?, ?, ?, ?, ?)",
    )
    .and_then(|mut s| {
        s.execute(params![
            u.consent_id,
            u.client_id,
            u.used_at_us,
            u.purpose,
            u.trace_id,
            u.creditor_report
        ])
    })
    .db()?;
    Ok(())
}

fn client_row(row: &Row<'_>) -> rusqlite::Result<ClientRow> {
    Ok(ClientRow {
        id: row.get("id")?,
        secret_hash: row.get("secret_hash")?,
        name: row.get("name")?,
        org_number: row.get("org_number")?,
        redirect_uris: row.get("redirect_uris")?,
        purposes: row.get("purposes")?,
        may_create_agreements: row.get("may_create_agreements")?,
        may_read_events: row.get("may_read_events")?,
        require_pkce: row.get("require_pkce")?,
        disabled: row.get("disabled")?,
        created_at: row.get("created_at")?,
        token_generation: row.get("token_generation")?,
        jwks: row.get("jwks")?,
        jwks_uri: row.get("jwks_uri")?,
        request_uris: row.get("request_uris")?,
        allow_unsigned_request_objects: row.get("allow_unsigned_request_objects")?,
    })
}

fn token_row(row: &Row<'_>) -> rusqlite::Result<AccessTokenRow> {
    Ok(AccessTokenRow {
        hash: row.get("hash")?,
        client_id: row.get("client_id")?,
        audience: row.get("audience")?,
        scopes: row.get("scopes")?,
        issued_at: row.get("issued_at")?,
        expires_at: row.get("expires_at")?,
        revoked: row.get("revoked")?,
        consent_id: row.get("consent_id")?,
    })
}

fn insert_client_row(conn: &Connection, row: &ClientRow) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO clients (id, secret_hash, name, org_number, redirect_uris, \
         purposes, may_create_agreements, may_read_events, require_pkce, disabled, created_at, token_generation, \
         jwks, jwks_uri, request_uris, allow_unsigned_request_objects) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .and_then(|mut s| {
        s.execute(params![
            row.id,
            row.secret_hash,
            row.name,
            row.org_number,
            row.redirect_uris,
            row.purposes,
            row.may_create_agreements,
            row.may_read_events,
            row.require_pkce,
            row.disabled,
            row.created_at,
            row.token_generation,
            row.jwks,
            row.jwks_uri,
            row.request_uris,
            row.allow_unsigned_request_objects
        ])
    })
    .db()?;
    Ok(())
}

fn code_row(row: &Row<'_>) -> rusqlite::Result<AuthorizationCodeRow> {
    Ok(AuthorizationCodeRow {
        hash: row.get("hash")?,
        client_id: row.get("client_id")?,
        redirect_uri: row.get("redirect_uri")?,
        consent_id: row.get("consent_id")?,
        scopes: row.get("scopes")?,
        nonce: row.get("nonce")?,
        code_challenge: row.get("code_challenge")?,
        issued_at: row.get("issued_at")?,
        expires_at: row.get("expires_at")?,
        used_at: row.get("used_at")?,
    })
}

fn usage_row(r: &Row<'_>) -> rusqlite::Result<UsageRow> {
    Ok(UsageRow {
        consent_id: r.get("consent_id")?,
        client_id: r.get("client_id")?,
        used_at_us: r.get("used_at_us")?,
        purpose: r.get("purpose")?,
        trace_id: r.get("trace_id")?,
        creditor_report: r.get("creditor_report")?,
    })
}

fn loan_row(r: &Row<'_>) -> rusqlite::Result<LoanRow> {
    Ok(LoanRow {
        nin: r.get("nin")?,
        creditor_org: r.get("creditor_org")?,
        creditor_name: r.get("creditor_name")?,
        provider_id: r.get("provider_id")?,
        account_id: r.get("account_id")?,
        loan_json: r.get("loan_json")?,
    })
}

/// Runs `sql` with `params`, answering the number of changed rows.
fn execute(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> Result<usize, StoreError> {
    conn.prepare_cached(sql)
        .and_then(|mut s| s.execute(params))
        .db()
}

/// The first row of `sql`, mapped by `map`, if there is one.
fn query_opt<T>(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
    map: impl FnOnce(&Row<'_>) -> rusqlite::Result<T>,
) -> Result<Option<T>, StoreError> {
    conn.prepare_cached(sql)
        .and_then(|mut s| s.query_row(params, map).optional())
        .db()
}

/// Every row of `sql`, mapped by `map`.
fn query_all<T>(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
    map: impl FnMut(&Row<'_>) -> rusqlite::Result<T>,
) -> Result<Vec<T>, StoreError> {
    conn.prepare_cached(sql)
        .and_then(|mut s| s.query_map(params, map)?.collect())
        .db()
}

fn creditor_row(r: &Row<'_>) -> rusqlite::Result<CreditorRow> {
    Ok(CreditorRow {
        id: r.get("id")?,
        name: r.get("name")?,
        endpoint: r.get("endpoint")?,
        timeout_ms: r.get("timeout_ms")?,
        max_concurrent: r.get("max_concurrent")?,
        certificate_org: r.get("certificate_org")?,
        always_ask: r.get("always_ask")?,
        enabled: r.get("enabled")?,
        page_size: r.get("page_size")?,
        created_at_us: r.get("created_at_us")?,
        last_attempt_at_us: r.get("last_attempt_at_us")?,
        last_success_at_us: r.get("last_success_at_us")?,
        last_outcome: r.get("last_outcome")?,
        last_size: r.get("last_size")?,
        last_error: r.get("last_error")?,
        consecutive_failures: r.get("consecutive_failures")?,
        claimed_day: r.get("claimed_day")?,
        stored_at_us: r.get("stored_at_us")?,
    })
}

fn insert_loan(conn: &Connection, row: &LoanRow) -> Result<(), StoreError> {
    execute(
        conn,
        "INSERT INTO debt_loans (nin, creditor_org, creditor_name, provider_id, account_id, loan_json) \
         VALUES (?, ?, ?, ?, ?, ?)",
        params![
            row.nin,
            row.creditor_org,
            row.creditor_name,
            row.provider_id,
            row.account_id,
            row.loan_json
        ],
    )
    .map(|_| ())
}

/// Records when `fi`'s stored data was delivered.
fn set_stored_at(conn: &Connection, fi: &str, at_us: i64) -> Result<(), StoreError> {
    execute(
        conn,
        "INSERT INTO debt_deliveries (creditor_org, stored_at_us) VALUES (?1, ?2) \
         ON CONFLICT (creditor_org) DO UPDATE SET stored_at_us = ?2",
        params![fi, at_us],
    )
    .map(|_| ())
}

/// The person's loans as stored, by creditor.
fn loans_of(conn: &Connection, nin: &Nin) -> Result<Vec<LoanRow>, StoreError> {
    query_all(
        conn,
        "SELECT * FROM debt_loans WHERE nin = ? ORDER BY creditor_name, creditor_org, id",
        [nin.as_str()],
        loan_row,
    )
}

/// Marks the flow `flow_id` finished until `expires_at`; false if it
/// already was.
fn finish_flow(conn: &Connection, flow_id: &str, expires_at: i64) -> Result<bool, StoreError> {
    Ok(execute(
        conn,
        "INSERT INTO finished_flows (id, expires_at) VALUES (?, ?) ON CONFLICT (id) DO NOTHING",
        params![flow_id, expires_at],
    )? == 1)
}

/// Whether a logout of the browser has ended the session it began at
/// `began` (Unix microseconds).
fn session_ended(conn: &Connection, browser_hash: &[u8], began: i64) -> Result<bool, StoreError> {
    Ok(query_opt(
        conn,
        "SELECT 1 FROM ended_logins WHERE browser_hash = ? AND ended_at_us >= ?",
        params![browser_hash, began],
        |_| Ok(()),
    )?
    .is_some())
}

/// Inserts a consent row; false if it collided (same id or same
/// client_consent_id).
fn insert_consent_row(conn: &Connection, row: &ConsentRow) -> Result<bool, StoreError> {
    let n = execute(
        conn,
        "INSERT INTO consents (id, client_id, nin, purpose, kind, duration_days, client_consent_id, \
         created_at, expires_at, status, revoked_by, ended_at, ended_at_us) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
        params![
            row.id,
            row.client_id,
            row.nin,
            row.purpose,
            row.kind,
            row.duration_days,
            row.client_consent_id,
            row.created_at,
            row.expires_at,
            row.status,
            row.revoked_by,
            row.ended_at,
            row.ended_at_us
        ],
    )?;
    Ok(n == 1)
}

fn insert_token(conn: &Connection, token: &AccessTokenRecord) -> Result<(), StoreError> {
    let row = AccessTokenRow::from(token);
    execute(
        conn,
        "INSERT INTO access_tokens (hash, client_id, audience, scopes, issued_at, expires_at, revoked, consent_id) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        params![
            row.hash,
            row.client_id,
            row.audience,
            row.scopes,
            row.issued_at,
            row.expires_at,
            row.revoked,
            row.consent_id
        ],
    )?;
    Ok(())
}

fn found(rows_affected: usize) -> Result<(), StoreError> {
    if rows_affected == 0 {
        Err(StoreError::NotFound)
    } else {
        Ok(())
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn ping(&self) -> Result<(), StoreError> {
        self.db.read(|c| {
            query_opt(c, "SELECT 1", [], |r| r.get::<_, i64>(0))?;
            Ok(())
        })?;
        // A stopped writer is as bad as an unreadable file.
        self.db.write(|_| Ok(())).await
    }

    fn pool_stats(&self) -> Option<PoolStats> {
        Some(self.db.stats())
    }

    async fn insert_client(&self, client: &Client) -> Result<(), StoreError> {
        let row = ClientRow::from(client);
        self.db.write(move |c| insert_client_row(c, &row)).await
    }

    async fn find_client(&self, id: &ClientId) -> Result<Option<Client>, StoreError> {
        self.db
            .read(|c| {
                query_opt(
                    c,
                    "SELECT * FROM clients WHERE id = ?",
                    [id.as_str()],
                    client_row,
                )
            })?
            .map(Client::try_from)
            .transpose()
    }

    async fn list_clients(&self) -> Result<Vec<Client>, StoreError> {
        self.db
            .read(|c| {
                query_all(
                    c,
                    "SELECT * FROM clients ORDER BY created_at, id",
                    [],
                    client_row,
                )
            })?
            .into_iter()
            .map(Client::try_from)
            .collect()
    }

    async fn replace_client_secret(
        &self,
        id: &ClientId,
        hash: &SecretHash,
    ) -> Result<(), StoreError> {
        let (id, hash) = (id.as_str().to_owned(), hash.as_bytes().to_vec());
        self.db
            .write(move |c| {
                found(execute(
                    c,
                    "UPDATE clients SET secret_hash = ? WHERE id = ?",
                    params![hash, id],
                )?)
            })
            .await
    }

    async fn set_client_disabled(&self, id: &ClientId, disabled: bool) -> Result<(), StoreError> {
        let id = id.as_str().to_owned();
        self.db
            .write(move |c| {
                // Disabling also ends every sealed token issued until now.
                found(execute(
                    c,
                    "UPDATE clients SET disabled = ?1, \
                     token_generation = token_generation + CASE WHEN ?1 THEN 1 ELSE 0 END WHERE id = ?2",
                    params![disabled, id],
                )?)?;
                if disabled {
                    execute(
                        c,
                        "UPDATE access_tokens SET revoked = TRUE WHERE client_id = ?",
                        [&id],
                    )?;
                }
                Ok(())
            })
            .await
    }

    async fn delete_client(&self, id: &ClientId) -> Result<(), StoreError> {
        let id = id.as_str().to_owned();
        self.db
            .write(move |c| found(execute(c, "DELETE FROM clients WHERE id = ?", [&id])?))
            .await
    }

    async fn set_client_redirect_uris(
        &self,
        id: &ClientId,
        redirect_uris: &[RedirectUri],
    ) -> Result<(), StoreError> {
        let id = id.as_str().to_owned();
        let uris = samtykke_core::store::join_redirect_uris(redirect_uris);
        self.db
            .write(move |c| {
                found(execute(
                    c,
                    "UPDATE clients SET redirect_uris = ? WHERE id = ?",
                    params![uris, id],
                )?)
            })
            .await
    }

    async fn insert_access_token(&self, token: &AccessTokenRecord) -> Result<(), StoreError> {
        let token = token.clone();
        self.db.write(move |c| insert_token(c, &token)).await
    }

    async fn find_access_token(
        &self,
        hash: &TokenHash,
    ) -> Result<Option<AccessTokenRecord>, StoreError> {
        self.db
            .read(|c| {
                query_opt(
                    c,
                    "SELECT * FROM access_tokens WHERE hash = ?",
                    [hash.as_bytes()],
                    token_row,
                )
            })?
            .map(AccessTokenRecord::try_from)
            .transpose()
    }

    async fn revoke_access_token(&self, token: &AccessTokenRecord) -> Result<(), StoreError> {
        let row = AccessTokenRow::from(token);
        self.db
            .write(move |c| {
                execute(
                    c,
                    "INSERT INTO access_tokens (hash, client_id, audience, scopes, issued_at, expires_at, revoked, consent_id) \
                     VALUES (?, ?, ?, ?, ?, ?, TRUE, ?) ON CONFLICT (hash) DO UPDATE SET revoked = TRUE",
                    params![
                        row.hash,
                        row.client_id,
                        row.audience,
                        row.scopes,
                        row.issued_at,
                        row.expires_at,
                        row.consent_id
                    ],
                )?;
                Ok(())
            })
            .await
    }

    async fn sealed_token_revoked(
        &self,
        token: &AccessTokenRecord,
        generation: i64,
    ) -> Result<bool, StoreError> {
        self.db.read(|c| {
            query_opt(
                c,
                "SELECT EXISTS (SELECT 1 FROM access_tokens WHERE hash = ?1 AND revoked) \
                 OR NOT EXISTS (SELECT 1 FROM clients WHERE id = ?2 AND NOT disabled AND token_generation = ?3) \
                 OR (?4 IS NOT NULL AND NOT EXISTS (SELECT 1 FROM consents WHERE id = ?4 AND NOT tokens_revoked))",
                params![
                    token.hash.as_bytes(),
                    token.client_id.as_str(),
                    generation,
                    token.consent_id.map(|id| id.to_string())
                ],
                |r| r.get::<_, bool>(0),
            )
            .map(|revoked| revoked.unwrap_or(true))
        })
    }

    async fn insert_consent(&self, consent: &Consent) -> Result<ConsentInsert, StoreError> {
        let row = ConsentRow::from(consent);
        let created_at = consent.created_at;
        let existing = self
            .db
            .write(move |c| {
                if !insert_consent_row(c, &row)? {
                    let existing = query_opt(
                        c,
                        "SELECT * FROM consents WHERE client_id = ? AND client_consent_id = ?",
                        params![row.client_id, row.client_consent_id],
                        consent_row,
                    )?
                    .ok_or_else(|| StoreError::Conflict("consent id collision".into()))?;
                    return Ok(Some(existing));
                }
                let event = new_event_row(&row, ConsentEventType::Created, created_at);
                insert_event(c, &event)?;
                Ok(None)
            })
            .await?;
        match existing {
            Some(row) => Ok(ConsentInsert::Existing(Consent::try_from(row)?)),
            None => Ok(ConsentInsert::Created),
        }
    }

    async fn find_consent(&self, id: &ConsentId) -> Result<Option<Consent>, StoreError> {
        self.db
            .read(|c| {
                query_opt(
                    c,
                    "SELECT * FROM consents WHERE id = ?",
                    [id.to_string()],
                    consent_row,
                )
            })?
            .map(Consent::try_from)
            .transpose()
    }

    async fn look_up_debt(&self, lookup: &DebtLookup) -> Result<DebtLookupOutcome, StoreError> {
        let lookup = lookup.clone();
        // One writer job: the consent is judged and the use logged in the
        // writer's transaction, so a single-use consent is judged and
        // consumed with nothing in between.
        let served = self
            .db
            .write(move |c| {
                let id = lookup.consent_id.to_string();
                let stored =
                    query_opt(c, "SELECT * FROM consents WHERE id = ?", [&id], consent_row)?
                        .map(Consent::try_from)
                        .transpose()?;
                let consent = match lookup.judge(stored) {
                    Ok(consent) => consent,
                    Err(refusal) => return Ok(Err(refusal)),
                };
                insert_usage(c, &UsageRow::from(&lookup.usage(consent.purpose)))?;
                if consent.duration == ConsentDuration::SingleUse {
                    execute(
                        c,
                        "UPDATE consents SET status = 'consumed', ended_at = ?, ended_at_us = ? \
                         WHERE id = ?",
                        params![lookup.at.unix_timestamp(), unix_micros(lookup.at), id],
                    )?;
                    insert_event(
                        c,
                        &new_event_row(
                            &ConsentRow::from(&consent),
                            ConsentEventType::Archived,
                            lookup.at,
                        ),
                    )?;
                }
                Ok(Ok(consent))
            })
            .await?;
        Ok(match served {
            Ok(consent) => DebtLookupOutcome::Served { consent },
            Err(refusal) => DebtLookupOutcome::Refused(refusal),
        })
    }

    async fn revoke_consent(
        &self,
        id: &ConsentId,
        client_id: &ClientId,
        by: RevokedBy,
        now: OffsetDateTime,
    ) -> Result<RevokeOutcome, StoreError> {
        let (id, client_id) = (id.to_string(), client_id.as_str().to_owned());
        self.db
            .write(move |c| revoke(c, &id, Owner::Client(&client_id), by, now))
            .await
    }

    async fn consent_usage(&self, id: &ConsentId) -> Result<Vec<UsageRecord>, StoreError> {
        self.db
            .read(|c| {
                query_all(
                    c,
                    "SELECT * FROM consent_usage WHERE consent_id = ? ORDER BY id",
                    [id.to_string()],
                    usage_row,
                )
            })?
            .into_iter()
            .map(UsageRecord::try_from)
            .collect()
    }

    async fn expire_consents(&self, now: OffsetDateTime, batch: u32) -> Result<u64, StoreError> {
        self.db
            .write(move |c| {
                let rows = query_all(
                    c,
                    "UPDATE consents SET status = 'expired', ended_at = expires_at, \
                     ended_at_us = expires_at * 1000000 \
                     WHERE id IN (SELECT id FROM consents WHERE status = 'active' AND expires_at <= ? \
                                  ORDER BY expires_at LIMIT ?) \
                     RETURNING *",
                    params![now.unix_timestamp(), i64::from(batch)],
                    consent_row,
                )?;
                for row in &rows {
                    insert_event(c, &new_event_row(row, ConsentEventType::Archived, now))?;
                }
                Ok(rows.len() as u64)
            })
            .await
    }

    async fn consent_events(
        &self,
        client_id: &ClientId,
        from: i64,
        limit: u32,
    ) -> Result<Vec<ConsentEvent>, StoreError> {
        self.db
            .read(|c| {
                query_all(
                    c,
                    "SELECT * FROM consent_events WHERE client_id = ? AND sequence_nr >= ? ORDER BY sequence_nr LIMIT ?",
                    params![client_id.as_str(), from, i64::from(limit)],
                    event_row,
                )
            })?
            .into_iter()
            .map(ConsentEvent::try_from)
            .collect()
    }

    async fn consent_event_bounds(
        &self,
        client_id: &ClientId,
    ) -> Result<Option<(i64, i64)>, StoreError> {
        let bounds = self.db.read(|c| {
            query_opt(
                c,
                // Two subqueries: SQLite answers a lone MIN or MAX from the
                // index, but scans every row for both in one select.
                "SELECT (SELECT MIN(sequence_nr) FROM consent_events WHERE client_id = ?1), \
                        (SELECT MAX(sequence_nr) FROM consent_events WHERE client_id = ?1)",
                [client_id.as_str()],
                |r| Ok((r.get::<_, Option<i64>>(0)?, r.get::<_, Option<i64>>(1)?)),
            )
        })?;
        Ok(bounds.and_then(|(first, last)| first.zip(last)))
    }

    async fn purge_consent_events(&self, before: OffsetDateTime) -> Result<u64, StoreError> {
        let before = unix_micros(before);
        self.db
            .write(move |c| {
                Ok(execute(
                    c,
                    "DELETE FROM consent_events WHERE created_at_us < ?",
                    [before],
                )? as u64)
            })
            .await
    }

    async fn import_delivery(
        &self,
        delivery: &Delivery,
        at: OffsetDateTime,
    ) -> Result<u64, StoreError> {
        let (institutions, rows) = samtykke_core::store::delivery_rows(delivery);
        let now = unix_micros(at);
        self.db
            .write(move |c| {
                for fi in &institutions {
                    execute(c, "DELETE FROM debt_loans WHERE creditor_org = ?", [fi])?;
                    set_stored_at(c, fi, now)?;
                }
                for row in &rows {
                    insert_loan(c, row)?;
                }
                Ok(rows.len() as u64)
            })
            .await
    }

    async fn debt_of(&self, nin: &Nin) -> Result<Vec<DebtEntry>, StoreError> {
        self.db
            .read(|c| loans_of(c, nin))?
            .into_iter()
            .map(DebtEntry::try_from)
            .collect()
    }

    async fn insert_creditor(&self, creditor: &Creditor) -> Result<(), StoreError> {
        let row = CreditorRow::from(creditor);
        self.db
            .write(move |c| {
                execute(
                    c,
                    "INSERT INTO creditors (id, name, endpoint, timeout_ms, max_concurrent, certificate_org, \
                     always_ask, enabled, page_size, created_at_us) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    params![
                        row.id,
                        row.name,
                        row.endpoint,
                        row.timeout_ms,
                        row.max_concurrent,
                        row.certificate_org,
                        row.always_ask,
                        row.enabled,
                        row.page_size,
                        row.created_at_us
                    ],
                )
                .map(|_| ())
            })
            .await
    }

    async fn update_creditor(&self, creditor: &Creditor) -> Result<(), StoreError> {
        let row = CreditorRow::from(creditor);
        let changed = self
            .db
            .write(move |c| {
                execute(
                    c,
                    "UPDATE creditors SET name = ?, endpoint = ?, timeout_ms = ?, max_concurrent = ?, \
                     certificate_org = ?, always_ask = ?, enabled = ?, page_size = ? WHERE id = ?",
                    params![
                        row.name,
                        row.endpoint,
                        row.timeout_ms,
                        row.max_concurrent,
                        row.certificate_org,
                        row.always_ask,
                        row.enabled,
                        row.page_size,
                        row.id
                    ],
                )
            })
            .await?;
        found(changed)
    }

    async fn find_creditor(
        &self,
        id: &FinancialInstitutionId,
    ) -> Result<Option<CreditorRecord>, StoreError> {
        self.db
            .read(|c| {
                query_opt(
                    c,
                    "SELECT c.*, d.stored_at_us FROM creditors c \
                     LEFT JOIN debt_deliveries d ON d.creditor_org = c.id WHERE c.id = ?",
                    [id.as_str()],
                    creditor_row,
                )
            })?
            .map(CreditorRecord::try_from)
            .transpose()
    }

    async fn list_creditors(&self) -> Result<Vec<CreditorRecord>, StoreError> {
        self.db
            .read(|c| {
                query_all(
                    c,
                    "SELECT c.*, d.stored_at_us FROM creditors c \
                     LEFT JOIN debt_deliveries d ON d.creditor_org = c.id ORDER BY c.id",
                    [],
                    creditor_row,
                )
            })?
            .into_iter()
            .map(CreditorRecord::try_from)
            .collect()
    }

    async fn delete_creditor(&self, id: &FinancialInstitutionId) -> Result<(), StoreError> {
        let id = id.as_str().to_owned();
        let deleted = self
            .db
            .write(move |c| {
                let n = execute(c, "DELETE FROM creditors WHERE id = ?", [&id])?;
                if n > 0 {
                    execute(c, "DELETE FROM debt_loans WHERE creditor_org = ?", [&id])?;
                    execute(
                        c,
                        "DELETE FROM debt_deliveries WHERE creditor_org = ?",
                        [&id],
                    )?;
                }
                Ok(n)
            })
            .await?;
        found(deleted)
    }

    async fn find_creditors_by_certificate_org(
        &self,
        org: &OrgNumber,
    ) -> Result<Vec<Creditor>, StoreError> {
        self.db
            .read(|c| {
                query_all(
                    c,
                    "SELECT c.*, NULL AS stored_at_us FROM creditors c \
                     WHERE c.certificate_org = ?1 OR (c.certificate_org IS NULL AND c.id = ?1) ORDER BY c.id",
                    [org.as_str()],
                    creditor_row,
                )
            })?
            .into_iter()
            .map(|r| CreditorRecord::try_from(r).map(|r| r.creditor))
            .collect()
    }

    async fn claim_daily_sync(
        &self,
        id: &FinancialInstitutionId,
        day: time::Date,
    ) -> Result<bool, StoreError> {
        let (id, day) = (id.as_str().to_owned(), day_text(day));
        let claimed = self
            .db
            .write(move |c| {
                execute(
                    c,
                    "UPDATE creditors SET claimed_day = ?1 \
                     WHERE id = ?2 AND (claimed_day IS NULL OR claimed_day < ?1)",
                    params![day, id],
                )
            })
            .await?;
        Ok(claimed == 1)
    }

    async fn record_sync_outcome(
        &self,
        id: &FinancialInstitutionId,
        report: &SyncReport,
    ) -> Result<(), StoreError> {
        let id = id.as_str().to_owned();
        let at = unix_micros(report.at);
        let ok = report.outcome == SyncOutcome::Ok;
        let outcome = report.outcome.as_str();
        let size = report.loans.map(|n| i64::try_from(n).unwrap_or(i64::MAX));
        let error = report.error.clone();
        let changed = self
            .db
            .write(move |c| {
                execute(
                    c,
                    "UPDATE creditors SET last_attempt_at_us = ?1, last_outcome = ?2, last_error = ?3, \
                     last_success_at_us = CASE WHEN ?4 THEN ?1 ELSE last_success_at_us END, \
                     last_size = CASE WHEN ?4 THEN ?5 ELSE last_size END, \
                     consecutive_failures = CASE WHEN ?4 THEN 0 ELSE consecutive_failures + 1 END \
                     WHERE id = ?6",
                    params![at, outcome, error, ok, size, id],
                )
            })
            .await?;
        found(changed)
    }

    async fn stage_loans(&self, sync: &SyncId, entries: &[DebtEntry]) -> Result<(), StoreError> {
        let sync = sync.0.clone();
        let rows: Vec<LoanRow> = entries.iter().map(LoanRow::staged).collect();
        self.db
            .write(move |c| {
                for row in &rows {
                    execute(
                        c,
                        "INSERT INTO creditor_sync_loans (sync_id, nin, creditor_org, creditor_name, \
                         provider_id, account_id, loan_json) VALUES (?, ?, ?, ?, ?, ?, ?)",
                        params![
                            sync,
                            row.nin,
                            row.creditor_org,
                            row.creditor_name,
                            row.provider_id,
                            row.account_id,
                            row.loan_json
                        ],
                    )?;
                }
                Ok(())
            })
            .await
    }

    async fn finish_loan_replacement(
        &self,
        sync: &SyncId,
        id: &FinancialInstitutionId,
        provider_id: &ProviderId,
        at: OffsetDateTime,
    ) -> Result<u64, StoreError> {
        let (sync, id, at) = (sync.0.clone(), id.as_str().to_owned(), unix_micros(at));
        let provider = provider_id.as_str().to_owned();
        self.db
            .write(move |c| {
                execute(c, "DELETE FROM debt_loans WHERE creditor_org = ?", [&id])?;
                let n = execute(
                    c,
                    "INSERT INTO debt_loans (nin, creditor_org, creditor_name, provider_id, account_id, loan_json) \
                     SELECT nin, creditor_org, creditor_name, ?, account_id, loan_json \
                     FROM creditor_sync_loans WHERE sync_id = ? AND creditor_org = ? ORDER BY id",
                    params![provider, sync, id],
                )?;
                execute(c, "DELETE FROM creditor_sync_loans WHERE sync_id = ?", [&sync])?;
                set_stored_at(c, &id, at)?;
                Ok(n as u64)
            })
            .await
    }

    async fn abandon_loan_replacement(&self, sync: &SyncId) -> Result<(), StoreError> {
        let sync = sync.0.clone();
        self.db
            .write(move |c| {
                execute(
                    c,
                    "DELETE FROM creditor_sync_loans WHERE sync_id = ?",
                    [&sync],
                )
                .map(|_| ())
            })
            .await
    }

    async fn stored_debt_of(&self, nin: &Nin) -> Result<Vec<StoredCreditorDebt>, StoreError> {
        let rows = self.db.read(|c| {
            query_all(
                c,
                "SELECT l.*, d.stored_at_us, c.name AS registered_name FROM debt_loans l \
                 LEFT JOIN debt_deliveries d ON d.creditor_org = l.creditor_org \
                 LEFT JOIN creditors c ON c.id = l.creditor_org \
                 WHERE l.nin = ? ORDER BY COALESCE(c.name, l.creditor_name), l.creditor_org, l.id",
                [nin.as_str()],
                |r| {
                    Ok((
                        loan_row(r)?,
                        r.get::<_, Option<i64>>("stored_at_us")?,
                        r.get::<_, Option<String>>("registered_name")?,
                    ))
                },
            )
        })?;
        group_stored_debt(rows)
    }

    async fn apply_push(&self, delivery: &Delivery, at: OffsetDateTime) -> Result<u64, StoreError> {
        let customers: Vec<(String, String)> = delivery
            .customers
            .iter()
            .map(|(nin, fi)| (nin.as_str().to_owned(), fi.as_str().to_owned()))
            .collect();
        let (institutions, rows) = samtykke_core::store::delivery_rows(delivery);
        let at = unix_micros(at);
        self.db
            .write(move |c| {
                for (nin, fi) in &customers {
                    execute(
                        c,
                        "DELETE FROM debt_loans WHERE nin = ? AND creditor_org = ?",
                        [nin, fi],
                    )?;
                }
                for row in &rows {
                    insert_loan(c, row)?;
                }
                for fi in &institutions {
                    set_stored_at(c, fi, at)?;
                }
                Ok(rows.len() as u64)
            })
            .await
    }

    async fn end_auth_flow(&self, flow: &AuthFlow) -> Result<bool, StoreError> {
        let flow_id = flow.id.clone();
        let expires_at = flow.expires_at.unix_timestamp();
        self.db
            .write(move |c| finish_flow(c, &flow_id, expires_at))
            .await
    }

    async fn accept_auth_flow(
        &self,
        flow: &AuthFlow,
        consent: &Consent,
        code: &AuthorizationCodeRecord,
        session: &LoginSession,
    ) -> Result<bool, StoreError> {
        let flow_id = flow.id.clone();
        let expires_at = flow.expires_at.unix_timestamp();
        let browser_hash = session.browser_hash.as_bytes().to_vec();
        let session_began = session.created_at_micros();
        let row = ConsentRow::from(consent);
        let created_at = consent.created_at;
        let code = AuthorizationCodeRow::from(code);
        self.db
            .write(move |c| {
                // No logout of the browser may have ended the session.
                if session_ended(c, &browser_hash, session_began)?
                    || !finish_flow(c, &flow_id, expires_at)?
                {
                    return Ok(false);
                }
                if !insert_consent_row(c, &row)? {
                    return Err(StoreError::Conflict("consent id collision".into()));
                }
                insert_event(c, &new_event_row(&row, ConsentEventType::Created, created_at))?;
                execute(
                    c,
                    "INSERT INTO authorization_codes (hash, client_id, redirect_uri, consent_id, scopes, nonce, \
                     code_challenge, issued_at, expires_at, used_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    params![
                        code.hash,
                        code.client_id,
                        code.redirect_uri,
                        code.consent_id,
                        code.scopes,
                        code.nonce,
                        code.code_challenge,
                        code.issued_at,
                        code.expires_at,
                        code.used_at
                    ],
                )?;
                Ok(true)
            })
            .await
    }

    async fn end_login_sessions(&self, session: &LoginSession) -> Result<(), StoreError> {
        let hash = session.browser_hash.as_bytes().to_vec();
        let ended = LoginSessionEnd::of(session);
        self.db
            .write(move |c| {
                execute(
                    c,
                    "INSERT INTO ended_logins (browser_hash, ended_at_us, expires_at) VALUES (?, ?, ?) \
                     ON CONFLICT (browser_hash) DO UPDATE SET \
                     ended_at_us = max(ended_at_us, excluded.ended_at_us), \
                     expires_at = max(expires_at, excluded.expires_at)",
                    params![hash, ended.upto_micros, ended.kept_until],
                )?;
                Ok(())
            })
            .await
    }

    async fn login_session_ended(&self, session: &LoginSession) -> Result<bool, StoreError> {
        let began = session.created_at_micros();
        self.db
            .read(|c| session_ended(c, session.browser_hash.as_bytes(), began))
    }

    async fn claim_authorization_code(
        &self,
        hash: &TokenHash,
        client_id: &ClientId,
        now: OffsetDateTime,
    ) -> Result<Option<CodeClaim>, StoreError> {
        let (hash, client_id) = (hash.as_bytes().to_vec(), client_id.as_str().to_owned());
        let found = self
            .db
            .write(move |c| {
                let Some(code) = query_opt(
                    c,
                    "SELECT * FROM authorization_codes WHERE hash = ?",
                    [&hash],
                    code_row,
                )?
                else {
                    return Ok(None);
                };
                let Some(consent) = query_opt(
                    c,
                    "SELECT * FROM consents WHERE id = ?",
                    [&code.consent_id],
                    consent_row,
                )?
                else {
                    return Ok(None);
                };
                let claimed = code.used_at.is_none()
                    && code.client_id == client_id
                    && execute(
                        c,
                        "UPDATE authorization_codes SET used_at = ? WHERE hash = ? AND used_at IS NULL",
                        params![now.unix_timestamp(), hash],
                    )? == 1;
                Ok(Some((code, consent, claimed)))
            })
            .await?;
        found
            .map(|(code, consent, claimed)| {
                Ok(CodeClaim {
                    code: AuthorizationCodeRecord::try_from(code)?,
                    consent: Consent::try_from(consent)?,
                    claimed,
                })
            })
            .transpose()
    }

    async fn revoke_consent_tokens(&self, consent_id: &ConsentId) -> Result<u64, StoreError> {
        let id = consent_id.to_string();
        self.db
            .write(move |c| {
                execute(
                    c,
                    "UPDATE consents SET tokens_revoked = TRUE WHERE id = ?",
                    [&id],
                )?;
                Ok(execute(
                    c,
                    "UPDATE access_tokens SET revoked = TRUE WHERE consent_id = ? AND NOT revoked",
                    [&id],
                )? as u64)
            })
            .await
    }

    async fn purge_expired_flow_state(&self, now: OffsetDateTime) -> Result<u64, StoreError> {
        let t = now.unix_timestamp();
        self.db
            .write(move |c| {
                let mut total = 0;
                for sql in [
                    "DELETE FROM finished_flows WHERE expires_at < ?",
                    "DELETE FROM ended_logins WHERE expires_at < ?",
                    // Kept a while after expiry, so that a late replay is
                    // still recognised as a replay.
                    "DELETE FROM authorization_codes WHERE expires_at < ? - 3600",
                    "DELETE FROM access_tokens WHERE expires_at < ? - 86400",
                ] {
                    total += execute(c, sql, [t])? as u64;
                }
                Ok(total)
            })
            .await
    }

    async fn server_secret(&self, name: &str, candidate: &[u8]) -> Result<Vec<u8>, StoreError> {
        let (name, candidate) = (name.to_owned(), candidate.to_vec());
        self.db
            .write(move |c| {
                execute(
                    c,
                    "INSERT INTO server_secrets (name, value) VALUES (?, ?) ON CONFLICT (name) DO NOTHING",
                    params![name, candidate],
                )?;
                query_opt(
                    c,
                    "SELECT value FROM server_secrets WHERE name = ?",
                    [&name],
                    |r| r.get::<_, Vec<u8>>(0),
                )?
                .ok_or(StoreError::NotFound)
            })
            .await
    }

    async fn server_secrets_with_prefix(
        &self,
        prefix: &str,
    ) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        self.db.read(|c| {
            query_all(
                c,
                "SELECT name, value FROM server_secrets WHERE substr(name, 1, length(?1)) = ?1",
                [prefix],
                |r| Ok((r.get::<_, String>(0)?, r.get::<_, Vec<u8>>(1)?)),
            )
        })
    }

    async fn list_signing_keys(&self) -> Result<Vec<SigningKey>, StoreError> {
        self.db
            .read(|c| {
                query_all(
                    c,
                    "SELECT kid, private_key_pem, created_at FROM signing_keys ORDER BY seq DESC",
                    [],
                    |r| {
                        Ok((
                            r.get::<_, String>(0)?,
                            r.get::<_, String>(1)?,
                            r.get::<_, i64>(2)?,
                        ))
                    },
                )
            })?
            .into_iter()
            .map(|(kid, pem, created_at)| signing_key_from_row(kid, pem, created_at))
            .collect()
    }

    async fn insert_first_signing_key(&self, key: &SigningKey) -> Result<bool, StoreError> {
        let key = key.clone();
        self.db
            .write(move |c| {
                // One statement under the write lock: check and insert are atomic.
                Ok(execute(
                    c,
                    "INSERT INTO signing_keys (kid, private_key_pem, created_at) \
                     SELECT ?, ?, ? WHERE NOT EXISTS (SELECT 1 FROM signing_keys)",
                    params![
                        key.kid,
                        key.private_key_pem,
                        key.created_at.unix_timestamp()
                    ],
                )? == 1)
            })
            .await
    }

    async fn insert_signing_key(&self, key: &SigningKey) -> Result<(), StoreError> {
        let key = key.clone();
        self.db
            .write(move |c| {
                execute(
                    c,
                    "INSERT INTO signing_keys (kid, private_key_pem, created_at) VALUES (?, ?, ?)",
                    params![
                        key.kid,
                        key.private_key_pem,
                        key.created_at.unix_timestamp()
                    ],
                )?;
                Ok(())
            })
            .await
    }

    async fn bootstrap_sandbox_client(
        &self,
        client: &Client,
        secret: &ClientSecret,
    ) -> Result<SandboxCredentials, StoreError> {
        let row = ClientRow::from(client);
        let secret = secret.expose().to_owned();
        self.db
            .write(move |c| {
                // Only the first start creates the sandbox client; a later
                // one finds the row and keeps what is there.
                let exists = query_opt(c, "SELECT 1 FROM sandbox WHERE singleton = 1", [], |r| {
                    r.get::<_, i64>(0)
                })?;
                if exists.is_none() {
                    insert_client_row(c, &row)?;
                    execute(
                        c,
                        "INSERT INTO sandbox (singleton, client_id, client_secret) VALUES (1, ?, ?)",
                        params![row.id, secret],
                    )?;
                }
                Ok(())
            })
            .await?;
        self.sandbox_credentials()
            .await?
            .ok_or_else(|| StoreError::Unavailable("sandbox client vanished".into()))
    }

    async fn sandbox_credentials(&self) -> Result<Option<SandboxCredentials>, StoreError> {
        self.db
            .read(|c| {
                query_opt(
                    c,
                    "SELECT client_id, client_secret FROM sandbox WHERE singleton = 1",
                    [],
                    |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)),
                )
            })?
            .map(|(id, secret)| sandbox_from_row(id, secret))
            .transpose()
    }

    async fn update_sandbox_secret(&self, secret: &ClientSecret) -> Result<(), StoreError> {
        let secret = secret.expose().to_owned();
        self.db
            .write(move |c| {
                execute(
                    c,
                    "UPDATE sandbox SET client_secret = ? WHERE singleton = 1",
                    [&secret],
                )?;
                Ok(())
            })
            .await
    }

    async fn consents_of_person(
        &self,
        nin: &Nin,
        offset: u64,
        limit: u32,
    ) -> Result<PersonConsents, StoreError> {
        let nin = nin.as_str();
        let offset = i64::try_from(offset).unwrap_or(i64::MAX);
        let (rows, total) = self.db.read(|c| {
            let rows = query_all(
                c,
                "SELECT c.*, (SELECT COUNT(*) FROM consent_usage u WHERE u.consent_id = c.id) AS uses \
                 FROM consents c WHERE c.nin = ? ORDER BY c.created_at DESC, c.id DESC LIMIT ? OFFSET ?",
                params![nin, i64::from(limit), offset],
                |r| Ok((consent_row(r)?, r.get::<_, i64>("uses")?)),
            )?;
            let total = query_opt(c, "SELECT COUNT(*) FROM consents WHERE nin = ?", [nin], |r| {
                r.get::<_, i64>(0)
            })?;
            Ok((rows, total.unwrap_or(0)))
        })?;
        Ok(PersonConsents {
            consents: rows
                .into_iter()
                .map(|(row, uses)| Ok((Consent::try_from(row)?, count(uses))))
                .collect::<Result<_, StoreError>>()?,
            total: count(total),
        })
    }

    async fn person_consent_usage(
        &self,
        nin: &Nin,
        id: &ConsentId,
        offset: u64,
        limit: u32,
    ) -> Result<Option<PersonConsentUsage>, StoreError> {
        let (nin, id) = (nin.as_str(), id.to_string());
        let offset = i64::try_from(offset).unwrap_or(i64::MAX);
        let found = self.db.read(|c| {
            let Some(consent) = query_opt(
                c,
                "SELECT * FROM consents WHERE id = ? AND nin = ?",
                params![id, nin],
                consent_row,
            )?
            else {
                return Ok(None);
            };
            let uses = query_all(
                c,
                "SELECT * FROM consent_usage WHERE consent_id = ? ORDER BY id DESC LIMIT ? OFFSET ?",
                params![id, i64::from(limit), offset],
                usage_row,
            )?;
            let total = query_opt(
                c,
                "SELECT COUNT(*) FROM consent_usage WHERE consent_id = ?",
                [&id],
                |r| r.get::<_, i64>(0),
            )?;
            Ok(Some((consent, uses, total.unwrap_or(0))))
        })?;
        found
            .map(|(consent, uses, total)| {
                Ok(PersonConsentUsage {
                    consent: Consent::try_from(consent)?,
                    uses: uses
                        .into_iter()
                        .map(UsageRecord::try_from)
                        .collect::<Result<_, _>>()?,
                    total: count(total),
                })
            })
            .transpose()
    }

    async fn revoke_consent_of_person(
        &self,
        id: &ConsentId,
        nin: &Nin,
        now: OffsetDateTime,
    ) -> Result<RevokeOutcome, StoreError> {
        let (id, nin) = (id.to_string(), nin.as_str().to_owned());
        self.db
            .write(move |c| revoke(c, &id, Owner::Person(&nin), RevokedBy::Individual, now))
            .await
    }
}

/// Whose consent a revocation must be: the client's (`DELETE
/// /v1/debt/{id}`) or the person's (the portal).
#[derive(Clone, Copy)]
enum Owner<'a> {
    Client(&'a str),
    Person(&'a str),
}

/// Revokes the active consent `id` of `owner` (its event, its tokens), or
/// tells whether it is the owner's at all.
fn revoke(
    c: &Connection,
    id: &str,
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
        "UPDATE consents SET status = 'revoked', revoked_by = ?, ended_at = ?, ended_at_us = ?, \
         tokens_revoked = TRUE \
         WHERE id = ? AND {column} = ? AND status = 'active' AND expires_at > ? RETURNING *"
    );
    let exists = format!("SELECT 1 FROM consents WHERE id = ? AND {column} = ?");
    let t = now.unix_timestamp();
    let revoked = query_opt(
        c,
        &update,
        params![by.as_str(), t, unix_micros(now), id, owner, t],
        consent_row,
    )?;
    if let Some(row) = revoked {
        insert_event(c, &new_event_row(&row, ConsentEventType::Archived, now))?;
        execute(
            c,
            "UPDATE access_tokens SET revoked = TRUE WHERE consent_id = ?",
            [&row.id],
        )?;
        return Ok(RevokeOutcome::Revoked);
    }
    let found = query_opt(c, &exists, params![id, owner], |r| r.get::<_, i64>(0))?;
    Ok(if found.is_some() {
        RevokeOutcome::AlreadyEnded
    } else {
        RevokeOutcome::NotFound
    })
}

/// A row count as SQL gives it (never negative).
fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}
