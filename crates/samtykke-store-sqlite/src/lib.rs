//! SQLite implementation of [`Store`]: the embedded default engine.
//!
//! One file, WAL journal. `synchronous=NORMAL` in WAL mode keeps every
//! committed transaction across a crash of the server process (`kill -9`);
//! `SAMTYKKE_SQLITE_SYNCHRONOUS=FULL` adds an fsync per commit for power loss.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use samtykke_core::consent::{
    Consent, ConsentEvent, ConsentEventType, ConsentId, RevokedBy, UsageRecord,
};
use samtykke_core::debt::{DebtEntry, Delivery};
use samtykke_core::domain::{Client, ClientId, ClientSecret, Nin, SecretHash};
use samtykke_core::flow::{AuthFlow, LoginSession};
use samtykke_core::grant::authorization_code::AuthorizationCodeRecord;
use samtykke_core::keys::SigningKey;
use samtykke_core::store::{
    new_event_row, sandbox_from_row, signing_key_from_row, unix_micros, AccessTokenRow,
    AuthFlowRow, AuthorizationCodeRow, ClientRow, ConsentEventRow, ConsentInsert, ConsentRow,
    LoanRow, LoginSessionRow, PoolStats, RevokeOutcome, SandboxCredentials, Store, StoreError,
    UsageRow,
};
use samtykke_core::token::{AccessTokenRecord, TokenHash};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{Row, SqliteConnection};
use time::OffsetDateTime;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// The SQLite store.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
}

fn unavailable(e: sqlx::Error) -> StoreError {
    match &e {
        sqlx::Error::Database(db) if db.is_unique_violation() => {
            StoreError::Conflict(db.message().to_owned())
        }
        _ => StoreError::Unavailable(e.to_string()),
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `url` (`sqlite:path` or
    /// `sqlite://path`) and applies pending migrations.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let synchronous = match std::env::var("SAMTYKKE_SQLITE_SYNCHRONOUS").as_deref() {
            Ok("FULL") | Ok("full") => SqliteSynchronous::Full,
            _ => SqliteSynchronous::Normal,
        };
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|e| StoreError::Unavailable(format!("bad SQLite URL: {e}")))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(synchronous)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        let max = std::env::var("SAMTYKKE_SQLITE_POOL_SIZE")
            .ok()
            .and_then(|v| v.parse::<u32>().ok())
            .filter(|n| *n > 0)
            .unwrap_or(8);
        let pool = SqlitePoolOptions::new()
            .max_connections(max)
            // An embedded database has no connection to lose: the ping
            // before every acquire is one more thread hand-off per query.
            .test_before_acquire(false)
            .connect_with(options)
            .await
            .map_err(unavailable)?;
        migrate(&pool).await?;
        Ok(Self { pool })
    }
}

/// SQLite has no advisory lock, so two processes opening a new file at once
/// may both try to apply the same migration; the loser retries and then finds
/// it applied.
async fn migrate(pool: &SqlitePool) -> Result<(), StoreError> {
    let mut attempt = 0;
    loop {
        match MIGRATOR.run(pool).await {
            Ok(()) => return Ok(()),
            Err(e) if attempt < 5 => {
                attempt += 1;
                tracing::debug!(error = %e, attempt, "migration raced another process; retrying");
                tokio::time::sleep(Duration::from_millis(50 * attempt)).await;
            }
            Err(e) => return Err(StoreError::Unavailable(format!("migration failed: {e}"))),
        }
    }
}

impl SqliteStore {
    /// A write transaction that takes SQLite's write lock at once, so that two
    /// writers never deadlock upgrading from a read lock.
    async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>, StoreError> {
        self.pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(unavailable)
    }
}

/// Feed order = commit order: SQLite has one writer at a time, so the
/// autoincrement key already grows in commit order.
async fn insert_event(conn: &mut SqliteConnection, e: &ConsentEventRow) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO consent_events (event_id, event_type, client_id, consent_id, purpose, client_consent_id, created_at_us) \
         VALUES (?, ?, ?, ?, ?, ?, ?)",
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

fn consent_row(row: &SqliteRow) -> Result<ConsentRow, StoreError> {
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
    })
}

