//! `samtykke creditor add|list|show|disable|enable|remove|test|sync|simulate`:
//! the live creditors whose `getDataForSSN` and `getalldata` Samtykke calls.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use clap::{Args, Subcommand};
use samtykke_core::creditor::{
    parse_creditor_name, Creditor, CreditorEndpoint, CreditorRecord, FinancialInstitutionId,
    MAX_TIMEOUT,
};
use samtykke_core::domain::{Nin, NinPolicy, OrgNumber};
use samtykke_core::store::{Store, StoreError};
use samtykke_core::{Clock, SystemClock};
use samtykke_http::creditors::simulator::{self, SimulatorOptions};
use samtykke_http::creditors::{run_sync, CreditorClient, CreditorTls, SyncSettings};
use serde_json::json;
use time::format_description::well_known::Rfc3339;

use crate::config::{parse_sync_at, CreditorSettings, FileConfig};

/// The number `creditor test` asks for unless told otherwise: a synthetic
/// test person (month + 80), never a real one.
pub const DEFAULT_TEST_CUSTOMER: &str = "14842249091";

/// Samtykke's TLS material for calls to creditors (serve and the creditor
/// commands).
#[derive(Debug, Clone, Default, Args)]
pub struct CreditorTlsArgs {
    /// Samtykke's client certificate (PEM) for mutual TLS with creditors
    #[arg(long, env = "SAMTYKKE_CREDITOR_CLIENT_CERT", global = true)]
    pub creditor_client_cert: Option<PathBuf>,
    /// The private key (PEM) of --creditor-client-cert
    #[arg(long, env = "SAMTYKKE_CREDITOR_CLIENT_KEY", global = true)]
    pub creditor_client_key: Option<PathBuf>,
    /// CA bundle (PEM) trusted for creditors' servers, instead of the built-in roots
    #[arg(long, env = "SAMTYKKE_CREDITOR_CA", global = true)]
    pub creditor_ca: Option<PathBuf>,
    /// Customers on a full getalldata page (a shorter page is the last) [default: 10000]
    #[arg(long, env = "SAMTYKKE_CREDITOR_PAGE_SIZE", global = true)]
    pub creditor_page_size: Option<u32>,
}

/// The creditor flags of `serve`.
#[derive(Debug, Clone, Default, Args)]
pub struct CreditorServeArgs {
    #[command(flatten)]
    pub tls: CreditorTlsArgs,
    /// Time of the daily getalldata, HH:MM UTC [default: 05:30]
    #[arg(long, env = "SAMTYKKE_CREDITOR_SYNC_AT")]
    pub creditor_sync_at: Option<String>,
    /// Seconds over which the daily getalldata of the creditors is spread after its time [default: 600]
    #[arg(long, env = "SAMTYKKE_CREDITOR_SYNC_JITTER")]
    pub creditor_sync_jitter: Option<u64>,
    /// Run the daily getalldata in this process (several may: each creditor is synced once a day) [default: true]
    #[arg(long, env = "SAMTYKKE_CREDITOR_SYNC", num_args = 0..=1, default_missing_value = "true", value_parser = clap::builder::BoolishValueParser::new())]
    pub creditor_sync: Option<bool>,
}

impl CreditorTlsArgs {
    fn merged(&self, file: &FileConfig) -> Self {
        Self {
            creditor_client_cert: self
                .creditor_client_cert
                .clone()
                .or_else(|| file.creditor_client_cert.clone().map(PathBuf::from)),
            creditor_client_key: self
                .creditor_client_key
                .clone()
                .or_else(|| file.creditor_client_key.clone().map(PathBuf::from)),
            creditor_ca: self
                .creditor_ca
                .clone()
                .or_else(|| file.creditor_ca.clone().map(PathBuf::from)),
            creditor_page_size: self.creditor_page_size.or(file.creditor_page_size),
        }
    }

    fn page_size(&self) -> anyhow::Result<u32> {
        match self.creditor_page_size {
            Some(0) => bail!("--creditor-page-size must be at least 1"),
            Some(n) => Ok(n),
            None => Ok(samtykke_core::creditor::DEFAULT_PAGE_SIZE),
        }
    }
}

