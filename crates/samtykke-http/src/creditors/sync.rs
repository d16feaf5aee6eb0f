//! `getalldata`: one creditor's whole dataset, paged as documented (0-based
//! `page`, until a page with fewer customers than the page size), streamed
//! (the body is parsed as it arrives on a blocking thread, customers are
//! staged in the store in batches, and nothing holds the whole body),
//! validated (the delivery rules, and every customer must belong to the
//! creditor's `financialInstitutionID`), then swapped in atomically. A
//! failed or invalid sync leaves the served data as it was.

use std::io::Read;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use samtykke_core::creditor::{
    Creditor, CustomerLoans, SyncId, SyncOutcome, SyncReport, DEFAULT_PAGE_SIZE,
};
use samtykke_core::debt::ProviderId;
use samtykke_core::debt::{DebtEntry, DeliveryPage, DeliveryReader};
use samtykke_core::store::{Store, StoreError};
use time::OffsetDateTime;
use tokio::sync::mpsc;

use super::client::{CreditorCallError, CreditorClient};

/// How `getalldata` is fetched.
#[derive(Debug, Clone)]
pub struct SyncSettings {
    /// Customers on a full page, for creditors without their own setting.
    pub page_size: u32,
    /// Wait for a page's headers at most this long.
    pub page_timeout: Duration,
    /// Wait for each part of a page's body at most this long.
    pub read_timeout: Duration,
    /// Loans per staged batch.
    pub batch: usize,
    /// Stop after this many pages (a creditor that never sends a short page).
    pub max_pages: u32,
}

impl Default for SyncSettings {
    fn default() -> Self {
        Self {
            page_size: DEFAULT_PAGE_SIZE,
            page_timeout: Duration::from_secs(60),
            read_timeout: Duration::from_secs(60),
            batch: 5_000,
            max_pages: 100_000,
        }
    }
}

/// A successful sync.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncSummary {
    pub pages: u32,
    pub customers: u64,
    pub loans: u64,
}

/// Why a sync failed; the old data is kept in every case.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SyncError {
    #[error("page {page}: {error}")]
    Call { page: u32, error: CreditorCallError },
    #[error("page {page}: invalid delivery: {message}")]
    Invalid { page: u32, message: String },
    #[error("storage: {0}")]
    Store(String),
    #[error("more than {0} pages")]
    TooManyPages(u32),
}

impl SyncError {
    pub fn outcome(&self) -> SyncOutcome {
        match self {
            Self::Invalid { .. } => SyncOutcome::Invalid,
            _ => SyncOutcome::Failed,
        }
    }
}

impl From<StoreError> for SyncError {
    fn from(e: StoreError) -> Self {
        Self::Store(e.to_string())
    }
}

/// Fetches, validates and swaps in `creditor`'s whole dataset (see the
/// module docs); `at` is recorded as when the data was delivered.
pub async fn sync_creditor(
    store: &Arc<dyn Store>,
    client: &CreditorClient,
    creditor: &Creditor,
    settings: &SyncSettings,
    at: OffsetDateTime,
) -> Result<SyncSummary, SyncError> {
    let sync = SyncId::generate();
    let outcome = fetch_and_stage(store, client, creditor, settings, &sync).await;
    let finished = match outcome {
        Ok((provider, pages, customers)) => store
            .finish_loan_replacement(&sync, &creditor.id, &provider, at)
            .await
            .map(|loans| SyncSummary {
                pages,
                customers,
                loans,
            })
            .map_err(SyncError::from),
        Err(e) => Err(e),
    };
    if finished.is_err() {
        // Best effort: an abandoned staging is dropped again by the next sync's
        // clean-up at the latest.
        let _ = store.abandon_loan_replacement(&sync).await;
    }
    finished
}

/// Runs [`sync_creditor`] and records and logs its outcome.
pub async fn run_sync(
    store: &Arc<dyn Store>,
    client: &CreditorClient,
    creditor: &Creditor,
    settings: &SyncSettings,
    at: OffsetDateTime,
) -> (SyncReport, Result<SyncSummary, SyncError>) {
    let started = std::time::Instant::now();
    let result = sync_creditor(store, client, creditor, settings, at).await;
    let report = match &result {
        Ok(summary) => {
            tracing::info!(
                creditor = %creditor.id,
                pages = summary.pages,
                customers = summary.customers,
                loans = summary.loans,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "getalldata stored"
            );
            SyncReport {
                at,
                outcome: SyncOutcome::Ok,
                loans: Some(summary.loans),
                error: None,
            }
        }
        Err(e) => {
            tracing::warn!(
                creditor = %creditor.id,
                outcome = e.outcome().as_str(),
                error = %e,
                "getalldata failed; the stored data is kept"
            );
            SyncReport {
                at,
                outcome: e.outcome(),
                loans: None,
                error: Some(e.to_string()),
            }
        }
    };
    if let Err(e) = store.record_sync_outcome(&creditor.id, &report).await {
        tracing::warn!(creditor = %creditor.id, error = %e, "cannot record the getalldata outcome");
    }
    (report, result)
}

