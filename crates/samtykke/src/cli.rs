//! The command line (clap): `serve`, `client …`, `keys …`.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::commands::{client, creditor, debt, keys};
use crate::config::{
    connection_caps, connection_timeout, parse_admin_listen, SqliteSynchronous,
    DEFAULT_ADMIN_LISTEN,
};
use crate::config::{
    parse_listen, DeliveryInput, FileConfig, LogFormat, SandboxSetting, ServeConfig, UpstreamInput,
    DEFAULT_ACCESS_TOKEN_TTL_SECONDS, DEFAULT_DATABASE_URL, DEFAULT_JANITOR_INTERVAL_SECONDS,
    DEFAULT_LISTEN,
};
use crate::startup::Application;
use crate::storage::{describe_database, open_operator_store, redact_database_url};
use samtykke_http::creditor_fanout::LookupSettings;
use samtykke_http::ConnectionLimits;
use std::time::Duration;

#[derive(Debug, Parser)]
#[command(
    name = "samtykke",
    version,
    about = "Consent and authorization server for debt-information sharing"
)]
pub struct Cli {
    /// Database URL: sqlite:PATH or postgres://USER@HOST/DB [default: sqlite://samtykke.db]
    #[arg(long, global = true, env = "SAMTYKKE_DATABASE_URL")]
    pub database_url: Option<String>,

    /// TOML configuration file (flags and environment variables take precedence)
    #[arg(long, global = true, env = "SAMTYKKE_CONFIG")]
    pub config: Option<PathBuf>,

    /// Log output format
    #[arg(long, global = true, env = "SAMTYKKE_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,