fn event_from_row(row: &SqliteRow) -> Result<ConsentEvent, StoreError> {
    ConsentEvent::try_from(ConsentEventRow {
        sequence_nr: row.try_get("sequence_nr").map_err(unavailable)?,
        event_id: row.try_get("event_id").map_err(unavailable)?,
        event_type: row.try_get("event_type").map_err(unavailable)?,
        client_id: row.try_get("client_id").map_err(unavailable)?,
        consent_id: row.try_get("consent_id").map_err(unavailable)?,
        purpose: row.try_get("purpose").map_err(unavailable)?,
        client_consent_id: row.try_get("client_consent_id").map_err(unavailable)?,
        created_at_us: row.try_get("created_at_us").map_err(unavailable)?,
    })
}

async fn insert_usage(conn: &mut SqliteConnection, u: &UsageRow) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO consent_usage (consent_id, client_id, used_at_us, purpose, trace_id) VALUES (?, ?, ?, ?, ?)",
    )
    .bind(&u.consent_id)
    .bind(&u.client_id)
    .bind(u.used_at_us)
    .bind(&u.purpose)
    .bind(&u.trace_id)
    .execute(conn)
    .await
    .map_err(unavailable)?;
    Ok(())
}

fn client_from_row(row: &SqliteRow) -> Result<Client, StoreError> {
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
    };
    Client::try_from(raw)
}

fn token_from_row(row: &SqliteRow) -> Result<AccessTokenRecord, StoreError> {
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
     purposes, may_create_agreements, may_read_events, require_pkce, disabled, created_at) \
     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";

fn insert_client_query(
    row: &ClientRow,
) -> sqlx::query::Query<'_, sqlx::Sqlite, sqlx::sqlite::SqliteArguments<'_>> {
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
}

fn flow_from_row(row: &SqliteRow) -> Result<AuthFlow, StoreError> {
    AuthFlow::try_from(AuthFlowRow {
        id: row.try_get("id").map_err(unavailable)?,
        browser_hash: row.try_get("browser_hash").map_err(unavailable)?,
        client_id: row.try_get("client_id").map_err(unavailable)?,
        redirect_uri: row.try_get("redirect_uri").map_err(unavailable)?,
        purpose: row.try_get("purpose").map_err(unavailable)?,
        duration_days: row.try_get("duration_days").map_err(unavailable)?,
        openid: row.try_get("openid").map_err(unavailable)?,
        state: row.try_get("state").map_err(unavailable)?,
        nonce: row.try_get("nonce").map_err(unavailable)?,
        code_challenge: row.try_get("code_challenge").map_err(unavailable)?,
        locale: row.try_get("locale").map_err(unavailable)?,
        stage: row.try_get("stage").map_err(unavailable)?,
        nin: row.try_get("nin").map_err(unavailable)?,
        created_at: row.try_get("created_at").map_err(unavailable)?,
        expires_at: row.try_get("expires_at").map_err(unavailable)?,
    })
}

fn code_from_row(row: &SqliteRow) -> Result<AuthorizationCodeRecord, StoreError> {
    AuthorizationCodeRecord::try_from(AuthorizationCodeRow {
        hash: row.try_get("hash").map_err(unavailable)?,
        client_id: row.try_get("client_id").map_err(unavailable)?,
        redirect_uri: row.try_get("redirect_uri").map_err(unavailable)?,
        consent_id: row.try_get("consent_id").map_err(unavailable)?,
        scopes: row.try_get("scopes").map_err(unavailable)?,
        nonce: row.try_get("nonce").map_err(unavailable)?,
        code_challenge: row.try_get("code_challenge").map_err(unavailable)?,
        issued_at: row.try_get("issued_at").map_err(unavailable)?,
        expires_at: row.try_get("expires_at").map_err(unavailable)?,
        used_at: row.try_get("used_at").map_err(unavailable)?,
    })
}

