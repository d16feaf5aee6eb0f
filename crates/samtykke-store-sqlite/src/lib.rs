//! SQLite implementation of [`Store`]: the embedded default engine.
//!
//! One file, WAL journal. `synchronous=NORMAL` in WAL mode keeps every
//! committed transaction across a crash of the server process (`kill -9`);
//! `SAMTYKKE_SQLITE_SYNCHRONOUS=FULL` adds an fsync per commit for power loss.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use samtykke_core::domain::{Client, ClientId, ClientSecret, SecretHash};
use samtykke_core::keys::SigningKey;
use samtykke_core::store::{
    sandbox_from_row, signing_key_from_row, AccessTokenRow, ClientRow, SandboxCredentials, Store,
    StoreError,
};
use samtykke_core::token::{AccessTokenRecord, TokenHash};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::Row;

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
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
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
    };
    AccessTokenRecord::try_from(raw)
}

const INSERT_CLIENT: &str =
    "INSERT INTO clients (id, secret_hash, name, org_number, redirect_uris, \
     purposes, may_create_agreements, may_read_events, disabled, created_at) \
     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";

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
        .bind(row.disabled)
        .bind(row.created_at)
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
        let done = sqlx::query("UPDATE clients SET disabled = ? WHERE id = ?")
            .bind(disabled)
            .bind(id.as_str())
            .execute(&self.pool)
            .await
            .map_err(unavailable)?;
        found(done.rows_affected())
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
        let row = AccessTokenRow::from(token);
        sqlx::query(
            "INSERT INTO access_tokens (hash, client_id, audience, scopes, issued_at, expires_at, revoked) \
             VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&row.hash)
        .bind(&row.client_id)
        .bind(&row.audience)
        .bind(&row.scopes)
        .bind(row.issued_at)
        .bind(row.expires_at)
        .bind(row.revoked)
        .execute(&self.pool)
        .await
        .map_err(unavailable)?;
        Ok(())
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
