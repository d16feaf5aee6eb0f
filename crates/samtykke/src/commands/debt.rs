//! `samtykke debt import FILE`: loads a creditor delivery file.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;
use samtykke_core::debt::parse_delivery;
use samtykke_core::domain::{NinError, NinPolicy};
use samtykke_core::store::Store;

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
    }
    Ok(())
}
