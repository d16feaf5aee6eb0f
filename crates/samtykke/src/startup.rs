//! Builds the server: opens the store, makes sure a signing key and (in
//! sandbox mode) the sandbox client exist, binds the listener. Tests use the
//! same builder with port 0.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use samtykke_core::debt::{parse_delivery, SANDBOX_DELIVERY};
use samtykke_core::domain::{
    Client, ClientId, ClientName, ClientSecret, NinPolicy, OrgNumber, Purpose, RedirectUri,
};
use samtykke_core::keys::SigningKey;
use samtykke_core::store::{SandboxCredentials, Store};
use samtykke_core::{Clock, SystemClock};
use samtykke_http::identity::upstream;
use samtykke_http::{AppState, ServerSettings};
use tokio::net::TcpListener;

use samtykke_core::creditor::{Creditor, CreditorEndpoint, DEFAULT_TIMEOUT};
use samtykke_http::creditors::scheduler::DailySchedule;
use samtykke_http::creditors::simulator::{Simulator, SimulatorData, SimulatorOptions};
use samtykke_http::creditors::{CreditorClient, CreditorTls, SyncSettings};

use crate::config::{
    validate_base_url, CreditorSettings, DeliverySettings, ServeConfig, SqliteSynchronous,
};
use crate::storage::open_store_with;

/// The sandbox client's display name and organisation number (a valid but
/// unassigned-looking test number).
pub const SANDBOX_CLIENT_NAME: &str = "Sandkasse Bank (test)";
pub const SANDBOX_ORG_NUMBER: &str = "999999999";

/// A built server, bound and ready to run.
pub struct Application {
    listener: TcpListener,
    state: AppState,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    sandbox_credentials: Option<SandboxCredentials>,
    janitor_interval: Option<std::time::Duration>,
    /// The callback to register at the upstream provider, when one is used.
    upstream_callback: Option<String>,
    /// The operator listener, the connection limits, `/metrics` publicly.
    admin_listener: Option<TcpListener>,
    connection_limits: samtykke_http::ConnectionLimits,
    metrics_on_public_listener: bool,
    /// SQLite's `PRAGMA synchronous` as read back at start-up (None on
    /// PostgreSQL, or when the store was opened by the caller).
    sqlite_synchronous: Option<samtykke_store_sqlite::Synchronous>,
    /// The delivery listener (pushUpdates over mutual TLS), if it is on.
    delivery: Option<samtykke_http::DeliveryListener>,
    /// Calls live creditors; the daily getalldata, when this process runs it.
    creditor_client: CreditorClient,
    creditor_schedule: Option<(DailySchedule, SyncSettings)>,
    /// Sandbox mode's simulated live creditors, and where they listen.
    sandbox_creditors: Option<(tokio::task::JoinHandle<()>, SocketAddr)>,
}

impl Application {
    /// Opens the store (SQLite with `synchronous` FULL in production mode,
    /// NORMAL in sandbox mode, unless configured) and builds the server.
    pub async fn build(config: ServeConfig) -> anyhow::Result<Self> {
        let synchronous = config
            .sqlite_synchronous
            .unwrap_or_else(|| SqliteSynchronous::default_for(expects_sandbox(&config)));
        let opened = open_store_with(&config.database_url, Some(synchronous.to_store())).await?;
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let mut app = Self::build_with(config, opened.store, clock).await?;
        app.sqlite_synchronous = opened.sqlite_synchronous;
        Ok(app)
    }

