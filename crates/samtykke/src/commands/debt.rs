//! `samtykke debt import FILE`: loads a creditor delivery file.
//! `samtykke debt usage CONSENT_ID`: the consent's usage log for an
//! auditor, each use with what every creditor did.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;
use samtykke_core::consent::{ConsentId, UsageRecord};
use samtykke_core::debt::parse_delivery;
use samtykke_core::domain::{NinError, NinPolicy};
use samtykke_core::store::Store;
use time::format_description::well_known::Rfc3339;

#[derive(Debug, Subcommand)]
pub enum DebtCommand {
    /// Import a delivery file (providerID, customers[] with customerID,
    /// financialInstitutionID, loans[]). It replaces every loan of the file's
    /// financial institutions, all or nothing.
    Import {
        file: PathBuf,
        /// Accept synthetic test identity numbers (month + 80), as in a sandbox
        #[arg(long)]
        allow_synthetic: bool,
    },
    /// Show a consent's usage log, oldest first: each debt fetch with its
    /// client, purpose and trace id, and per creditor whether it was asked
    /// and whether its data was served fresh, from stored data, or not at
    /// all (a null loan), and why
    Usage {
        /// The consent id
        consent_id: String,
        /// One JSON object per line instead of text
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(
    store: &dyn Store,
    command: DebtCommand,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    match command {
        DebtCommand::Import {
            file,
            allow_synthetic,
        } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("could not read {}", file.display()))?;
            let policy = if allow_synthetic {
                NinPolicy::AllowSynthetic
            } else {
                NinPolicy::RealOnly
            };
            let delivery = parse_delivery(&text, policy).map_err(|e| {
                // A synthetic test person refused: say which flag accepts them.
                let hint = if e
                    .message
                    .ends_with(&NinError::SyntheticNotAllowed.to_string())
                {
                    "; to import synthetic test people into a sandbox's database, add --allow-synthetic"
                } else {
                    ""
                };
                anyhow::anyhow!("{}: {e}; nothing was imported{hint}", file.display())
            })?;
            let loans = store
                .import_delivery(
                    &delivery,
                    samtykke_core::Clock::now(&samtykke_core::SystemClock),
                )
                .await?;
            let people = {
                let mut nins: Vec<&str> = delivery.entries.iter().map(|e| e.nin.as_str()).collect();
                nins.sort_unstable();
                nins.dedup();
                nins.len()
            };
            writeln!(
                out,
                "imported {loans} loans of {people} people from {} financial institution(s) (provider {})",
                delivery.financial_institutions.len(),
                delivery.provider_id
            )?;
        }
        DebtCommand::Usage { consent_id, json } => {
            let id = ConsentId::parse(&consent_id)
                .ok_or_else(|| anyhow::anyhow!("{consent_id:?} is not a consent id"))?;
            if store.find_consent(&id).await?.is_none() {
                anyhow::bail!("no consent {id}");
            }
            let uses = store.consent_usage(&id).await?;
            for used in &uses {
                write_use(out, used, json)?;
            }
            if uses.is_empty() && !json {
                writeln!(out, "consent {id} has not been used")?;
            }
        }
    }
    Ok(())
}

/// One use of a consent, as text or as one line of JSON.
fn write_use(out: &mut dyn Write, used: &UsageRecord, json: bool) -> anyhow::Result<()> {
    let at = used.used_at.format(&Rfc3339)?;
    if json {
        let line = serde_json::json!({
            "used_at": at,
            "client_id": used.client_id.as_str(),
            "purpose": used.purpose.scope_name(),
            "trace_id": used.trace_id,
            "creditors": used.creditors,
        });
        writeln!(out, "{line}")?;
        return Ok(());
    }
    writeln!(
        out,
        "{at} client {} purpose {} trace {}",
        used.client_id,
        used.purpose.scope_name(),
        used.trace_id
    )?;
    match &used.creditors {
        None => writeln!(
            out,
            "  (no per-creditor report: recorded before it existed)"
        )?,
        Some(report) if report.is_empty() => writeln!(out, "  no creditor had data")?,
        Some(report) => {
            for c in report {
                let why = match (c.failure, c.asked) {
                    (None, true) => String::new(),
                    (None, false) => " (not asked: stored data only)".to_owned(),
                    (Some(f), true) => format!(" (did not answer: {f})"),
                    (Some(f), false) => format!(" (not called: {f})"),
                };
                writeln!(out, "  {} ({}): {}{why}", c.name, c.id, c.served.as_str())?;
            }
        }
    }
    Ok(())
}