impl CreditorServeArgs {
    /// Merges flags/environment with the file and the defaults.
    pub fn resolve(&self, file: &FileConfig) -> anyhow::Result<CreditorSettings> {
        let tls = self.tls.merged(file);
        let enabled = self.creditor_sync.or(file.creditor_sync).unwrap_or(true);
        let sync_at = parse_sync_at(
            self.creditor_sync_at
                .as_deref()
                .or(file.creditor_sync_at.as_deref())
                .unwrap_or(crate::config::DEFAULT_CREDITOR_SYNC_AT),
        )?;
        let jitter = self
            .creditor_sync_jitter
            .or(file.creditor_sync_jitter)
            .unwrap_or(crate::config::DEFAULT_CREDITOR_SYNC_JITTER_SECONDS);
        if jitter > 6 * 3600 {
            bail!("--creditor-sync-jitter must be at most 21600 seconds (6 hours), got {jitter}");
        }
        // A half identity is refused at start-up, not at the first call.
        tls_material(&tls)?;
        Ok(CreditorSettings {
            client_cert: tls.creditor_client_cert.clone(),
            client_key: tls.creditor_client_key.clone(),
            ca: tls.creditor_ca.clone(),
            sync_at: enabled.then_some(sync_at),
            sync_jitter: Duration::from_secs(jitter),
            page_size: tls.page_size()?,
            sandbox_simulators: true,
        })
    }
}

fn tls_material(tls: &CreditorTlsArgs) -> anyhow::Result<CreditorTls> {
    let material = CreditorTls::from_files(
        tls.creditor_client_cert.as_deref(),
        tls.creditor_client_key.as_deref(),
        tls.creditor_ca.as_deref(),
    )?;
    if material.client_cert_pem.is_some() != material.client_key_pem.is_some() {
        bail!(samtykke_http::creditors::CreditorClientError::HalfIdentity);
    }
    Ok(material)
}

#[derive(Debug, Args)]
pub struct CreditorArgs {
    #[command(flatten)]
    pub tls: CreditorTlsArgs,
    #[command(subcommand)]
    pub command: CreditorCommand,
}

