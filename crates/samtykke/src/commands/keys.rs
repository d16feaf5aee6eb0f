//! `samtykke keys rotate|list`.

use std::io::Write;

use clap::{Subcommand, ValueEnum};
use samtykke_core::keys::PUBLISHED_KEYS;
use samtykke_core::store::Store;
use samtykke_core::SystemClock;
use time::format_description::well_known::Rfc3339;

use crate::startup::generate_signing_key;

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Add a new active ID-token signing key (the previous one stays
    /// published) and a new access-token key (tokens sealed under the
    /// previous one keep working)
    Rotate {
        /// Rotate only this key
        #[arg(long, value_enum)]
        only: Option<KeyKind>,
    },
    /// List the signing keys, newest first
    List {
        /// List the access-token keys instead
        #[arg(long)]
        access_token: bool,
    },
}

/// The kinds of server keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum KeyKind {
    /// The RS256 key that signs ID tokens (published in the JWKS)
    Signing,
    /// The key that seals (encrypts and authenticates) access tokens
    AccessToken,
}

pub async fn run(
    store: &dyn Store,
    command: KeysCommand,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    match command {
        KeysCommand::Rotate { only } => {
            if only != Some(KeyKind::AccessToken) {
                let key = generate_signing_key(&SystemClock).await?;
                store.insert_signing_key(&key).await?;
                writeln!(out, "new active signing key {}", key.kid)?;
            }
            if only != Some(KeyKind::Signing) {
                let number = samtykke_http::token_keys::rotate(store).await?;
                writeln!(out, "new active access-token key {number}")?;
            }
        }
        KeysCommand::List {
            access_token: false,
        } => {
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
        KeysCommand::List { access_token: true } => {
            let (numbers, legacy) = samtykke_http::token_keys::list(store).await?;
            writeln!(out, "{:<20} STATUS", "KEY")?;
            for (i, number) in numbers.iter().enumerate() {
                let status = match i {
                    0 => "active (seals and opens)",
                    1 => "previous (opens)",
                    _ => "retired",
                };
                writeln!(out, "{:<20} {status}", format!("access_token_key.{number}"))?;
            }
            if legacy {
                writeln!(
                    out,
                    "{:<20} sc1 (opens tokens of the earlier format)",
                    "access_token_key"
                )?;
            }
        }
    }
    Ok(())
}
