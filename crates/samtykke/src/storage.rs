//! Chooses the storage engine from the database URL.

use std::sync::Arc;

use anyhow::{bail, Context};
use samtykke_core::store::Store;
use samtykke_store_postgres::PostgresStore;
use samtykke_store_sqlite::SqliteStore;

/// Opens the store named by `url` and applies pending migrations:
/// `postgres://…` / `postgresql://…` for PostgreSQL, `sqlite:PATH` /
/// `sqlite://PATH` for SQLite.
pub async fn open_store(url: &str) -> anyhow::Result<Arc<dyn Store>> {
    let shown = redact_database_url(url);
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let store = PostgresStore::connect(url)
            .await
            .with_context(|| format!("could not open PostgreSQL database {shown}"))?;
        Ok(Arc::new(store))
    } else if url.starts_with("sqlite:") {
        let store = SqliteStore::connect(url)
            .await
            .with_context(|| format!("could not open SQLite database {shown}"))?;
        Ok(Arc::new(store))
    } else {
        bail!("unsupported database URL {shown}: use sqlite:PATH or postgres://…")
    }
}

/// The URL with any password replaced by `***`, for logs and messages.
pub fn redact_database_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        Ok(_) => url.to_owned(),
        Err(_) => "<unparseable URL>".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact_database_url("postgres://app:s3cret@db.example/samtykke"),
            "postgres://app:***@db.example/samtykke"
        );
        assert_eq!(
            redact_database_url("sqlite://samtykke.db"),
            "sqlite://samtykke.db"
        );
    }
}