    pub async fn build_with(
        config: ServeConfig,
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
    ) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("could not listen on {}", config.listen))?;
        let bound = listener.local_addr()?;
        let admin_listener = match config.admin_listen {
            Some(admin) => Some(TcpListener::bind(admin).await.with_context(|| {
                format!("could not listen on {admin} (admin-listen; `off` disables it)")
            })?),
            None => None,
        };
        let delivery = match &config.delivery {
            Some(settings) => Some(bind_delivery(settings).await?),
            None => None,
        };
        let issuer = match &config.issuer {
            Some(issuer) => validate_base_url("issuer", issuer)?,
            None => format!("http://{bound}"),
        };
        // The API base only prefixes URLs (and the audiences): no slash.
        let api_base = match &config.api_url {
            Some(api) => validate_base_url("api-url", api)?,
            None => issuer.clone(),
        }
        .trim_end_matches('/')
        .to_owned();
        let sandbox = config.sandbox.enabled(bound, &issuer);

        ensure_signing_key(store.as_ref(), clock.as_ref()).await?;
        let sandbox_credentials = if sandbox {
            seed_sandbox_debt(store.as_ref(), clock.as_ref()).await?;
            let own_callback = format!(
                "{}{}",
                issuer.trim_end_matches('/'),
                samtykke_http::SANDBOX_CALLBACK_PATH
            );
            Some(ensure_sandbox_client(store.as_ref(), clock.as_ref(), &own_callback).await?)
        } else {
            disable_sandbox_client(store.as_ref()).await?;
            None
        };

        let settings = ServerSettings {
            issuer,
            api_base,
            access_token_ttl: config.access_token_ttl,
            sandbox,
        };
        let callback = format!("{}{}", settings.base_url(), upstream::CALLBACK_PATH);
        let creditor_client = creditor_client(&config.creditors, sandbox)?;
        let mut state = AppState::new(store.clone(), clock.clone(), settings)
            .with_operator(config.operator)
            .with_creditor_client(creditor_client.clone())
            .with_lookup_settings(config.creditor_lookup.clone());
        let sandbox_creditors = if sandbox && config.creditors.sandbox_simulators {
            Some(start_sandbox_creditors(store.as_ref(), clock.as_ref()).await?)
        } else {
            None
        };
        let creditor_schedule = config.creditors.sync_at.map(|at| {
            (
                DailySchedule {
                    at,
                    jitter: config.creditors.sync_jitter,
                },
                SyncSettings {
                    page_size: config.creditors.page_size,
                    ..SyncSettings::default()
                },
            )
        });
        if let Some(credentials) = &sandbox_credentials {
            state = state.with_sandbox_client(credentials.client_id.as_str());
        }
        let mut upstream_callback = None;
        if let Some(up) = config.upstream {
            // An upstream provider identifies people everywhere, sandbox
            // mode included; it must answer at start-up.
            let provider = upstream::Upstream::discover(
                upstream::UpstreamConfig {
                    issuer: up.issuer,
                    client_id: up.client_id,
                    auth: up.auth,
                    pid_claim: up.pid_claim,
                    scope: up.scope,
                    acr_values: up.acr_values,
                    redirect_uri: callback.clone(),
                },
                clock.clone(),
            )
            .await?;
            tracing::info!(%callback, "identification through the upstream OpenID provider");
            state = state.with_identity_provider(Arc::new(provider));
            upstream_callback = Some(callback);
        } else if sandbox {
            // TestID lets anyone claim to be anyone: sandbox only (SPEC §6).
            state = state.with_identity_provider(Arc::new(samtykke_http::identity::TestId));
        }
        Ok(Self {
            listener,
            state,
            store,
            clock,
            sandbox_credentials,
            janitor_interval: config.janitor_interval,
            upstream_callback,
            admin_listener,
            connection_limits: config.connection_limits,
            metrics_on_public_listener: config.metrics_on_public_listener,
            sqlite_synchronous: None,
            delivery,
            creditor_client,
            creditor_schedule,
            sandbox_creditors,
        })
    }

    /// SQLite's `PRAGMA synchronous` in effect (None on PostgreSQL).
    pub fn sqlite_synchronous(&self) -> Option<samtykke_store_sqlite::Synchronous> {
        self.sqlite_synchronous
    }

    /// The delivery listener's address (pushUpdates), if it is on.
    pub fn delivery_addr(&self) -> Option<SocketAddr> {
        self.delivery.as_ref()?.listener.local_addr().ok()
    }

    /// Where sandbox mode's simulated live creditors listen, if they run.
    pub fn sandbox_creditors_addr(&self) -> Option<SocketAddr> {
        self.sandbox_creditors.as_ref().map(|(_, addr)| *addr)
    }

    /// The operator listener's address (`/metrics`), if it is on.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_listener.as_ref()?.local_addr().ok()
    }

    /// Whether the public listener answers `GET /metrics` too.
    pub fn metrics_on_public_listener(&self) -> bool {
        self.metrics_on_public_listener
    }

    /// Who runs the installation, as the pages show it.
    pub fn operator(&self) -> &samtykke_http::operator::Operator {
        self.state.operator()
    }

    /// The callback to register at the upstream provider, if one is used.
    pub fn upstream_callback(&self) -> Option<&str> {
        self.upstream_callback.as_deref()
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    pub fn settings(&self) -> &ServerSettings {
        self.state.settings()
    }

    pub fn store(&self) -> Arc<dyn Store> {
        self.store.clone()
    }

    pub fn sandbox_credentials(&self) -> Option<&SandboxCredentials> {
        self.sandbox_credentials.as_ref()
    }

    /// Serves until `shutdown` completes, then drains requests in flight.
    pub async fn run_until(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let janitor = self
            .janitor_interval
            .map(|every| crate::janitor::spawn(self.store.clone(), self.clock.clone(), every));
        let scheduler = self.creditor_schedule.clone().map(|(schedule, settings)| {
            samtykke_http::creditors::scheduler::spawn(
                self.store.clone(),
                self.creditor_client.clone(),
                self.clock.clone(),
                schedule,
                settings,
            )
        });
        let options = samtykke_http::ServeOptions {
            limits: self.connection_limits,
            admin: self.admin_listener,
            metrics_on_public_listener: self.metrics_on_public_listener,
            delivery: self.delivery,
        };
        let served = samtykke_http::serve(self.listener, self.state, options, shutdown).await;
        if let Some(janitor) = janitor {
            janitor.abort();
        }
        if let Some(scheduler) = scheduler {
            scheduler.abort();
        }
        if let Some((simulators, _)) = self.sandbox_creditors {
            simulators.abort();
        }
        served
    }
}