    /// client, keys, debt: create the SQLite database file if it does not
    /// exist (without it they refuse, so that a command run in the wrong
    /// directory does not write into a new, empty database). `serve` always
    /// creates its database.
    #[arg(long, global = true)]
    pub create: bool,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
// Parsed once at start-up: the size of the `serve` variant costs nothing.
#[allow(clippy::large_enum_variant)]
pub enum Command {
    /// Run the server
    Serve(ServeArgs),
    /// Manage clients (institutions' integrations)
    #[command(subcommand)]
    Client(client::ClientCommand),
    /// Manage the RS256 signing keys
    #[command(subcommand)]
    Keys(keys::KeysCommand),
    /// Manage the debt registry
    #[command(subcommand)]
    Debt(debt::DebtCommand),
    /// Manage live creditors (getDataForSSN / getalldata endpoints)
    Creditor(creditor::CreditorArgs),
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on [default: 127.0.0.1:8080]
    #[arg(long, env = "SAMTYKKE_LISTEN")]
    pub listen: Option<String>,
    /// Issuer URL [default: http:// + the listen address]
    #[arg(long, env = "SAMTYKKE_ISSUER")]
    pub issuer: Option<String>,
    /// API base URL; audiences derive from it [default: the issuer]
    #[arg(long, env = "SAMTYKKE_API_URL")]
    pub api_url: Option<String>,
    /// Production mode: sandbox off
    #[arg(long, env = "SAMTYKKE_PRODUCTION", num_args = 0..=1, default_missing_value = "true", value_parser = clap::builder::BoolishValueParser::new())]
    pub production: Option<bool>,
    /// Sandbox mode even when not on loopback
    #[arg(long, env = "SAMTYKKE_SANDBOX", num_args = 0..=1, default_missing_value = "true", value_parser = clap::builder::BoolishValueParser::new())]
    pub sandbox: Option<bool>,
    /// Access-token lifetime in seconds [default: 3600]
    #[arg(long, env = "SAMTYKKE_ACCESS_TOKEN_TTL", value_parser = clap::value_parser!(u64).range(60..=86400))]
    pub access_token_ttl: Option<u64>,
    /// Seconds between janitor passes (expire consents, purge old events); 0 = off [default: 60]
    #[arg(long, env = "SAMTYKKE_JANITOR_INTERVAL")]
    pub janitor_interval: Option<u64>,
    /// Upstream OpenID provider (issuer URL) that identifies people, e.g. ID-porten; its callback is {issuer}/login/callback
    #[arg(long, env = "SAMTYKKE_UPSTREAM_ISSUER")]
    pub upstream_issuer: Option<String>,
    /// Samtykke's client id at the upstream provider
    #[arg(long, env = "SAMTYKKE_UPSTREAM_CLIENT_ID")]
    pub upstream_client_id: Option<String>,
    /// Client secret at the upstream provider (client_secret_basic)
    #[arg(long, env = "SAMTYKKE_UPSTREAM_CLIENT_SECRET", hide_env_values = true)]
    pub upstream_client_secret: Option<String>,
    /// RSA private key (PEM file) for private_key_jwt instead of a secret
    #[arg(long, env = "SAMTYKKE_UPSTREAM_PRIVATE_KEY_FILE")]
    pub upstream_private_key_file: Option<String>,
    /// The key id (kid) of the private key as registered at the provider
    #[arg(long, env = "SAMTYKKE_UPSTREAM_PRIVATE_KEY_ID")]
    pub upstream_private_key_id: Option<String>,
    /// ID-token claim holding the national identity number [default: pid]
    #[arg(long, env = "SAMTYKKE_UPSTREAM_PID_CLAIM")]
    pub upstream_pid_claim: Option<String>,
    /// Scopes asked of the upstream provider [default: openid]
    #[arg(long, env = "SAMTYKKE_UPSTREAM_SCOPE")]
    pub upstream_scope: Option<String>,
    /// Required level(s) of assurance, e.g. idporten-loa-high; the ID token's acr is checked
    #[arg(long, env = "SAMTYKKE_UPSTREAM_ACR_VALUES")]
    pub upstream_acr_values: Option<String>,
    /// Seconds for a request's headers to arrive, from the connection opening (first request) or the request's first byte [default: 10]
    #[arg(long, env = "SAMTYKKE_HEADER_READ_TIMEOUT")]
    pub header_read_timeout: Option<u64>,
    /// Seconds a connection with no request in progress may stay silent before it is closed [default: 30]
    #[arg(long, env = "SAMTYKKE_IDLE_TIMEOUT")]
    pub idle_timeout: Option<u64>,
    /// Seconds for a request body to arrive after its headers (else 408) [default: 10]
    #[arg(long, env = "SAMTYKKE_BODY_READ_TIMEOUT")]
    pub body_read_timeout: Option<u64>,
    /// Open connections per process on the public listener; more are closed at once [default: 10000]
    #[arg(long, env = "SAMTYKKE_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// Open connections from one IP address; more are closed at once [default: 256]
    #[arg(long, env = "SAMTYKKE_MAX_CONNECTIONS_PER_IP")]
    pub max_connections_per_ip: Option<usize>,
    /// Operator listener for /metrics (and /healthz, /readyz): ADDR:PORT or `off` [default: 127.0.0.1:9464]
    #[arg(long, env = "SAMTYKKE_ADMIN_LISTEN")]
    pub admin_listen: Option<String>,
    /// Also answer GET /metrics on the public listener
    #[arg(long, env = "SAMTYKKE_METRICS_ON_PUBLIC_LISTENER", num_args = 0..=1, default_missing_value = "true", value_parser = clap::builder::BoolishValueParser::new())]
    pub metrics_on_public_listener: Option<bool>,
    /// Who runs this installation, shown on every page, e.g. "Eksempel Bank ASA" [default: sandbox: a test-service text; production: none, with a warning]
    #[arg(long, env = "SAMTYKKE_OPERATOR_NAME")]
    pub operator_name: Option<String>,
    /// The operator's logo on every page: an image file served by Samtykke (.png, .svg, .jpg, .webp, .gif) or an https:// URL
    #[arg(long, env = "SAMTYKKE_OPERATOR_LOGO")]
    pub operator_logo: Option<String>,
    /// The operator's privacy statement (https:// URL), linked from every page
    #[arg(long, env = "SAMTYKKE_OPERATOR_PRIVACY_URL")]
    pub operator_privacy_url: Option<String>,
    /// How people reach the operator: an email address or an https:// URL, shown on every page
    #[arg(long, env = "SAMTYKKE_OPERATOR_CONTACT")]
    pub operator_contact: Option<String>,
    /// SQLite commits: `full` fsyncs every commit (survives power loss), `normal` survives a process crash only [default: full in production, normal in sandbox mode]
    #[arg(
        long,
        env = "SAMTYKKE_SQLITE_SYNCHRONOUS",
        value_enum,
        ignore_case = true
    )]
    pub sqlite_synchronous: Option<SqliteSynchronous>,
    /// pushUpdates listener with mutual TLS (POST /push/rest/v1/debt/loans): ADDR:PORT or `off` [default: off]
    #[arg(long, env = "SAMTYKKE_DELIVERY_LISTEN")]
    pub delivery_listen: Option<String>,
    /// The delivery listener's server certificate chain (PEM file)
    #[arg(long, env = "SAMTYKKE_DELIVERY_TLS_CERT")]
    pub delivery_tls_cert: Option<PathBuf>,
    /// The delivery listener's private key (PEM file)
    #[arg(long, env = "SAMTYKKE_DELIVERY_TLS_KEY")]
    pub delivery_tls_key: Option<PathBuf>,
    /// CA certificate(s) (PEM file) whose client certificates the delivery listener accepts
    #[arg(long, env = "SAMTYKKE_DELIVERY_CLIENT_CA")]
    pub delivery_client_ca: Option<PathBuf>,
    /// Seconds a creditor's stored data may stand in when it does not answer a lookup; older, its loans are reported as null; 0 = never [default: 129600 (36 h)]
    #[arg(long, env = "SAMTYKKE_CREDITOR_FALLBACK_MAX_AGE")]
    pub creditor_fallback_max_age: Option<u64>,
    /// Milliseconds a lookup waits for the creditors at most, whatever they do [default: the largest creditor timeout + 100]
    #[arg(long, env = "SAMTYKKE_CREDITOR_DEADLINE_MS", value_parser = clap::value_parser!(u64).range(1..=60_000))]
    pub creditor_deadline_ms: Option<u64>,
    #[command(flatten)]
    pub creditor: creditor::CreditorServeArgs,
}