/// Inserts or replaces the browser's login session.
async fn upsert_login_session(
    conn: &mut SqliteConnection,
    session: &LoginSession,
) -> Result<(), StoreError> {
    let row = LoginSessionRow::from(session);
    sqlx::query(
        "INSERT INTO login_sessions (browser_hash, nin, created_at, expires_at) VALUES (?, ?, ?, ?) \
         ON CONFLICT (browser_hash) DO UPDATE SET nin = excluded.nin, \
         created_at = excluded.created_at, expires_at = excluded.expires_at",
    )
    .bind(&row.browser_hash)
    .bind(&row.nin)
    .bind(row.created_at)
    .bind(row.expires_at)
    .execute(conn)
    .await
    .map_err(unavailable)?;
    Ok(())
}

/// Inserts a consent row; false if it collided (same id or same
/// client_consent_id).
async fn insert_consent_row(
    conn: &mut SqliteConnection,
    row: &ConsentRow,
) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "INSERT INTO consents (id, client_id, nin, purpose, kind, duration_days, client_consent_id, \
         created_at, expires_at, status, revoked_by, ended_at) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
    )
    .bind(&row.id)
    .bind(&row.client_id)
    .bind(&row.nin)
    .bind(&row.purpose)
    .bind(&row.kind)
    .bind(row.duration_days)
    .bind(&row.client_consent_id)
    .bind(row.created_at)
    .bind(row.expires_at)
    .bind(&row.status)
    .bind(&row.revoked_by)
    .bind(row.ended_at)
    .execute(conn)
    .await
    .map_err(unavailable)?;
    Ok(done.rows_affected() == 1)
}

