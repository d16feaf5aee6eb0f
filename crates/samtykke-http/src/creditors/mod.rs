//! Live creditors (issue 21): the outbound client and the `getalldata`
//! sync.

pub mod client;
pub mod metrics;
pub mod scheduler;
pub mod simulator;
pub mod sync;

pub use client::{CreditorCallError, CreditorClient, CreditorClientError, CreditorTls};
pub use sync::{run_sync, sync_creditor, SyncError, SyncSettings, SyncSummary};