impl ServeArgs {
    /// Merges flags/environment with the file and the defaults.
    pub fn resolve(
        self,
        database_url: Option<String>,
        file: &FileConfig,
    ) -> anyhow::Result<ServeConfig> {
        let ttl = self
            .access_token_ttl
            .or(file.access_token_ttl)
            .unwrap_or(DEFAULT_ACCESS_TOKEN_TTL_SECONDS);
        if !(60..=86400).contains(&ttl) {
            anyhow::bail!("access_token_ttl must be between 60 and 86400 seconds (got {ttl})");
        }
        let (connection_limits, admin_listen) = self.connection_settings(file)?;
        let operator = crate::config::OperatorInput {
            name: self.operator_name.or_else(|| file.operator_name.clone()),
            logo: self.operator_logo.or_else(|| file.operator_logo.clone()),
            privacy_url: self
                .operator_privacy_url
                .or_else(|| file.operator_privacy_url.clone()),
            contact: self
                .operator_contact
                .or_else(|| file.operator_contact.clone()),
        }
        .resolve()?;
        let delivery = DeliveryInput {
            listen: self
                .delivery_listen
                .or_else(|| file.delivery_listen.clone()),
            tls_cert: self
                .delivery_tls_cert
                .or_else(|| file.delivery_tls_cert.clone()),
            tls_key: self
                .delivery_tls_key
                .or_else(|| file.delivery_tls_key.clone()),
            client_ca: self
                .delivery_client_ca
                .or_else(|| file.delivery_client_ca.clone()),
        }
        .resolve()?;
        let upstream = UpstreamInput {
            issuer: self
                .upstream_issuer
                .or_else(|| file.upstream_issuer.clone()),
            client_id: self
                .upstream_client_id
                .or_else(|| file.upstream_client_id.clone()),
            client_secret: self
                .upstream_client_secret
                .or_else(|| file.upstream_client_secret.clone()),
            private_key_file: self
                .upstream_private_key_file
                .or_else(|| file.upstream_private_key_file.clone()),
            private_key_id: self
                .upstream_private_key_id
                .or_else(|| file.upstream_private_key_id.clone()),
            pid_claim: self
                .upstream_pid_claim
                .or_else(|| file.upstream_pid_claim.clone()),
            scope: self.upstream_scope.or_else(|| file.upstream_scope.clone()),
            acr_values: self
                .upstream_acr_values
                .or_else(|| file.upstream_acr_values.clone()),
        }
        .resolve()?;
        Ok(ServeConfig {
            upstream,
            database_url: database_url
                .or_else(|| file.database_url.clone())
                .unwrap_or_else(|| DEFAULT_DATABASE_URL.to_owned()),
            listen: parse_listen(
                self.listen
                    .as_deref()
                    .or(file.listen.as_deref())
                    .unwrap_or(DEFAULT_LISTEN),
            )?,
            issuer: self.issuer.or_else(|| file.issuer.clone()),
            api_url: self.api_url.or_else(|| file.api_url.clone()),
            sandbox: SandboxSetting::resolve(
                self.production.or(file.production),
                self.sandbox.or(file.sandbox),
            )?,
            access_token_ttl: time::Duration::seconds(i64::try_from(ttl)?),
            janitor_interval: match self
                .janitor_interval
                .or(file.janitor_interval)
                .unwrap_or(DEFAULT_JANITOR_INTERVAL_SECONDS)
            {
                0 => None,
                seconds => Some(std::time::Duration::from_secs(seconds)),
            },
            connection_limits,
            admin_listen,
            delivery,
            metrics_on_public_listener: self
                .metrics_on_public_listener
                .or(file.metrics_on_public_listener)
                .unwrap_or(false),
            operator,
            sqlite_synchronous: self.sqlite_synchronous.or(file.sqlite_synchronous),
            creditors: self.creditor.resolve(file)?,
            creditor_lookup: creditor_settings(
                self.creditor_fallback_max_age
                    .or(file.creditor_fallback_max_age),
                self.creditor_deadline_ms.or(file.creditor_deadline_ms),
            )?,
        })
    }

