//! PostgreSQL implementation of [`Store`]: the production engine. Several
//! server processes may share one database; every cross-process race is
//! settled inside PostgreSQL (constraints, `ON CONFLICT`, advisory locks).

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
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::Row;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// The PostgreSQL store.
#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: PgPool,
}

/// Advisory-lock key that serialises creation of the first signing key.
const FIRST_KEY_LOCK: i64 = 0x5341_4d54_4b01;

fn unavailable(e: sqlx::Error) -> StoreError {
    match &e {
        sqlx::Error::Database(db) if db.is_unique_violation() => {
            StoreError::Conflict(db.message().to_owned())
        }
        _ => StoreError::Unavailable(e.to_string()),
    }
}

impl PostgresStore {
    /// Connects to `url` (`postgres://…`) and applies pending migrations (the
    /// migrator holds an advisory lock, so processes starting together are safe).
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let options = PgConnectOptions::from_str(url)
            .map_err(|_| StoreError::Unavailable("bad PostgreSQL URL".into()))?;
        let max = std::env::var("SAMTYKKE_PG_POOL_SIZE")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(16);
        let pool = PgPoolOptions::new()
            .max_connections(max)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(options)
            .await
            .map_err(unavailable)?;
        MIGRATOR
            .run(&pool)
            .await
            .map_err(|e| StoreError::Unavailable(format!("migration failed: {e}")))?;
        Ok(Self { pool })
    }
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
        disabled: row.try_get("disabled").map_err(unavailable)?,
        created_at: row.try_get("created_at").map_err(unavailable)?,
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
    };
    AccessTokenRecord::try_from(raw)
}

const INSERT_CLIENT: &str =
    "INSERT INTO clients (id, secret_hash, name, org_number, redirect_uris, \
     purposes, may_create_agreements, may_read_events, disabled, created_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)";

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
impl Store for PostgresStore {
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
        let done = sqlx::query("UPDATE clients SET disabled = $1 WHERE id = $2")
            .bind(disabled)
            .bind(id.as_str())
            .execute(&self.pool)
            .await
            .map_err(unavailable)?;
        found(done.rows_affected())
    }

    async fn delete_client(&self, id: &ClientId) -> Result<(), StoreError> {
        let done = sqlx::query("DELETE FROM clients WHERE id = $1")
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
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
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
        sqlx::query("SELECT * FROM access_tokens WHERE hash = $1")
            .bind(hash.as_bytes())
            .fetch_optional(&self.pool)
            .await
            .map_err(unavailable)?
            .as_ref()
            .map(token_from_row)
            .transpose()
    }

    async fn revoke_access_token(&self, hash: &TokenHash) -> Result<bool, StoreError> {
        let done = sqlx::query("UPDATE access_tokens SET revoked = TRUE WHERE hash = $1")
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