/// Whether the server `config` describes will run in sandbox mode, decided
/// before it binds: the address it binds has the configured IP, and an
/// issuer left to the default is `http://` + that address, as
/// [`Application::build_with`] decides it.
fn expects_sandbox(config: &ServeConfig) -> bool {
    let issuer = config
        .issuer
        .clone()
        .unwrap_or_else(|| format!("http://{}", config.listen));
    config.sandbox.enabled(config.listen, &issuer)
}

/// Creates the first signing key unless one exists (safe when several
/// processes start at once: only one key wins).
pub async fn ensure_signing_key(store: &dyn Store, clock: &dyn Clock) -> anyhow::Result<()> {
    if !store.list_signing_keys().await?.is_empty() {
        return Ok(());
    }
    let key = generate_signing_key(clock).await?;
    if store.insert_first_signing_key(&key).await? {
        tracing::info!(kid = %key.kid, "created the first signing key");
    }
    Ok(())
}

/// RSA key generation is CPU-heavy: keep it off the async workers.
pub async fn generate_signing_key(clock: &dyn Clock) -> anyhow::Result<SigningKey> {
    let now = clock.now();
    let key = tokio::task::spawn_blocking(move || SigningKey::generate(now)).await??;
    Ok(key)
}

/// Loads the synthetic people's loans (replacing the sandbox creditors' loans,
/// so a restart restores them).
async fn seed_sandbox_debt(store: &dyn Store, clock: &dyn Clock) -> anyhow::Result<()> {
    let delivery = parse_delivery(SANDBOX_DELIVERY, NinPolicy::AllowSynthetic)
        .map_err(|e| anyhow::anyhow!("the built-in sandbox debt file is broken: {e}"))?;
    store.import_delivery(&delivery, clock.now()).await?;
    Ok(())
}