/// Fetches every page and stages its loans; the providerID of the first
/// page, the number of pages and customers.
async fn fetch_and_stage(
    store: &Arc<dyn Store>,
    client: &CreditorClient,
    creditor: &Creditor,
    settings: &SyncSettings,
    sync: &SyncId,
) -> Result<(ProviderId, u32, u64), SyncError> {
    let page_size = u64::from(creditor.page_size.unwrap_or(settings.page_size).max(1));
    let mut reader = Some(DeliveryReader::new(client.policy()));
    let mut provider = None;
    let mut customers = 0u64;
    for page in 0..settings.max_pages {
        let trace_id = uuid::Uuid::new_v4().to_string();
        let response = client
            .get_all_data_page(
                creditor,
                page,
                &trace_id,
                settings.page_timeout,
                settings.read_timeout,
            )
            .await
            .map_err(|error| SyncError::Call { page, error })?;
        let taken = reader
            .take()
            .ok_or_else(|| SyncError::Store("reader lost".into()))?;
        let (back, result) =
            stream_page(store, creditor, settings, sync, response, taken, page).await;
        reader = Some(back);
        let read = result?;
        provider.get_or_insert(read.provider_id);
        customers += read.customers;
        if read.customers < page_size {
            return Ok((
                provider.ok_or_else(|| SyncError::Store("no page".into()))?,
                page + 1,
                customers,
            ));
        }
    }
    Err(SyncError::TooManyPages(settings.max_pages))
}

/// Streams one page through the parser into the staging table.
async fn stream_page(
    store: &Arc<dyn Store>,
    creditor: &Creditor,
    settings: &SyncSettings,
    sync: &SyncId,
    mut response: reqwest::Response,
    mut reader: DeliveryReader,
    page: u32,
) -> (DeliveryReader, Result<DeliveryPage, SyncError>) {
    let (body_tx, body_rx) = mpsc::channel::<Result<Bytes, String>>(16);
    let (batch_tx, mut batch_rx) = mpsc::channel::<Vec<DebtEntry>>(2);
    let read_timeout = settings.read_timeout;

    // The body, chunk by chunk, to the parser.
    let pump = async move {
        loop {
            let next = tokio::time::timeout(read_timeout, response.chunk()).await;
            let chunk = match next {
                Err(_) => Err(CreditorCallError::Timeout(read_timeout)),
                Ok(Err(e)) if e.is_timeout() => Err(CreditorCallError::Timeout(read_timeout)),
                Ok(Err(e)) => Err(CreditorCallError::Connect(format!(
                    "the body broke off: {}",
                    e.without_url()
                ))),
                Ok(Ok(chunk)) => Ok(chunk),
            };
            match chunk {
                Ok(Some(bytes)) => {
                    if body_tx.send(Ok(bytes)).await.is_err() {
                        return Ok(());
                    }
                }
                Ok(None) => return Ok(()),
                Err(error) => {
                    let _ = body_tx.send(Err(error.to_string())).await;
                    return Err(error);
                }
            }
        }
    };

    // The parser, on a blocking thread: customers to batches of entries.
    let fi = creditor.id.clone();
    let name = creditor.name.clone();
    let batch_size = settings.batch.max(1);
    let parse = tokio::task::spawn_blocking(move || {
        let mut batch: Vec<DebtEntry> = Vec::with_capacity(batch_size);
        let mut sink = |customer: CustomerLoans| {
            if customer.financial_institution_id != fi {
                return Err(format!(
                    "a customer of financialInstitutionID {} in the getalldata of {fi}",
                    customer.financial_institution_id
                ));
            }
            batch.extend(customer.entries(&name));
            if batch.len() >= batch_size {
                let full = std::mem::replace(&mut batch, Vec::with_capacity(batch_size));
                batch_tx
                    .blocking_send(full)
                    .map_err(|_| "staging stopped".to_owned())?;
            }
            Ok(())
        };
        let body = std::io::BufReader::with_capacity(
            64 * 1024,
            ChannelReader {
                rx: body_rx,
                current: Bytes::new(),
            },
        );
        let result = reader.read(body, &mut sink);
        if result.is_ok() && !batch.is_empty() {
            let _ = batch_tx.blocking_send(batch);
        }
        (reader, result)
    });

    // The batches, into the staging table. The receiver moves in, so that a
    // failed insert drops it and the parser's next send fails at once.
    let stage = async move {
        while let Some(batch) = batch_rx.recv().await {
            store.stage_loans(sync, &batch).await?;
        }
        Ok::<(), StoreError>(())
    };

    let (pumped, staged, parsed) = tokio::join!(pump, stage, parse);
    let (reader, parsed) = match parsed {
        Ok(done) => done,
        Err(e) => {
            return (
                DeliveryReader::new(samtykke_core::domain::NinPolicy::RealOnly),
                Err(SyncError::Store(format!("the parser stopped: {e}"))),
            )
        }
    };
    // A transport failure explains a parse error it caused; then storage.
    let result = match (pumped, staged, parsed) {
        (Err(error), _, _) => Err(SyncError::Call { page, error }),
        (_, Err(e), _) => Err(SyncError::from(e)),
        (_, _, Err(e)) => Err(SyncError::Invalid {
            page,
            message: e.to_string(),
        }),
        (Ok(()), Ok(()), Ok(read)) => Ok(read),
    };
    (reader, result)
}

/// The body chunks as a [`Read`] for the parser's thread.
struct ChannelReader {
    rx: mpsc::Receiver<Result<Bytes, String>>,
    current: Bytes,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                None => return Ok(0),
                Some(Err(e)) => return Err(std::io::Error::other(e)),
                Some(Ok(bytes)) => self.current = bytes,
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        let _ = self.current.split_to(n);
        Ok(n)
    }
}