    /// The connection limits and the operator listener, validated.
    fn connection_settings(
        &self,
        file: &FileConfig,
    ) -> anyhow::Result<(ConnectionLimits, Option<std::net::SocketAddr>)> {
        let defaults = ConnectionLimits::DEFAULT;
        let timeout = |name: &str, flag: Option<u64>, key: Option<u64>, default: Duration| {
            flag.or(key)
                .map_or(Ok(default), |s| connection_timeout(name, s))
        };
        let (max_connections, max_connections_per_ip) = connection_caps(
            self.max_connections
                .or(file.max_connections)
                .unwrap_or(defaults.max_connections),
            self.max_connections_per_ip
                .or(file.max_connections_per_ip)
                .unwrap_or(defaults.max_connections_per_ip),
        )?;
        let limits = ConnectionLimits {
            header_read_timeout: timeout(
                "header-read-timeout",
                self.header_read_timeout,
                file.header_read_timeout,
                defaults.header_read_timeout,
            )?,
            idle_timeout: timeout(
                "idle-timeout",
                self.idle_timeout,
                file.idle_timeout,
                defaults.idle_timeout,
            )?,
            body_read_timeout: timeout(
                "body-read-timeout",
                self.body_read_timeout,
                file.body_read_timeout,
                defaults.body_read_timeout,
            )?,
            max_connections,
            max_connections_per_ip,
        };
        let admin_listen = parse_admin_listen(
            self.admin_listen
                .as_deref()
                .or(file.admin_listen.as_deref())
                .unwrap_or(DEFAULT_ADMIN_LISTEN),
        )?;
        Ok((limits, admin_listen))
    }
}

