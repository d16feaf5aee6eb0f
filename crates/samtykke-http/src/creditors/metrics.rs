//! `samtykke_creditor_sync_*`: each registered creditor's daily
//! `getalldata` state, read from the store when `/metrics` is scraped (so
//! every process shows the same figures, whichever process synced).

use std::fmt::Write;

use samtykke_core::creditor::{CreditorRecord, SyncOutcome};

/// The metrics in the Prometheus text format.
pub fn render_sync_metrics(creditors: &[CreditorRecord]) -> String {
    let mut out = String::new();
    if creditors.is_empty() {
        return out;
    }
    let families: [(&str, &str, &str); 6] = [
        (
            "samtykke_creditor_sync_last_attempt_timestamp_seconds",
            "gauge",
            "When the creditor's last getalldata ended (Unix seconds; 0 = never).",
        ),
        (
            "samtykke_creditor_sync_last_success_timestamp_seconds",
            "gauge",
            "When the creditor's last successful getalldata ended (Unix seconds; 0 = never).",
        ),
        (
            "samtykke_creditor_sync_last_outcome",
            "gauge",
            "1 for the outcome of the creditor's last getalldata (ok, failed, invalid).",
        ),
        (
            "samtykke_creditor_sync_loans",
            "gauge",
            "Loans stored by the creditor's last successful getalldata.",
        ),
        (
            "samtykke_creditor_sync_consecutive_failures",
            "gauge",
            "Failed getalldata attempts since the last success.",
        ),
        (
            "samtykke_creditor_enabled",
            "gauge",
            "1 if the creditor is enabled, else 0.",
        ),
    ];
    for (name, kind, help) in families {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        for r in creditors {
            let id = r.creditor.id.as_str();
            let secs = |t: Option<time::OffsetDateTime>| t.map_or(0, |t| t.unix_timestamp());
            match name {
                "samtykke_creditor_sync_last_attempt_timestamp_seconds" => {
                    let _ = writeln!(
                        out,
                        "{name}{{creditor=\"{id}\"}} {}",
                        secs(r.sync.last_attempt_at)
                    );
                }
                "samtykke_creditor_sync_last_success_timestamp_seconds" => {
                    let _ = writeln!(
                        out,
                        "{name}{{creditor=\"{id}\"}} {}",
                        secs(r.sync.last_success_at)
                    );
                }
                "samtykke_creditor_sync_last_outcome" => {
                    for outcome in [SyncOutcome::Ok, SyncOutcome::Failed, SyncOutcome::Invalid] {
                        let value = u8::from(r.sync.last_outcome == Some(outcome));
                        let _ = writeln!(
                            out,
                            "{name}{{creditor=\"{id}\",outcome=\"{}\"}} {value}",
                            outcome.as_str()
                        );
                    }
                }
                "samtykke_creditor_sync_loans" => {
                    let _ = writeln!(
                        out,
                        "{name}{{creditor=\"{id}\"}} {}",
                        r.sync.last_size.unwrap_or(0)
                    );
                }
                "samtykke_creditor_sync_consecutive_failures" => {
                    let _ = writeln!(
                        out,
                        "{name}{{creditor=\"{id}\"}} {}",
                        r.sync.consecutive_failures
                    );
                }
                _ => {
                    let _ = writeln!(
                        out,
                        "{name}{{creditor=\"{id}\"}} {}",
                        u8::from(r.creditor.enabled)
                    );
                }
            }
        }
    }
    out
}