/// The sandbox client, created on the first start. It accepts the loopback
/// callbacks and the server's own `/sandbox/callback` (`own_callback`, at
/// this start's base URL); a database from an earlier start, or from one
/// at another address, gets this start's callback instead of the old one.
async fn ensure_sandbox_client(
    store: &dyn Store,
    clock: &dyn Clock,
    own_callback: &str,
) -> anyhow::Result<SandboxCredentials> {
    let own_callback = RedirectUri::parse(own_callback)
        .map_err(|e| anyhow::anyhow!("the sandbox callback {own_callback} is unusable: {e}"))?;
    if let Some(existing) = store.sandbox_credentials().await? {
        if let Some(client) = store.find_client(&existing.client_id).await? {
            if client.disabled {
                store.set_client_disabled(&client.id, false).await?;
            }
            let uris = with_own_callback(&client.redirect_uris, &own_callback);
            if uris != client.redirect_uris {
                store.set_client_redirect_uris(&client.id, &uris).await?;
            }
        }
        return Ok(existing);
    }
    let secret = ClientSecret::generate();
    let client = Client {
        id: ClientId::generate(),
        secret_hash: secret.hash(),
        name: ClientName::parse(SANDBOX_CLIENT_NAME)?,
        org_number: OrgNumber::parse(SANDBOX_ORG_NUMBER)?,
        // Any local callback at /callback, on any port (RFC 8252 §7.3).
        redirect_uris: vec![
            RedirectUri::parse("http://127.0.0.1/callback")?,
            RedirectUri::parse("http://[::1]/callback")?,
            own_callback.clone(),
        ],
        purposes: vec![Purpose::Presentation, Purpose::Processing],
        may_create_agreements: true,
        may_read_events: true,
        require_pkce: false,
        disabled: false,
        created_at: clock.now(),
        token_generation: 0,
        request_objects: Default::default(),
    };
    let credentials = store.bootstrap_sandbox_client(&client, &secret).await?;
    tracing::info!(client_id = %credentials.client_id, "sandbox client ready");
    Ok(credentials)
}

/// `uris` without any earlier `/sandbox/callback` (of another address),
/// with `own` last.
fn with_own_callback(uris: &[RedirectUri], own: &RedirectUri) -> Vec<RedirectUri> {
    let mut kept: Vec<RedirectUri> = uris
        .iter()
        .filter(|u| {
            url::Url::parse(u.as_str())
                .map(|url| url.path() != samtykke_http::SANDBOX_CALLBACK_PATH)
                .unwrap_or(true)
        })
        .cloned()
        .collect();
    kept.push(own.clone());
    kept
}

/// A database that once ran as a sandbox keeps a client whose secret is
/// readable in the database: production mode disables it.
async fn disable_sandbox_client(store: &dyn Store) -> anyhow::Result<()> {
    if let Some(existing) = store.sandbox_credentials().await? {
        if let Some(client) = store.find_client(&existing.client_id).await? {
            if !client.disabled {
                store.set_client_disabled(&client.id, true).await?;
                tracing::warn!(client_id = %client.id, "sandbox mode is off: disabled the sandbox client");
            }
        }
    }
    Ok(())
}

/// Reads the delivery listener's PEM files and binds it.
async fn bind_delivery(
    settings: &DeliverySettings,
) -> anyhow::Result<samtykke_http::DeliveryListener> {
    let read = |name: &str, path: &std::path::Path| {
        std::fs::read(path).with_context(|| format!("could not read {name} {}", path.display()))
    };
    let certificate_chain = read("delivery-tls-cert", &settings.tls_cert)?;
    let private_key = read("delivery-tls-key", &settings.tls_key)?;
    let client_ca = read("delivery-client-ca", &settings.client_ca)?;
    let tls = samtykke_http::delivery::server_config(&samtykke_http::delivery::DeliveryTlsFiles {
        certificate_chain: &certificate_chain,
        private_key: &private_key,
        client_ca: &client_ca,
    })?;
    let listener = TcpListener::bind(settings.listen).await.with_context(|| {
        format!(
            "could not listen on {} (delivery-listen; `off` disables it)",
            settings.listen
        )
    })?;
    Ok(samtykke_http::DeliveryListener { listener, tls })
}