/// The lookups' creditor settings, validated.
fn creditor_settings(
    fallback_max_age: Option<u64>,
    deadline_ms: Option<u64>,
) -> anyhow::Result<LookupSettings> {
    let mut settings = LookupSettings::default();
    if let Some(seconds) = fallback_max_age {
        if seconds > 366 * 86_400 {
            anyhow::bail!(
                "creditor_fallback_max_age must be at most a year (366 days) in seconds (got {seconds})"
            );
        }
        settings.fallback_max_age = time::Duration::seconds(i64::try_from(seconds)?);
    }
    if let Some(ms) = deadline_ms {
        if !(1..=60_000).contains(&ms) {
            anyhow::bail!("creditor_deadline_ms must be between 1 and 60000 (got {ms})");
        }
        settings.deadline = Some(Duration::from_millis(ms));
    }
    Ok(settings)
}

fn init_tracing(format: LogFormat, default_level: &str) {
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let fmt = match format {
        LogFormat::Text => fmt.boxed(),
        LogFormat::Json => fmt.json().boxed(),
    };
    let registry = tracing_subscriber::registry().with(fmt);
    let _ = match log_filter(default_level) {
        LogFilter::Targets(targets) => registry.with(targets).try_init(),
        LogFilter::Env(env) => registry.with(env).try_init(),
    };
}

/// The log filter: `SAMTYKKE_LOG`, else `RUST_LOG`, else `default_level`,
/// the first that parses.
enum LogFilter {
    /// Levels by target only (`info`, `info,sqlx=warn`): decided once per
    /// call site, with no work when a span is entered or left.
    Targets(Box<Targets>),
    /// Anything else `EnvFilter` accepts (span and field directives), which
    /// looks the span up in a shared map on every enter and exit: on the
    /// PostgreSQL feed that was about 4% of the server's CPU.
    Env(Box<EnvFilter>),
}

fn log_filter(default_level: &str) -> LogFilter {
    let configured = ["SAMTYKKE_LOG", "RUST_LOG"]
        .into_iter()
        .filter_map(|name| std::env::var(name).ok());
    first_log_filter(configured, default_level)
}

/// The first of `configured` (empty ones skipped), then `default_level`,
/// that parses.
fn first_log_filter(configured: impl Iterator<Item = String>, default_level: &str) -> LogFilter {
    let candidates = configured
        .filter(|directives| !directives.trim().is_empty())
        .chain(std::iter::once(default_level.to_owned()));
    for directives in candidates {
        // Span directives are written in brackets (`target[span{field}]=level`);
        // `Targets` would take the brackets as part of a target's name.
        if !directives.contains('[') {
            if let Ok(targets) = directives.parse::<Targets>() {
                return LogFilter::Targets(Box::new(targets));
            }
        }
        if let Ok(env) = EnvFilter::try_new(&directives) {
            return LogFilter::Env(Box::new(env));
        }
    }
    LogFilter::Env(Box::new(EnvFilter::new(default_level)))
}