impl CreditorArgs {
    /// The simulator needs no database.
    pub fn simulate_command(&self) -> Option<SimulateArgs> {
        match &self.command {
            CreditorCommand::Simulate(args) => Some(args.clone()),
            _ => None,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum CreditorCommand {
    /// Register a creditor (its financialInstitutionID, name and endpoint)
    Add(AddArgs),
    /// List every creditor with its getalldata state
    List {
        /// Print a JSON array
        #[arg(long)]
        json: bool,
    },
    /// Show one creditor
    Show {
        org: String,
        /// Print JSON
        #[arg(long)]
        json: bool,
    },
    /// Stop calling the creditor (its stored data is still served as the fallback rules say)
    Disable { org: String },
    /// Call a disabled creditor again
    Enable { org: String },
    /// Remove the creditor and its stored loans
    Remove { org: String },
    /// One getDataForSSN call with a test number: latency and answer shape
    Test {
        org: String,
        /// The customerID to ask for [default: the synthetic test person 14842249091]
        #[arg(long)]
        customer: Option<String>,
    },
    /// Run getalldata now (every enabled creditor, or one)
    Sync {
        /// Only this creditor (also when disabled)
        #[arg(long)]
        org: Option<String>,
    },
    /// Serve getalldata and getDataForSSN from a delivery file, as a creditor would
    Simulate(SimulateArgs),
}

#[derive(Debug, Clone, Args)]
pub struct AddArgs {
    /// The creditor's financialInstitutionID: its 9-digit organisation number (or a foreign id of 9-16 characters)
    #[arg(long)]
    pub org: String,
    /// The name shown to clients as creditorName
    #[arg(long)]
    pub name: String,
    /// Base URL of its endpoints (https://; http:// only in a sandbox's database)
    #[arg(long)]
    pub endpoint: String,
    /// Timeout of one getDataForSSN call in milliseconds, body included
    #[arg(long, default_value_t = 500)]
    pub timeout_ms: u64,
    /// At most this many calls at once to this creditor
    #[arg(long)]
    pub max_concurrent: Option<u32>,
    /// The organisation number in its TLS certificate's organizationIdentifier when not its own (its IT provider's)
    #[arg(long)]
    pub certificate_org: Option<String>,
    /// Ask it on every lookup, also for people it holds no stored data for (creditors without getalldata)
    #[arg(long)]
    pub always_ask: bool,
    /// Customers on a full getalldata page of this creditor [default: --creditor-page-size]
    #[arg(long)]
    pub page_size: Option<u32>,
    /// Register it disabled
    #[arg(long)]
    pub disabled: bool,
}

#[derive(Debug, Clone, Args)]
pub struct SimulateArgs {
    /// Address to listen on, e.g. 127.0.0.1:9100
    #[arg(long)]
    pub listen: String,
    /// The delivery file to serve (the format of `debt import`)
    #[arg(long, required_unless_present = "generate")]
    pub data: Option<PathBuf>,
    /// Serve this many generated customers (one loan each) instead of a file, for benchmarks
    #[arg(long, conflicts_with = "data")]
    pub generate: Option<u64>,
    /// The financialInstitutionID served [default: the file's providerID]
    #[arg(long)]
    pub org: Option<String>,
    /// Added to every answer, in milliseconds
    #[arg(long, default_value_t = 20)]
    pub latency_ms: u64,
    /// Up to this many milliseconds more, at random
    #[arg(long, default_value_t = 5)]
    pub jitter_ms: u64,
    /// Share of calls answered 500 (0.0 to 1.0)
    #[arg(long, default_value_t = 0.0)]
    pub fail_rate: f64,
    /// Send the headers of a 200 and then nothing
    #[arg(long)]
    pub hang: bool,
    /// Answer 200 with a body that is not JSON
    #[arg(long)]
    pub garbage: bool,
    /// Customers per getalldata page
    #[arg(long, default_value_t = samtykke_core::creditor::DEFAULT_PAGE_SIZE)]
    pub page_size: u32,
    /// Serve HTTPS with this certificate (PEM)
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --tls-cert
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Require client certificates issued by this CA (mutual TLS)
    #[arg(long, requires = "tls_cert")]
    pub client_ca: Option<PathBuf>,
    /// Accept synthetic test identity numbers in the file (as in a sandbox) [default: true]
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub allow_synthetic: bool,
}

pub async fn run(
    store: Arc<dyn Store>,
    args: CreditorArgs,
    file: &FileConfig,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let tls = args.tls.merged(file);
    let clock = SystemClock;
    match args.command {
        CreditorCommand::Add(add) => {
            let sandbox = store.sandbox_credentials().await?.is_some();
            let creditor = new_creditor(&add, sandbox, &clock)?;
            match store.insert_creditor(&creditor).await {
                Err(StoreError::Conflict(_)) => bail!(
                    "a creditor with financialInstitutionID {} is registered already (samtykke creditor show {})",
                    creditor.id,
                    creditor.id
                ),
                other => other?,
            }
            writeln!(
                out,
                "added creditor {} ({}) at {}{}",
                creditor.id,
                creditor.name,
                creditor.endpoint,
                if creditor.enabled { "" } else { ", disabled" }
            )?;
        }
        CreditorCommand::List { json } => {
            let creditors = store.list_creditors().await?;
            if json {
                let all: Vec<_> = creditors.iter().map(record_json).collect();
                writeln!(out, "{}", serde_json::to_string_pretty(&all)?)?;
            } else if creditors.is_empty() {
                writeln!(
                    out,
                    "no creditors (samtykke creditor add --org … --name … --endpoint …)"
                )?;
            } else {
                writeln!(
                    out,
                    "{:<16} {:<8} {:<28} {:<20} {:<8} {:>8} {:>8}  NAME",
                    "ID",
                    "STATE",
                    "LAST GETALLDATA",
                    "LAST SUCCESS",
                    "OUTCOME",
                    "LOANS",
                    "FAILURES"
                )?;
                for r in &creditors {
                    writeln!(
                        out,
                        "{:<16} {:<8} {:<28} {:<20} {:<8} {:>8} {:>8}  {}",
                        r.creditor.id.as_str(),
                        if r.creditor.enabled {
                            "enabled"
                        } else {
                            "disabled"
                        },
                        time_text(r.sync.last_attempt_at),
                        time_text(r.sync.last_success_at),
                        r.sync.last_outcome.map_or("-", |o| o.as_str()),
                        r.sync.last_size.map_or("-".to_owned(), |n| n.to_string()),
                        r.sync.consecutive_failures,
                        r.creditor.name
                    )?;
                }
                writeln!(
                    out,
                    "(circuit breakers are per server process: see samtykke_creditor_* in the server's /metrics)"
                )?;
            }
        }
        CreditorCommand::Show { org, json } => {
            let record = find(store.as_ref(), &org).await?;
            if json {
                writeln!(
                    out,
                    "{}",
                    serde_json::to_string_pretty(&record_json(&record))?
                )?;
            } else {
                show(&record, out)?;
            }
        }
        CreditorCommand::Disable { org } => {
            set_enabled(store.as_ref(), &org, false).await?;
            writeln!(out, "disabled creditor {org}: it is no longer called")?;
        }
        CreditorCommand::Enable { org } => {
            set_enabled(store.as_ref(), &org, true).await?;
            writeln!(out, "enabled creditor {org}")?;
        }
        CreditorCommand::Remove { org } => {
            let id = parse_id(&org)?;
            match store.delete_creditor(&id).await {
                Err(StoreError::NotFound) => bail!(not_registered(&org)),
                other => other?,
            }
            writeln!(out, "removed creditor {org} and its stored loans")?;
        }
        CreditorCommand::Test { org, customer } => {
            let record = find(store.as_ref(), &org).await?;
            let customer = customer.unwrap_or_else(|| DEFAULT_TEST_CUSTOMER.to_owned());
            // Never echo the number in an error.
            let nin = Nin::parse(&customer, NinPolicy::AllowSynthetic)
                .map_err(|e| anyhow!("--customer: {e}"))?;
            let sandbox = store.sandbox_credentials().await?.is_some();
            let client = client(&tls, NinPolicy::AllowSynthetic, sandbox)?;
            let trace_id = samtykke_core::creditor::SyncId::generate().to_string();
            let started = Instant::now();
            let answer = client
                .get_data_for_ssn(&record.creditor, &nin, &trace_id)
                .await;
            let elapsed = started.elapsed();
            match answer {
                Ok(answer) => {
                    let mut types: Vec<&str> =
                        answer.loans.iter().map(|(_, l)| l.type_name()).collect();
                    types.sort_unstable();
                    writeln!(
                        out,
                        "getDataForSSN at {} answered in {} ms: a valid answer with {} loan(s){}{} (X-Trace-ID {trace_id})",
                        record.creditor.id,
                        elapsed.as_millis(),
                        answer.loans.len(),
                        if types.is_empty() { "" } else { ": " },
                        types.join(", ")
                    )?;
                    if elapsed > record.creditor.timeout {
                        writeln!(
                            out,
                            "warning: slower than its timeout of {} ms",
                            record.creditor.timeout.as_millis()
                        )?;
                    }
                }
                Err(e) => bail!(
                    "getDataForSSN at {} failed after {} ms: {e} (X-Trace-ID {trace_id})",
                    record.creditor.id,
                    elapsed.as_millis()
                ),
            }
        }
        CreditorCommand::Sync { org } => {
            let targets: Vec<Creditor> = match org {
                Some(org) => vec![find(store.as_ref(), &org).await?.creditor],
                None => store
                    .list_creditors()
                    .await?
                    .into_iter()
                    .map(|r| r.creditor)
                    .filter(|c| c.enabled)
                    .collect(),
            };
            if targets.is_empty() {
                writeln!(out, "no enabled creditors to sync")?;
                return Ok(());
            }
            let sandbox = store.sandbox_credentials().await?.is_some();
            let policy = if sandbox {
                NinPolicy::AllowSynthetic
            } else {
                NinPolicy::RealOnly
            };
            let client = client(&tls, policy, sandbox)?;
            let settings = SyncSettings {
                page_size: tls.page_size()?,
                ..SyncSettings::default()
            };
            let mut failed = 0;
            for creditor in &targets {
                let started = Instant::now();
                let (_, result) = run_sync(&store, &client, creditor, &settings, clock.now()).await;
                match result {
                    Ok(summary) => writeln!(
                        out,
                        "{}: stored {} loans of {} customers from {} page(s) in {} ms",
                        creditor.id,
                        summary.loans,
                        summary.customers,
                        summary.pages,
                        started.elapsed().as_millis()
                    )?,
                    Err(e) => {
                        failed += 1;
                        writeln!(
                            out,
                            "{}: getalldata failed ({}), the stored data is kept: {e}",
                            creditor.id,
                            e.outcome()
                        )?;
                    }
                }
            }
            if failed > 0 {
                bail!("{failed} of {} getalldata sync(s) failed", targets.len());
            }
        }
        CreditorCommand::Simulate(_) => unreachable_simulate()?,
    }
    Ok(())
}

fn unreachable_simulate() -> anyhow::Result<()> {
    bail!("creditor simulate runs without a database")
}

/// `samtykke creditor simulate`.
pub async fn simulate(args: SimulateArgs) -> anyhow::Result<()> {
    let listen: std::net::SocketAddr = args
        .listen
        .parse()
        .with_context(|| format!("--listen {}: not an ADDRESS:PORT", args.listen))?;
    if !(0.0..=1.0).contains(&args.fail_rate) {
        bail!(
            "--fail-rate must be between 0.0 and 1.0 (got {})",
            args.fail_rate
        );
    }
    if args.page_size == 0 {
        bail!("--page-size must be at least 1");
    }
    let options = SimulatorOptions {
        latency: Duration::from_millis(args.latency_ms),
        jitter: Duration::from_millis(args.jitter_ms),
        fail_rate: args.fail_rate,
        hang: args.hang,
        garbage: args.garbage,
        page_size: args.page_size,
    };
    let org = args
        .org
        .as_deref()
        .map(|o| FinancialInstitutionId::parse(o).map_err(|e| anyhow!("--org {o}: {e}")))
        .transpose()?;
    let data = match (&args.data, args.generate) {
        (_, Some(count)) => {
            let fi = org.clone().ok_or_else(|| {
                anyhow!("--generate needs --org (the financialInstitutionID to serve)")
            })?;
            simulator::SimulatorData::generated(fi, count)
        }
        (Some(path), None) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("could not read {}", path.display()))?;
            let policy = if args.allow_synthetic {
                NinPolicy::AllowSynthetic
            } else {
                NinPolicy::RealOnly
            };
            let delivery = samtykke_core::debt::parse_delivery(&text, policy)
                .map_err(|e| anyhow!("{}: {e}", path.display()))?;
            simulator::SimulatorData::from_delivery(&delivery, org.as_ref())
                .map_err(|e| anyhow!("{}: {e}", path.display()))?
        }
        (None, None) => bail!("give --data FILE or --generate N"),
    };
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(
            simulator::server_tls(cert, key, args.client_ca.as_deref())
                .map_err(anyhow::Error::msg)?,
        ),
        _ => None,
    };
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("could not listen on {listen}"))?;
    let addr = listener.local_addr()?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    let served: Vec<String> = data.institutions().iter().map(|f| f.to_string()).collect();
    println!(
        "creditor simulator for {} listening on {scheme}://{addr}/ ({} customers)",
        served.join(", "),
        data.customer_count()
    );
    for fi in data.institutions() {
        println!("  getalldata     GET {scheme}://{addr}/debt-information/v1/loans/{fi}?page=0");
        println!("  getDataForSSN  GET {scheme}://{addr}/debt-information/v1/loans/{fi}/customer (header customerID)");
    }
    std::io::stdout().flush()?;
    let simulator = simulator::Simulator::new(Arc::new(data), options);
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    simulator.serve(listener, tls, shutdown).await?;
    Ok(())
}