/// The client for outgoing creditor calls: TLS material from the settings;
/// synthetic people and `http://` endpoints in sandbox mode only.
fn creditor_client(settings: &CreditorSettings, sandbox: bool) -> anyhow::Result<CreditorClient> {
    let tls = CreditorTls::from_files(
        settings.client_cert.as_deref(),
        settings.client_key.as_deref(),
        settings.ca.as_deref(),
    )?;
    let policy = if sandbox {
        NinPolicy::AllowSynthetic
    } else {
        NinPolicy::RealOnly
    };
    Ok(CreditorClient::new(&tls, policy, sandbox)?)
}

/// The sandbox's slow creditor answers in about this long, well within its
/// timeout; the others in a few milliseconds.
pub const SANDBOX_SLOW_LATENCY: std::time::Duration = std::time::Duration::from_millis(150);

/// Sandbox mode: runs the built-in creditors (the sandbox delivery's
/// institutions) as simulated live creditors on a loopback port and
/// registers them (an existing registration gets this start's endpoint).
/// The last of them is slow.
async fn start_sandbox_creditors(
    store: &dyn Store,
    clock: &dyn Clock,
) -> anyhow::Result<(tokio::task::JoinHandle<()>, SocketAddr)> {
    let delivery = parse_delivery(SANDBOX_DELIVERY, NinPolicy::AllowSynthetic)
        .map_err(|e| anyhow::anyhow!("the built-in sandbox debt file is broken: {e}"))?;
    let data = SimulatorData::from_delivery(&delivery, None).map_err(anyhow::Error::msg)?;
    let institutions = data.institutions();
    let names: Vec<Option<String>> = institutions.iter().map(|fi| data.name_of(fi)).collect();
    let fast = SimulatorOptions {
        latency: std::time::Duration::from_millis(5),
        jitter: std::time::Duration::from_millis(5),
        ..SimulatorOptions::default()
    };
    let mut simulator = Simulator::new(Arc::new(data), fast);
    if let Some(slow) = institutions.last() {
        simulator = simulator.with_options_for(
            slow.clone(),
            SimulatorOptions {
                latency: SANDBOX_SLOW_LATENCY,
                jitter: std::time::Duration::from_millis(20),
                ..SimulatorOptions::default()
            },
        );
    }
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .context("could not listen for the sandbox's simulated creditors")?;
    let addr = listener.local_addr()?;
    let endpoint = CreditorEndpoint::parse(&format!("http://{addr}/"), true)?;
    for (fi, name) in institutions.iter().zip(names) {
        match store.find_creditor(fi).await? {
            Some(record) => {
                let mut creditor = record.creditor;
                creditor.endpoint = endpoint.clone();
                store.update_creditor(&creditor).await?;
            }
            None => {
                let creditor = Creditor {
                    id: fi.clone(),
                    name: name.unwrap_or_else(|| samtykke_core::debt::default_creditor_name(fi)),
                    endpoint: endpoint.clone(),
                    timeout: DEFAULT_TIMEOUT,
                    max_concurrent: None,
                    certificate_org: None,
                    always_ask: false,
                    enabled: true,
                    page_size: None,
                    created_at: clock.now(),
                };
                match store.insert_creditor(&creditor).await {
                    // Another process registered it meanwhile.
                    Err(samtykke_core::store::StoreError::Conflict(_)) => {}
                    other => other?,
                }
            }
        }
    }
    // Their data was seeded from the same file at this start: that is
    // today's getalldata (the scheduler syncs them from the next day on).
    let today = clock.now().to_offset(time::UtcOffset::UTC).date();
    for fi in &institutions {
        store.claim_daily_sync(fi, today).await?;
    }
    tracing::info!(%addr, creditors = institutions.len(), "sandbox: simulated live creditors");
    let task = tokio::spawn(async move {
        if let Err(e) = simulator
            .serve(listener, None, std::future::pending::<()>())
            .await
        {
            tracing::warn!(error = %e, "sandbox: the simulated creditors stopped");
        }
    });
    Ok((task, addr))
}
