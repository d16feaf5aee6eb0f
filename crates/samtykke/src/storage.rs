//! Chooses the storage engine from the database URL.

use std::sync::Arc;

use anyhow::{bail, Context};
use samtykke_core::store::Store;
use samtykke_store_postgres::PostgresStore;
use samtykke_store_sqlite::{SqliteStore, Synchronous};

/// Opens the store named by `url` and applies pending migrations:
/// `postgres://…` / `postgresql://…` for PostgreSQL, `sqlite:PATH` /
/// `sqlite://PATH` for SQLite.
/// SQLite commits with `SAMTYKKE_SQLITE_SYNCHRONOUS` (default NORMAL).
pub async fn open_store(url: &str) -> anyhow::Result<Arc<dyn Store>> {
    Ok(open_store_with(url, None).await?.store)
}

/// An open store and, for SQLite, the `PRAGMA synchronous` its writer
/// connection reports.
pub struct OpenedStore {
    pub store: Arc<dyn Store>,
    pub sqlite_synchronous: Option<Synchronous>,
}

/// [`open_store`] with SQLite's `synchronous` setting given (None: as
/// [`open_store`]); the setting in effect is read back from SQLite.
pub async fn open_store_with(
    url: &str,
    sqlite_synchronous: Option<Synchronous>,
) -> anyhow::Result<OpenedStore> {
    let shown = redact_database_url(url);
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let store = PostgresStore::connect(url)
            .await
            .with_context(|| format!("could not open PostgreSQL database {shown}"))?;
        Ok(OpenedStore {
            store: Arc::new(store),
            sqlite_synchronous: None,
        })
    } else if url.starts_with("sqlite:") {
        let store = match sqlite_synchronous {
            Some(synchronous) => SqliteStore::connect_with(url, synchronous).await,
            None => SqliteStore::connect(url).await,
        }
        .with_context(|| format!("could not open SQLite database {shown}"))?;
        let in_effect = store
            .synchronous()
            .await
            .with_context(|| format!("could not read PRAGMA synchronous of {shown}"))?;
        Ok(OpenedStore {
            store: Arc::new(store),
            sqlite_synchronous: Some(in_effect),
        })
    } else {
        bail!(
            "unsupported database URL {shown}: use sqlite:PATH or postgres://USER@HOST:5432/DATABASE, for example {}",
            suggestion(url)
        )
    }
}

/// Opens the store for an operator command (`client`, `keys`, `debt`): like
/// [`open_store`], but a SQLite file that does not exist is created only
/// when `create` is set, so that a command run in the wrong directory says
/// so instead of writing into a new, empty database.
pub async fn open_operator_store(url: &str, create: bool) -> anyhow::Result<Arc<dyn Store>> {
    if url.starts_with("sqlite:") && !create {
        if let Some(file) = samtykke_store_sqlite::database_file(url)? {
            let directory_exists = file
                .parent()
                .is_none_or(|d| d.as_os_str().is_empty() || d.is_dir());
            // A missing directory is reported by the store, by name.
            if directory_exists && !file.exists() {
                bail!(
                    "no SQLite database at {} ({}): run the command where the server keeps its database, \
                     give the server's --database-url, or add --create to create a new, empty database there",
                    absolute(&file).display(),
                    redact_database_url(url)
                );
            }
        }
    }
    open_store(url).await
}

/// The database a command used, for its output: the URL (password hidden)
/// and, for SQLite, the absolute path of the file.
pub fn describe_database(url: &str) -> String {
    let shown = redact_database_url(url);
    match url
        .starts_with("sqlite:")
        .then(|| samtykke_store_sqlite::database_file(url).ok().flatten())
        .flatten()
    {
        Some(file) => format!("{shown} ({})", absolute(&file).display()),
        None => shown,
    }
}

fn absolute(path: &std::path::Path) -> std::path::PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_owned())
}

/// A database URL like the one given that would work: `sqlite:` in front
/// of what looks like a file name (`samtykke.db` → `sqlite:samtykke.db`),
/// otherwise `sqlite:samtykke.db`.
fn suggestion(url: &str) -> String {
    let looks_like_a_file = !url.is_empty()
        && !url.contains("://")
        && !url.contains('@')
        && !url.contains(char::is_whitespace)
        && (url.ends_with(".db") || url.ends_with(".sqlite") || url.ends_with(".sqlite3"));
    if looks_like_a_file {
        format!("sqlite:{url}")
    } else {
        "sqlite:samtykke.db".to_owned()
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
        Err(_) => redact_unparsed(url),
    }
}

/// A URL that does not parse, echoed with anything that looks like a
/// password (`:…@` after the user name) replaced by `***`.
fn redact_unparsed(url: &str) -> String {
    let Some(at) = url.rfind('@') else {
        return url.to_owned();
    };
    let (credentials, rest) = url.split_at(at);
    let user_start = credentials.find("//").map_or(0, |i| i + 2);
    match credentials[user_start..].find(':') {
        Some(colon) => format!("{}:***{rest}", &credentials[..user_start + colon]),
        None => url.to_owned(),
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
        assert_eq!(
            redact_database_url("postgres//app:s3cret@db.example/samtykke"),
            "postgres//app:***@db.example/samtykke"
        );
        assert_eq!(redact_database_url("samtykke.db"), "samtykke.db");
    }

    #[test]
    fn a_file_name_without_a_scheme_gets_sqlite_in_front() {
        assert_eq!(suggestion("samtykke.db"), "sqlite:samtykke.db");
        assert_eq!(suggestion("data/app.sqlite"), "sqlite:data/app.sqlite");
        assert_eq!(suggestion("mysql://localhost/x"), "sqlite:samtykke.db");
        assert_eq!(suggestion(""), "sqlite:samtykke.db");
    }
}