/// Validates `add`'s arguments.
pub fn new_creditor(add: &AddArgs, sandbox: bool, clock: &dyn Clock) -> anyhow::Result<Creditor> {
    let id = parse_id(&add.org)?;
    let name = parse_creditor_name(&add.name).map_err(|e| anyhow!("--name: {e}"))?;
    let endpoint = CreditorEndpoint::parse(&add.endpoint, sandbox).map_err(|e| match e {
        samtykke_core::creditor::CreditorEndpointError::Scheme if !sandbox => anyhow!(
            "--endpoint {}: creditors are called over https:// only; http:// is allowed in a sandbox's database",
            add.endpoint
        ),
        e => anyhow!("--endpoint {}: {e}", add.endpoint),
    })?;
    let timeout = Duration::from_millis(add.timeout_ms);
    if add.timeout_ms == 0 || timeout > MAX_TIMEOUT {
        bail!(
            "--timeout-ms must be between 1 and {} (got {})",
            MAX_TIMEOUT.as_millis(),
            add.timeout_ms
        );
    }
    if add.max_concurrent == Some(0) {
        bail!("--max-concurrent must be at least 1");
    }
    if add.page_size == Some(0) {
        bail!("--page-size must be at least 1");
    }
    let certificate_org = add
        .certificate_org
        .as_deref()
        .map(|o| OrgNumber::parse(o).map_err(|e| anyhow!("--certificate-org {o}: {e}")))
        .transpose()?;
    Ok(Creditor {
        id,
        name,
        endpoint,
        timeout,
        max_concurrent: add.max_concurrent,
        certificate_org,
        always_ask: add.always_ask,
        enabled: !add.disabled,
        page_size: add.page_size,
        created_at: clock.now(),
    })
}