/// Parses the command line and runs the command.
pub async fn run() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let file = FileConfig::load(cli.config.as_deref())?;
    let log_format = cli.log_format.or(file.log_format).unwrap_or_default();
    match cli.command {
        Command::Serve(args) => {
            init_tracing(log_format, "info,sqlx=warn");
            let config = args.resolve(cli.database_url, &file)?;
            serve(config).await
        }
        Command::Client(command) => {
            let store =
                operator_store(cli.database_url, file.database_url, log_format, cli.create).await?;
            client::run(store.as_ref(), command, &mut std::io::stdout()).await
        }
        Command::Keys(command) => {
            let store =
                operator_store(cli.database_url, file.database_url, log_format, cli.create).await?;
            keys::run(store.as_ref(), command, &mut std::io::stdout()).await
        }
        Command::Debt(command) => {
            let store =
                operator_store(cli.database_url, file.database_url, log_format, cli.create).await?;
            debt::run(store.as_ref(), command, &mut std::io::stdout()).await
        }
        Command::Creditor(args) => {
            if let Some(simulate) = args.simulate_command() {
                init_tracing(log_format, "info");
                return creditor::simulate(simulate).await;
            }
            let store = operator_store(
                cli.database_url,
                file.database_url.clone(),
                log_format,
                cli.create,
            )
            .await?;
            creditor::run(store, args, &file, &mut std::io::stdout()).await
        }
    }
}

/// The store for an operator command: flag/environment, then file, then
/// default. A SQLite file that does not exist is created only with
/// `--create`; the database used is named on standard error.
async fn operator_store(
    flag: Option<String>,
    file: Option<String>,
    log_format: LogFormat,
    create: bool,
) -> anyhow::Result<std::sync::Arc<dyn samtykke_core::store::Store>> {
    init_tracing(log_format, "warn");
    let url = flag
        .or(file)
        .unwrap_or_else(|| DEFAULT_DATABASE_URL.to_owned());
    let store = open_operator_store(&url, create).await?;
    eprintln!("samtykke: database {}", describe_database(&url));
    Ok(store)
}

async fn serve(config: ServeConfig) -> anyhow::Result<()> {
    // The handlers are in place before anyone learns the address: a SIGTERM
    // right after the banner is a graceful stop, not the default kill.
    let shutdown = shutdown_signal()?;
    let database = redact_database_url(&config.database_url);
    let app = Application::build(config).await?;
    let addr = app.local_addr()?;
    let settings = app.settings().clone();
    if let Some(delivery) = app.delivery_addr() {
        tracing::info!(%delivery, "delivery listener (pushUpdates, mutual TLS)");
    }
    if let Some(admin) = app.admin_addr() {
        tracing::info!(%admin, metrics_on_public_listener = app.metrics_on_public_listener(), "operator listener (/metrics)");
    }
    let sqlite_synchronous = app.sqlite_synchronous().map(|s| s.as_str());
    tracing::info!(%addr, issuer = %settings.issuer, api = %settings.api_base, %database, sqlite_synchronous, sandbox = settings.sandbox, "samtykke listening");
    if settings.sandbox {
        tracing::warn!("SANDBOX MODE: test environment with TestID logins and synthetic data; never use it for real people");
    }

    let mut out = std::io::stdout().lock();
    writeln!(out, "Samtykke listening on http://{addr}")?;
    writeln!(out, "  issuer    {}", settings.issuer)?;
    writeln!(out, "  api       {}", settings.api_base)?;
    writeln!(out, "  database  {database}")?;
    if let Some(synchronous) = app.sqlite_synchronous() {
        let promise = match synchronous {
            samtykke_store_sqlite::Synchronous::Full => "every commit synced: survives power loss",
            samtykke_store_sqlite::Synchronous::Normal => {
                "survives a process crash; the last commits may be lost on power loss"
            }
        };
        writeln!(out, "  synchronous  {} ({promise})", synchronous.as_str())?;
    }
    if let Some(admin) = app.admin_addr() {
        writeln!(
            out,
            "  admin     http://{admin} (/metrics, /healthz, /readyz)"
        )?;
    }
    if let Some(delivery) = app.delivery_addr() {
        writeln!(
            out,
            "  delivery  https://{delivery}{} (pushUpdates, mutual TLS)",
            samtykke_http::delivery::PUSH_PATH
        )?;
    }
    // Before the mode's lines: the banner ends with the curl hint or the
    // production line.
    match app.upstream_callback() {
        Some(callback) => {
            writeln!(out, "Identification through the upstream OpenID provider")?;
            writeln!(out, "  register this redirect URI there: {callback}")?;
        }
        None if !settings.sandbox => writeln!(
            out,
            "WARNING: no upstream OpenID provider (--upstream-issuer): nobody can log in"
        )?,
        None => {}
    }
    let missing = app.operator().missing();
    if !settings.sandbox && !missing.is_empty() {
        writeln!(
            out,
            "WARNING: the pages do not say who runs this service: set {}",
            missing.join(", ")
        )?;
    }
    if let Some(creds) = app.sandbox_credentials() {
        writeln!(
            out,
            "SANDBOX MODE (test environment: synthetic data only, never real people)"
        )?;
        writeln!(out, "  client_id      {}", creds.client_id)?;
        writeln!(out, "  client_secret  {}", creds.client_secret.expose())?;
        writeln!(out, "Try it:")?;
        writeln!(
            out,
            "  curl -u '{}:{}' {}/oauth2/token -d grant_type=client_credentials -d audience={}/v1/debt -d scope='debt.unsecured.presentation debt.unsecured.processing'",
            creds.client_id,
            creds.client_secret.expose(),
            settings.base_url(),
            settings.api_base
        )?;
    } else {
        writeln!(out, "production mode (sandbox off)")?;
    }
    out.flush()?;
    drop(out);

    app.run_until(shutdown).await.context("server failed")?;
    tracing::info!("samtykke stopped");
    Ok(())
}