async fn insert_token(
    conn: &mut SqliteConnection,
    token: &AccessTokenRecord,
) -> Result<(), StoreError> {
    let row = AccessTokenRow::from(token);
    sqlx::query(
        "INSERT INTO access_tokens (hash, client_id, audience, scopes, issued_at, expires_at, revoked, consent_id) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
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
impl Store for SqliteStore {
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
        sqlx::query("SELECT * FROM clients WHERE id = ?")
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
        let done = sqlx::query("UPDATE clients SET secret_hash = ? WHERE id = ?")
            .bind(hash.as_bytes())
            .bind(id.as_str())
            .execute(&self.pool)
            .await
            .map_err(unavailable)?;
        found(done.rows_affected())
    }

    async fn set_client_disabled(&self, id: &ClientId, disabled: bool) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        let done = sqlx::query("UPDATE clients SET disabled = ? WHERE id = ?")
            .bind(disabled)
            .bind(id.as_str())
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?;
        found(done.rows_affected())?;
        if disabled {
            sqlx::query("UPDATE access_tokens SET revoked = TRUE WHERE client_id = ?")
                .bind(id.as_str())
                .execute(&mut *tx)
                .await
                .map_err(unavailable)?;
        }
        tx.commit().await.map_err(unavailable)
    }

    async fn delete_client(&self, id: &ClientId) -> Result<(), StoreError> {
        let done = sqlx::query("DELETE FROM clients WHERE id = ?")
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
        sqlx::query("SELECT * FROM access_tokens WHERE hash = ?")
            .bind(hash.as_bytes())
            .fetch_optional(&self.pool)
            .await
            .map_err(unavailable)?
            .as_ref()
            .map(token_from_row)
            .transpose()
    }

    async fn revoke_access_token(&self, hash: &TokenHash) -> Result<bool, StoreError> {
        let done = sqlx::query("UPDATE access_tokens SET revoked = 1 WHERE hash = ?")
            .bind(hash.as_bytes())
            .execute(&self.pool)
            .await
            .map_err(unavailable)?;
        Ok(done.rows_affected() > 0)
    }

    async fn insert_consent(&self, consent: &Consent) -> Result<ConsentInsert, StoreError> {
        let row = ConsentRow::from(consent);
        let mut tx = self.begin_write().await?;
        let inserted = insert_consent_row(&mut tx, &row).await?;
        if !inserted {
            let existing =
                sqlx::query("SELECT * FROM consents WHERE client_id = ? AND client_consent_id = ?")
                    .bind(&row.client_id)
                    .bind(&row.client_consent_id)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(unavailable)?
                    .ok_or_else(|| StoreError::Conflict("consent id collision".into()))?;
            tx.rollback().await.map_err(unavailable)?;
            return Ok(ConsentInsert::Existing(Consent::try_from(consent_row(
                &existing,
            )?)?));
        }
        let event = new_event_row(&row, ConsentEventType::Created, consent.created_at);
        insert_event(&mut tx, &event).await?;
        tx.commit().await.map_err(unavailable)?;
        Ok(ConsentInsert::Created)
    }

    async fn find_consent(&self, id: &ConsentId) -> Result<Option<Consent>, StoreError> {
        sqlx::query("SELECT * FROM consents WHERE id = ?")
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await
            .map_err(unavailable)?
            .map(|r| Consent::try_from(consent_row(&r)?))
            .transpose()
    }

    async fn use_consent(
        &self,
        id: &ConsentId,
        usage: &UsageRecord,
    ) -> Result<Option<Consent>, StoreError> {
        let now = usage.used_at.unix_timestamp();
        let mut tx = self.begin_write().await?;
        // The conditional update is the atomic check: a single-use consent
        // leaves 'active' here, so a concurrent use finds nothing to update.
        let before = sqlx::query(
            "UPDATE consents SET \
               status = CASE WHEN duration_days = 0 THEN 'consumed' ELSE status END, \
               ended_at = CASE WHEN duration_days = 0 THEN ? ELSE ended_at END \
             WHERE id = ? AND client_id = ? AND status = 'active' AND expires_at > ? \
             RETURNING *",
        )
        .bind(now)
        .bind(id.to_string())
        .bind(usage.client_id.as_str())
        .bind(now)
        .fetch_optional(&mut *tx)
        .await
        .map_err(unavailable)?;
        let Some(row) = before else {
            tx.rollback().await.map_err(unavailable)?;
            return Ok(None);
        };
        let mut row = consent_row(&row)?;
        insert_usage(&mut tx, &UsageRow::from(usage)).await?;
        if row.duration_days == 0 {
            insert_event(
                &mut tx,
                &new_event_row(&row, ConsentEventType::Archived, usage.used_at),
            )
            .await?;
            // Report the consent as it was when it was used.
            row.status = "active".into();
            row.ended_at = None;
        }
        tx.commit().await.map_err(unavailable)?;
        Consent::try_from(row).map(Some)
    }

    async fn revoke_consent(
        &self,
        id: &ConsentId,
        client_id: &ClientId,
        by: RevokedBy,
        now: OffsetDateTime,
    ) -> Result<RevokeOutcome, StoreError> {
        let mut tx = self.begin_write().await?;
        let revoked = sqlx::query(
            "UPDATE consents SET status = 'revoked', revoked_by = ?, ended_at = ? \
             WHERE id = ? AND client_id = ? AND status = 'active' AND expires_at > ? RETURNING *",
        )
        .bind(by.as_str())
        .bind(now.unix_timestamp())
        .bind(id.to_string())
        .bind(client_id.as_str())
        .bind(now.unix_timestamp())
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
                sqlx::query("UPDATE access_tokens SET revoked = TRUE WHERE consent_id = ?")
                    .bind(&row.id)
                    .execute(&mut *tx)
                    .await
                    .map_err(unavailable)?;
                RevokeOutcome::Revoked
            }
            None => {
                let exists = sqlx::query("SELECT 1 FROM consents WHERE id = ? AND client_id = ?")
                    .bind(id.to_string())
                    .bind(client_id.as_str())
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(unavailable)?;
                if exists.is_some() {
                    RevokeOutcome::AlreadyEnded
                } else {
                    RevokeOutcome::NotFound
                }
            }
        };
        tx.commit().await.map_err(unavailable)?;
        Ok(outcome)
    }

    async fn consent_usage(&self, id: &ConsentId) -> Result<Vec<UsageRecord>, StoreError> {
        sqlx::query("SELECT * FROM consent_usage WHERE consent_id = ? ORDER BY id")
            .bind(id.to_string())
            .fetch_all(&self.pool)
            .await
            .map_err(unavailable)?
            .iter()
            .map(|r| {
                UsageRecord::try_from(UsageRow {
                    consent_id: r.try_get("consent_id").map_err(unavailable)?,
                    client_id: r.try_get("client_id").map_err(unavailable)?,
                    used_at_us: r.try_get("used_at_us").map_err(unavailable)?,
                    purpose: r.try_get("purpose").map_err(unavailable)?,
                    trace_id: r.try_get("trace_id").map_err(unavailable)?,
                })
            })
            .collect()
    }

    async fn expire_consents(&self, now: OffsetDateTime, batch: u32) -> Result<u64, StoreError> {
        let mut tx = self.begin_write().await?;
        let rows = sqlx::query(
            "UPDATE consents SET status = 'expired', ended_at = expires_at \
             WHERE id IN (SELECT id FROM consents WHERE status = 'active' AND expires_at <= ? \
                          ORDER BY expires_at LIMIT ?) \
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
        sqlx::query(
            "SELECT * FROM consent_events WHERE client_id = ? AND sequence_nr >= ? ORDER BY sequence_nr LIMIT ?",
        )
        .bind(client_id.as_str())
        .bind(from)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(unavailable)?
        .iter()
        .map(event_from_row)
        .collect()
    }

    async fn consent_event_bounds(
        &self,
        client_id: &ClientId,
    ) -> Result<Option<(i64, i64)>, StoreError> {
        let row = sqlx::query(
            "SELECT MIN(sequence_nr) AS first, MAX(sequence_nr) AS last FROM consent_events WHERE client_id = ?",
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
        let done = sqlx::query("DELETE FROM consent_events WHERE created_at_us < ?")
            .bind(unix_micros(before))
            .execute(&self.pool)
            .await
            .map_err(unavailable)?;
        Ok(done.rows_affected())
    }

    async fn import_delivery(&self, delivery: &Delivery) -> Result<u64, StoreError> {
        let mut tx = self.begin_write().await?;
        for fi in &delivery.financial_institutions {
            sqlx::query("DELETE FROM debt_loans WHERE creditor_org = ?")
                .bind(fi.as_str())
                .execute(&mut *tx)
                .await
                .map_err(unavailable)?;
        }
        for entry in &delivery.entries {
            let row = LoanRow::from_entry(entry, &delivery.provider_id);
            sqlx::query(
                "INSERT INTO debt_loans (nin, creditor_org, creditor_name, provider_id, account_id, loan_json) \
                 VALUES (?, ?, ?, ?, ?, ?)",
            )
            .bind(&row.nin)
            .bind(&row.creditor_org)
            .bind(&row.creditor_name)
            .bind(&row.provider_id)
            .bind(&row.account_id)
            .bind(&row.loan_json)
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?;
        }
        tx.commit().await.map_err(unavailable)?;
        Ok(delivery.entries.len() as u64)
    }

    async fn debt_of(&self, nin: &Nin) -> Result<Vec<DebtEntry>, StoreError> {
        sqlx::query(
            "SELECT * FROM debt_loans WHERE nin = ? ORDER BY creditor_name, creditor_org, id",
        )
        .bind(nin.as_str())
        .fetch_all(&self.pool)
        .await
        .map_err(unavailable)?
        .iter()
        .map(|r| {
            DebtEntry::try_from(LoanRow {
                nin: r.try_get("nin").map_err(unavailable)?,
                creditor_org: r.try_get("creditor_org").map_err(unavailable)?,
                creditor_name: r.try_get("creditor_name").map_err(unavailable)?,
                provider_id: r.try_get("provider_id").map_err(unavailable)?,
                account_id: r.try_get("account_id").map_err(unavailable)?,
                loan_json: r.try_get("loan_json").map_err(unavailable)?,
            })
        })
        .collect()
    }

    async fn insert_auth_flow(&self, flow: &AuthFlow) -> Result<(), StoreError> {
        let r = AuthFlowRow::from(flow);
        sqlx::query(
            "INSERT INTO authorization_flows (id, browser_hash, client_id, redirect_uri, purpose, \
             duration_days, openid, state, nonce, code_challenge, locale, stage, nin, created_at, expires_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&r.id)
        .bind(&r.browser_hash)
        .bind(&r.client_id)
        .bind(&r.redirect_uri)
        .bind(&r.purpose)
        .bind(r.duration_days)
        .bind(r.openid)
        .bind(&r.state)
        .bind(&r.nonce)
        .bind(&r.code_challenge)
        .bind(&r.locale)
        .bind(&r.stage)
        .bind(&r.nin)
        .bind(r.created_at)
        .bind(r.expires_at)
        .execute(&self.pool)
        .await
        .map_err(unavailable)?;
        Ok(())
    }

    async fn find_auth_flow(&self, id: &str) -> Result<Option<AuthFlow>, StoreError> {
        sqlx::query("SELECT * FROM authorization_flows WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(unavailable)?
            .as_ref()
            .map(flow_from_row)
            .transpose()
    }

    async fn record_login(
        &self,
        flow_id: &str,
        session: &LoginSession,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let moved = sqlx::query(
            "UPDATE authorization_flows SET stage = 'consent', nin = ? WHERE id = ? AND stage = 'login'",
        )
        .bind(session.nin.as_str())
        .bind(flow_id)
        .execute(&mut *tx)
        .await
        .map_err(unavailable)?
        .rows_affected()
            == 1;
        if moved {
            upsert_login_session(&mut tx, session).await?;
        }
        tx.commit().await.map_err(unavailable)?;
        Ok(moved)
    }

    async fn end_auth_flow(&self, flow_id: &str) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE authorization_flows SET stage = 'done' WHERE id = ? AND stage <> 'done'",
        )
        .bind(flow_id)
        .execute(&self.pool)
        .await
        .map_err(unavailable)?;
        Ok(done.rows_affected() == 1)
    }

    async fn accept_auth_flow(
        &self,
        flow_id: &str,
        consent: &Consent,
        code: &AuthorizationCodeRecord,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let moved = sqlx::query(
            "UPDATE authorization_flows SET stage = 'done' WHERE id = ? AND stage = 'consent'",
        )
        .bind(flow_id)
        .execute(&mut *tx)
        .await
        .map_err(unavailable)?
        .rows_affected()
            == 1;
        if !moved {
            tx.rollback().await.map_err(unavailable)?;
            return Ok(false);
        }
        let row = ConsentRow::from(consent);
        if !insert_consent_row(&mut tx, &row).await? {
            return Err(StoreError::Conflict("consent id collision".into()));
        }
        insert_event(
            &mut tx,
            &new_event_row(&row, ConsentEventType::Created, consent.created_at),
        )
        .await?;
        let c = AuthorizationCodeRow::from(code);
        sqlx::query(
            "INSERT INTO authorization_codes (hash, client_id, redirect_uri, consent_id, scopes, nonce, \
             code_challenge, issued_at, expires_at, used_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&c.hash)
        .bind(&c.client_id)
        .bind(&c.redirect_uri)
        .bind(&c.consent_id)
        .bind(&c.scopes)
        .bind(&c.nonce)
        .bind(&c.code_challenge)
        .bind(c.issued_at)
        .bind(c.expires_at)
        .bind(c.used_at)
        .execute(&mut *tx)
        .await
        .map_err(unavailable)?;
        tx.commit().await.map_err(unavailable)?;
        Ok(true)
    }

    async fn find_login_session(
        &self,
        browser_hash: &TokenHash,
    ) -> Result<Option<LoginSession>, StoreError> {
        let row = sqlx::query("SELECT * FROM login_sessions WHERE browser_hash = ?")
            .bind(browser_hash.as_bytes())
            .fetch_optional(&self.pool)
            .await
            .map_err(unavailable)?;
        row.map(|row| -> Result<LoginSession, StoreError> {
            LoginSession::try_from(LoginSessionRow {
                browser_hash: row.try_get("browser_hash").map_err(unavailable)?,
                nin: row.try_get("nin").map_err(unavailable)?,
                created_at: row.try_get("created_at").map_err(unavailable)?,
                expires_at: row.try_get("expires_at").map_err(unavailable)?,
            })
        })
        .transpose()
    }

    async fn delete_login_session(&self, browser_hash: &TokenHash) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let deleted = sqlx::query("DELETE FROM login_sessions WHERE browser_hash = ?")
            .bind(browser_hash.as_bytes())
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?
            .rows_affected();
        sqlx::query(
            "UPDATE authorization_flows SET stage = 'done' WHERE browser_hash = ? AND stage <> 'done'",
        )
        .bind(browser_hash.as_bytes())
        .execute(&mut *tx)
        .await
        .map_err(unavailable)?;
        tx.commit().await.map_err(unavailable)?;
        Ok(deleted > 0)
    }

    async fn find_authorization_code(
        &self,
        hash: &TokenHash,
    ) -> Result<Option<AuthorizationCodeRecord>, StoreError> {
        sqlx::query("SELECT * FROM authorization_codes WHERE hash = ?")
            .bind(hash.as_bytes())
            .fetch_optional(&self.pool)
            .await
            .map_err(unavailable)?
            .as_ref()
            .map(code_from_row)
            .transpose()
    }

    async fn redeem_authorization_code(
        &self,
        hash: &TokenHash,
        token: &AccessTokenRecord,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let claimed = sqlx::query(
            "UPDATE authorization_codes SET used_at = ? WHERE hash = ? AND used_at IS NULL RETURNING consent_id",
        )
        .bind(now.unix_timestamp())
        .bind(hash.as_bytes())
        .fetch_optional(&mut *tx)
        .await
        .map_err(unavailable)?;
        if claimed.is_some() {
            insert_token(&mut tx, token).await?;
            tx.commit().await.map_err(unavailable)?;
            return Ok(true);
        }
        sqlx::query(
            "UPDATE access_tokens SET revoked = TRUE WHERE consent_id = \
             (SELECT consent_id FROM authorization_codes WHERE hash = ?)",
        )
        .bind(hash.as_bytes())
        .execute(&mut *tx)
        .await
        .map_err(unavailable)?;
        tx.commit().await.map_err(unavailable)?;
        Ok(false)
    }

    async fn revoke_consent_tokens(&self, consent_id: &ConsentId) -> Result<u64, StoreError> {
        let done = sqlx::query(
            "UPDATE access_tokens SET revoked = TRUE WHERE consent_id = ? AND NOT revoked",
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
        for sql in [
            "DELETE FROM authorization_flows WHERE expires_at < ?",
            "DELETE FROM login_sessions WHERE expires_at < ?",
            // Kept a while after expiry, so that a late replay is still
            // recognised as a replay.
            "DELETE FROM authorization_codes WHERE expires_at < ? - 3600",
            "DELETE FROM access_tokens WHERE expires_at < ? - 86400",
        ] {
            total += sqlx::query(sql)
                .bind(t)
                .execute(&self.pool)
                .await
                .map_err(unavailable)?
                .rows_affected();
        }
        Ok(total)
    }

    async fn server_secret(&self, name: &str, candidate: &[u8]) -> Result<Vec<u8>, StoreError> {
        sqlx::query(
            "INSERT INTO server_secrets (name, value) VALUES (?, ?) ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(candidate)
        .execute(&self.pool)
        .await
        .map_err(unavailable)?;
        let row = sqlx::query("SELECT value FROM server_secrets WHERE name = ?")
            .bind(name)
            .fetch_one(&self.pool)
            .await
            .map_err(unavailable)?;
        row.try_get("value").map_err(unavailable)
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
        // One statement: SQLite's write lock makes the check and insert atomic.
        let done = sqlx::query(
            "INSERT INTO signing_keys (kid, private_key_pem, created_at) \
             SELECT ?, ?, ? WHERE NOT EXISTS (SELECT 1 FROM signing_keys)",
        )
        .bind(&key.kid)
        .bind(&key.private_key_pem)
        .bind(key.created_at.unix_timestamp())
        .execute(&self.pool)
        .await
        .map_err(unavailable)?;
        Ok(done.rows_affected() == 1)
    }

    async fn insert_signing_key(&self, key: &SigningKey) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO signing_keys (kid, private_key_pem, created_at) VALUES (?, ?, ?)")
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
            "INSERT INTO sandbox (singleton, client_id, client_secret) VALUES (1, ?, ?) \
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
        sqlx::query("UPDATE sandbox SET client_secret = ? WHERE singleton = 1")
            .bind(secret.expose())
            .execute(&self.pool)
            .await
            .map_err(unavailable)?;
        Ok(())
    }
}