fn client(
    tls: &CreditorTlsArgs,
    policy: NinPolicy,
    sandbox: bool,
) -> anyhow::Result<CreditorClient> {
    Ok(CreditorClient::new(&tls_material(tls)?, policy, sandbox)?)
}

fn parse_id(org: &str) -> anyhow::Result<FinancialInstitutionId> {
    FinancialInstitutionId::parse(org).map_err(|e| anyhow!("{org}: {e}"))
}

fn not_registered(org: &str) -> String {
    format!("no creditor {org} is registered (samtykke creditor list)")
}

async fn find(store: &dyn Store, org: &str) -> anyhow::Result<CreditorRecord> {
    let id = parse_id(org)?;
    store
        .find_creditor(&id)
        .await?
        .ok_or_else(|| anyhow!(not_registered(org)))
}

async fn set_enabled(store: &dyn Store, org: &str, enabled: bool) -> anyhow::Result<()> {
    let mut creditor = find(store, org).await?.creditor;
    creditor.enabled = enabled;
    store.update_creditor(&creditor).await?;
    Ok(())
}

fn time_text(at: Option<time::OffsetDateTime>) -> String {
    at.and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| "never".to_owned())
}

fn record_json(r: &CreditorRecord) -> serde_json::Value {
    let c = &r.creditor;
    let time = |t: Option<time::OffsetDateTime>| t.and_then(|t| t.format(&Rfc3339).ok());
    json!({
        "financialInstitutionID": c.id.as_str(),
        "name": c.name,
        "endpoint": c.endpoint.as_str(),
        "timeout_ms": c.timeout.as_millis() as u64,
        "max_concurrent": c.max_concurrent,
        "certificate_org": c.certificate_org.as_ref().map(OrgNumber::as_str),
        "always_ask": c.always_ask,
        "enabled": c.enabled,
        "page_size": c.page_size,
        "created_at": time(Some(c.created_at)),
        "sync": {
            "last_attempt_at": time(r.sync.last_attempt_at),
            "last_success_at": time(r.sync.last_success_at),
            "last_outcome": r.sync.last_outcome.map(|o| o.as_str()),
            "last_size": r.sync.last_size,
            "last_error": r.sync.last_error,
            "consecutive_failures": r.sync.consecutive_failures,
        },
        "stored_at": time(r.stored_at),
    })
}