/// Installs the SIGTERM and Ctrl-C (SIGINT) handlers at once; the future
/// completes on either.
#[cfg(unix)]
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()> + Send + 'static> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut terminate = signal(SignalKind::terminate()).context("SIGTERM handler")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("SIGINT handler")?;
    Ok(async move {
        tokio::select! {
            _ = terminate.recv() => {},
            _ = interrupt.recv() => {},
        }
        tracing::info!("shutting down: finishing requests in flight");
    })
}

/// Completes on Ctrl-C.
#[cfg(not(unix))]
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()> + Send + 'static> {
    Ok(async {
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("shutting down: finishing requests in flight");
    })
}

#[cfg(test)]
mod tests {
    use tracing::level_filters::LevelFilter;

    use super::*;

    fn pick(configured: &[&str]) -> LogFilter {
        first_log_filter(configured.iter().map(|s| s.to_string()), "info,sqlx=warn")
    }

    #[test]
    fn levels_by_target_become_a_targets_filter_with_the_same_meaning() {
        let LogFilter::Targets(targets) = pick(&["debug,sqlx=warn,tower_http=trace"]) else {
            panic!("levels by target should be a Targets filter");
        };
        assert!(targets.would_enable("samtykke_http::api", &tracing::Level::DEBUG));
        assert!(!targets.would_enable("samtykke_http::api", &tracing::Level::TRACE));
        assert!(!targets.would_enable("sqlx::query", &tracing::Level::INFO));
        assert!(targets.would_enable("sqlx::query", &tracing::Level::WARN));
        assert!(targets.would_enable("tower_http::trace", &tracing::Level::TRACE));
    }

    #[test]
    fn span_directives_go_to_env_filter() {
        assert!(matches!(pick(&["info,[request]=debug"]), LogFilter::Env(_)));
    }

    #[test]
    fn empty_and_unparsable_values_fall_through_to_the_next_then_the_default() {
        let LogFilter::Targets(targets) = pick(&["  ", "warn"]) else {
            panic!("the second value should be used");
        };
        assert_eq!(targets.default_level(), Some(LevelFilter::WARN));
        let LogFilter::Targets(targets) = pick(&["sqlx=loud", ""]) else {
            panic!("the default should be used");
        };
        assert_eq!(targets.default_level(), Some(LevelFilter::INFO));
        assert!(!targets.would_enable("sqlx::query", &tracing::Level::INFO));
    }
}
