//! `samtykke keys rotate|list`.

use std::io::Write;

use clap::Subcommand;
use samtykke_core::keys::PUBLISHED_KEYS;
use samtykke_core::store::Store;
use samtykke_core::SystemClock;
use time::format_description::well_known::Rfc3339;

use crate::startup::generate_signing_key;

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Add a new active signing key; the previous one stays published
    Rotate,
    /// List the signing keys, newest first
    List,
}

pub async fn run(
    store: &dyn Store,
    command: KeysCommand,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    match command {
        KeysCommand::Rotate => {
            let key = generate_signing_key(&SystemClock).await?;
            store.insert_signing_key(&key).await?;
            writeln!(out, "new active signing key {}", key.kid)?;
        }
        KeysCommand::List => {
            writeln!(out, "{:<34} {:<10} CREATED", "KID", "STATUS")?;
            for (i, key) in store.list_signing_keys().await?.iter().enumerate() {
                let status = match i {
                    0 => "active",
                    i if i < PUBLISHED_KEYS => "published",
                    _ => "retired",
                };
                let created = key.created_at.format(&Rfc3339).unwrap_or_default();
                writeln!(out, "{:<34} {:<10} {created}", key.kid, status)?;
            }
        }
    }
    Ok(())
}