fn show(r: &CreditorRecord, out: &mut dyn Write) -> anyhow::Result<()> {
    let c = &r.creditor;
    writeln!(out, "financialInstitutionID  {}", c.id)?;
    writeln!(out, "name                    {}", c.name)?;
    writeln!(out, "endpoint                {}", c.endpoint)?;
    writeln!(
        out,
        "state                   {}",
        if c.enabled { "enabled" } else { "disabled" }
    )?;
    writeln!(out, "timeout                 {} ms", c.timeout.as_millis())?;
    writeln!(
        out,
        "max concurrent          {}",
        c.max_concurrent
            .map_or("no limit of its own".to_owned(), |n| n.to_string())
    )?;
    writeln!(
        out,
        "certificate org         {}",
        c.certificate_org_number()
            .map_or("none (foreign, no organisation number)".to_owned(), |o| o
                .to_string())
    )?;
    writeln!(
        out,
        "always ask              {}",
        if c.always_ask { "yes" } else { "no" }
    )?;
    writeln!(
        out,
        "getalldata page size    {}",
        c.page_size
            .map_or("the global setting".to_owned(), |n| n.to_string())
    )?;
    writeln!(
        out,
        "last getalldata         {}",
        time_text(r.sync.last_attempt_at)
    )?;
    writeln!(
        out,
        "  outcome               {}",
        r.sync.last_outcome.map_or("-", |o| o.as_str())
    )?;
    if let Some(error) = &r.sync.last_error {
        writeln!(out, "  error                 {error}")?;
    }
    writeln!(
        out,
        "last success            {}",
        time_text(r.sync.last_success_at)
    )?;
    writeln!(
        out,
        "  loans stored          {}",
        r.sync.last_size.map_or("-".to_owned(), |n| n.to_string())
    )?;
    writeln!(
        out,
        "consecutive failures    {}",
        r.sync.consecutive_failures
    )?;
    writeln!(out, "stored data delivered   {}", time_text(r.stored_at))?;
    Ok(())
}
