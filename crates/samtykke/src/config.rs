//! Configuration: command-line flags, then `SAMTYKKE_*` environment
//! variables (clap reads both), then an optional TOML file, then defaults.
//! Every setting is documented in `docs/configuration.md`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use serde::Deserialize;

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
pub const DEFAULT_DATABASE_URL: &str = "sqlite://samtykke.db";
pub const DEFAULT_ACCESS_TOKEN_TTL_SECONDS: u64 = 3600;
pub const DEFAULT_JANITOR_INTERVAL_SECONDS: u64 = 60;
/// The operator listener (`/metrics`): loopback only unless told otherwise.
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:9464";

/// The optional TOML file (`--config FILE` / `SAMTYKKE_CONFIG`). Keys are the
/// long flag names with `_` for `-`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub database_url: Option<String>,
    pub listen: Option<String>,
    pub issuer: Option<String>,
    pub api_url: Option<String>,
    pub production: Option<bool>,
    pub sandbox: Option<bool>,
    pub access_token_ttl: Option<u64>,
    pub janitor_interval: Option<u64>,
    pub log_format: Option<LogFormat>,
    // Upstream OpenID Connect identification (docs/identity.md).
    pub upstream_issuer: Option<String>,
    pub upstream_client_id: Option<String>,
    pub upstream_client_secret: Option<String>,
    pub upstream_private_key_file: Option<String>,
    pub upstream_private_key_id: Option<String>,
    pub upstream_pid_claim: Option<String>,
    pub upstream_scope: Option<String>,
    pub upstream_acr_values: Option<String>,
    // Connection limits and the operator listener (docs/operations.md).
    pub header_read_timeout: Option<u64>,
    pub idle_timeout: Option<u64>,
    pub body_read_timeout: Option<u64>,
    pub max_connections: Option<usize>,
    pub max_connections_per_ip: Option<usize>,
    pub admin_listen: Option<String>,
    pub metrics_on_public_listener: Option<bool>,
    // Who runs the installation, shown on every page (docs/configuration.md).
    pub operator_name: Option<String>,
    pub operator_logo: Option<String>,
    pub operator_privacy_url: Option<String>,
    pub operator_contact: Option<String>,
    // Durability of SQLite commits (docs/operations.md#durability).
    pub sqlite_synchronous: Option<SqliteSynchronous>,
    // The delivery listener, pushUpdates over mutual TLS (docs/creditors.md).
    pub delivery_listen: Option<String>,
    pub delivery_tls_cert: Option<PathBuf>,
    pub delivery_tls_key: Option<PathBuf>,
    pub delivery_client_ca: Option<PathBuf>,
    // Debt lookups at live creditors (docs/creditors.md).
    pub creditor_fallback_max_age: Option<u64>,
    pub creditor_deadline_ms: Option<u64>,
    // Live creditors (docs/creditors.md).
    pub creditor_client_cert: Option<String>,
    pub creditor_client_key: Option<String>,
    pub creditor_ca: Option<String>,
    pub creditor_sync_at: Option<String>,
    pub creditor_sync_jitter: Option<u64>,
    pub creditor_page_size: Option<u32>,
    pub creditor_sync: Option<bool>,
}

impl FileConfig {
    pub fn load(path: Option<&Path>) -> anyhow::Result<Self> {
        let Some(path) = path else {
            return Ok(Self::default());
        };
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("could not read config file {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("invalid config file {}", path.display()))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// `--sqlite-synchronous`: SQLite's `PRAGMA synchronous` for the server's
/// connections. Unset, production mode uses `full` and sandbox mode
/// `normal` ([`SqliteSynchronous::default_for`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum SqliteSynchronous {
    /// An fsync of the WAL at every commit (per batch of the group
    /// commit): an acknowledged write survives power loss.
    Full,
    /// The WAL is synced at checkpoints only: an acknowledged write
    /// survives a crash of the process, not necessarily a power loss.
    Normal,
}

impl SqliteSynchronous {
    /// The default of a server in sandbox mode or not.
    pub fn default_for(sandbox: bool) -> Self {
        if sandbox {
            Self::Normal
        } else {
            Self::Full
        }
    }

    /// The store's setting.
    pub fn to_store(self) -> samtykke_store_sqlite::Synchronous {
        match self {
            Self::Full => samtykke_store_sqlite::Synchronous::Full,
            Self::Normal => samtykke_store_sqlite::Synchronous::Normal,
        }
    }
}

/// Everything `samtykke serve` needs, resolved.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub database_url: String,
    pub listen: SocketAddr,
    /// None = `http://` + the bound address.
    pub issuer: Option<String>,
    /// None = the issuer.
    pub api_url: Option<String>,
    pub sandbox: SandboxSetting,
    pub access_token_ttl: time::Duration,
    /// None = no background janitor in this process.
    pub janitor_interval: Option<std::time::Duration>,
    /// The upstream OpenID Connect provider that identifies people; None =
    /// TestID in sandbox mode, nobody can be identified in production.
    pub upstream: Option<UpstreamSettings>,
    /// Timeouts and caps of the public listener's connections.
    pub connection_limits: samtykke_http::ConnectionLimits,
    /// The operator listener (`/metrics`, `/healthz`, `/readyz`); None = off.
    pub admin_listen: Option<SocketAddr>,
    /// `GET /metrics` on the public listener too.
    pub metrics_on_public_listener: bool,
    /// Who runs the installation (every page shows it).
    pub operator: samtykke_http::operator::Operator,
    /// SQLite's `PRAGMA synchronous`; None = the mode's default (FULL in
    /// production, NORMAL in sandbox mode). Ignored on PostgreSQL.
    pub sqlite_synchronous: Option<SqliteSynchronous>,
    /// The delivery listener (pushUpdates over mutual TLS); None = off.
    pub delivery: Option<DeliverySettings>,
    /// Live creditors: outbound TLS, the daily `getalldata`.
    pub creditors: CreditorSettings,
    /// How debt lookups treat the live creditors.
    pub creditor_lookup: samtykke_http::creditor_fanout::LookupSettings,
}

/// The delivery listener as configured: where it listens and its PEM files
/// (read when the server starts).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliverySettings {
    pub listen: SocketAddr,
    /// The server's certificate chain.
    pub tls_cert: PathBuf,
    /// The server certificate's private key.
    pub tls_key: PathBuf,
    /// The CA certificate(s) that issue the creditors' client certificates.
    pub client_ca: PathBuf,
}

/// The delivery settings as given (flags, environment, file).
#[derive(Debug, Default)]
pub struct DeliveryInput {
    pub listen: Option<String>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub client_ca: Option<PathBuf>,
}

impl DeliveryInput {
    /// Checks the settings: None when the listener is off (the default, or
    /// `--delivery-listen off`). The three files go together with the
    /// address.
    pub fn resolve(self) -> anyhow::Result<Option<DeliverySettings>> {
        let files = [
            ("delivery-tls-cert", self.tls_cert),
            ("delivery-tls-key", self.tls_key),
            ("delivery-client-ca", self.client_ca),
        ];
        let listen = self
            .listen
            .filter(|l| !l.trim().is_empty() && !l.eq_ignore_ascii_case("off"));
        let Some(listen) = listen else {
            if let Some((name, _)) = files.iter().find(|(_, file)| file.is_some()) {
                bail!("--{name} needs --delivery-listen (the pushUpdates listener's address)");
            }
            return Ok(None);
        };
        let listen: SocketAddr = listen.parse().with_context(|| {
            format!("delivery-listen must be an IP address and port, e.g. 0.0.0.0:8443, or off (got {listen})")
        })?;
        let missing: Vec<String> = files
            .iter()
            .filter(|(_, file)| file.is_none())
            .map(|(name, _)| format!("--{name}"))
            .collect();
        if !missing.is_empty() {
            bail!(
                "--delivery-listen needs --delivery-tls-cert, --delivery-tls-key and --delivery-client-ca together (missing: {})",
                missing.join(", ")
            );
        }
        let [(_, Some(tls_cert)), (_, Some(tls_key)), (_, Some(client_ca))] = files else {
            bail!("--delivery-listen needs --delivery-tls-cert, --delivery-tls-key and --delivery-client-ca");
        };
        Ok(Some(DeliverySettings {
            listen,
            tls_cert,
            tls_key,
            client_ca,
        }))
    }
}

/// The default time of the daily `getalldata` (UTC).
pub const DEFAULT_CREDITOR_SYNC_AT: &str = "05:30";
/// The default spread of the daily `getalldata` after its time, in seconds.
pub const DEFAULT_CREDITOR_SYNC_JITTER_SECONDS: u64 = 600;

/// Live creditors' settings (issue 21; docs/creditors.md).
#[derive(Debug, Clone)]
pub struct CreditorSettings {
    /// Samtykke's client certificate and key (PEM files) for mutual TLS.
    pub client_cert: Option<std::path::PathBuf>,
    pub client_key: Option<std::path::PathBuf>,
    /// The CA bundle trusted for creditors' servers (replaces the built-in roots).
    pub ca: Option<std::path::PathBuf>,
    /// The daily `getalldata`: (hour, minute) UTC; None = no scheduler here.
    pub sync_at: Option<(u8, u8)>,
    /// Each creditor's sync starts at a random point this long after `sync_at`.
    pub sync_jitter: std::time::Duration,
    /// Customers on a full `getalldata` page, for creditors without their own.
    pub page_size: u32,
    /// Sandbox mode: run the built-in creditors as simulated live creditors.
    pub sandbox_simulators: bool,
}

impl Default for CreditorSettings {
    fn default() -> Self {
        Self {
            client_cert: None,
            client_key: None,
            ca: None,
            sync_at: Some((5, 30)),
            sync_jitter: std::time::Duration::from_secs(DEFAULT_CREDITOR_SYNC_JITTER_SECONDS),
            page_size: samtykke_core::creditor::DEFAULT_PAGE_SIZE,
            sandbox_simulators: true,
        }
    }
}

/// Parses `HH:MM` (UTC).
pub fn parse_sync_at(s: &str) -> anyhow::Result<(u8, u8)> {
    let parsed = s.split_once(':').and_then(|(h, m)| {
        let (h, m) = (h.parse::<u8>().ok()?, m.parse::<u8>().ok()?);
        (h < 24 && m < 60 && s.len() == 5).then_some((h, m))
    });
    parsed.with_context(|| {
        format!("--creditor-sync-at must be HH:MM in UTC, such as 05:30 (got {s:?})")
    })
}

pub const DEFAULT_UPSTREAM_PID_CLAIM: &str = "pid";
pub const DEFAULT_UPSTREAM_SCOPE: &str = "openid";

/// The upstream provider as configured (the callback is derived from the
/// issuer at start-up). Debug never prints the secret or the key.
#[derive(Debug, Clone)]
pub struct UpstreamSettings {
    pub issuer: String,
    pub client_id: String,
    pub auth: samtykke_http::identity::upstream::ClientAuth,
    pub pid_claim: String,
    pub scope: String,
    pub acr_values: Option<String>,
}

/// The upstream settings as given (flags, environment, file), before
/// they are checked.
#[derive(Debug, Default)]
pub struct UpstreamInput {
    pub issuer: Option<String>,
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
    pub private_key_file: Option<String>,
    pub private_key_id: Option<String>,
    pub pid_claim: Option<String>,
    pub scope: Option<String>,
    pub acr_values: Option<String>,
}

impl UpstreamInput {
    /// Checks the settings: None when no upstream is configured at all.
    pub fn resolve(self) -> anyhow::Result<Option<UpstreamSettings>> {
        use samtykke_http::identity::upstream::ClientAuth;
        let nonempty = |v: Option<String>| v.filter(|s| !s.trim().is_empty());
        let Some(issuer) = nonempty(self.issuer) else {
            let given = [
                ("upstream-client-id", self.client_id.is_some()),
                ("upstream-client-secret", self.client_secret.is_some()),
                ("upstream-private-key-file", self.private_key_file.is_some()),
                ("upstream-private-key-id", self.private_key_id.is_some()),
                ("upstream-pid-claim", self.pid_claim.is_some()),
                ("upstream-scope", self.scope.is_some()),
                ("upstream-acr-values", self.acr_values.is_some()),
            ];
            if let Some((name, _)) = given.iter().find(|(_, set)| *set) {
                bail!("--{name} needs --upstream-issuer (the upstream OpenID provider)");
            }
            return Ok(None);
        };
        validate_base_url("upstream-issuer", &issuer)?;
        let url = url::Url::parse(&issuer)?;
        let loopback = matches!(url.host_str(), Some("127.0.0.1" | "localhost" | "[::1]"));
        if url.scheme() != "https" && !loopback {
            bail!("upstream-issuer must be an https:// URL (http:// only on loopback, for tests): {issuer}");
        }
        let Some(client_id) = nonempty(self.client_id) else {
            bail!("--upstream-issuer needs --upstream-client-id (Samtykke's client id at the provider)");
        };
        let auth = match (nonempty(self.client_secret), nonempty(self.private_key_file)) {
            (Some(_), Some(_)) => bail!(
                "give either --upstream-client-secret or --upstream-private-key-file, not both"
            ),
            (None, None) => bail!(
                "the upstream client needs --upstream-client-secret or --upstream-private-key-file (private_key_jwt)"
            ),
            (Some(secret), None) => {
                if self.private_key_id.is_some() {
                    bail!("--upstream-private-key-id goes with --upstream-private-key-file");
                }
                ClientAuth::Secret(secret)
            }
            (None, Some(file)) => {
                let pem = std::fs::read_to_string(&file)
                    .with_context(|| format!("could not read upstream-private-key-file {file}"))?;
                if !pem.contains("PRIVATE KEY-----") {
                    bail!("upstream-private-key-file {file} is not a PEM private key");
                }
                ClientAuth::PrivateKey {
                    pem,
                    kid: nonempty(self.private_key_id),
                }
            }
        };
        let pid_claim =
            nonempty(self.pid_claim).unwrap_or_else(|| DEFAULT_UPSTREAM_PID_CLAIM.to_owned());
        let scope = nonempty(self.scope).unwrap_or_else(|| DEFAULT_UPSTREAM_SCOPE.to_owned());
        if !scope.split_whitespace().any(|s| s == "openid") {
            bail!("upstream-scope must include openid (got {scope})");
        }
        Ok(Some(UpstreamSettings {
            issuer,
            client_id,
            auth,
            pid_claim,
            scope,
            acr_values: nonempty(self.acr_values),
        }))
    }
}

/// The operator settings as given (`--operator-name`, `--operator-logo`,
/// `--operator-privacy-url`, `--operator-contact`), before they are checked.
#[derive(Debug, Default)]
pub struct OperatorInput {
    pub name: Option<String>,
    pub logo: Option<String>,
    pub privacy_url: Option<String>,
    pub contact: Option<String>,
}

/// The largest logo file served (`--operator-logo FILE`).
pub const MAX_OPERATOR_LOGO_BYTES: u64 = 512 * 1024;

impl OperatorInput {
    /// Checks the settings and reads the logo file.
    pub fn resolve(self) -> anyhow::Result<samtykke_http::operator::Operator> {
        use samtykke_http::operator::{Operator, OperatorContact, OperatorLogo};
        let nonempty = |v: Option<String>| v.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty());
        let name = nonempty(self.name);
        if let Some(name) = &name {
            if name.chars().count() > 100 || name.chars().any(char::is_control) {
                bail!("operator-name must be at most 100 characters on one line (got {name:?})");
            }
        }
        let privacy_url = nonempty(self.privacy_url)
            .map(|url| page_link_url("operator-privacy-url", &url))
            .transpose()?;
        let contact = match nonempty(self.contact) {
            None => None,
            Some(c) if c.starts_with("https://") || c.starts_with("http://") => {
                Some(OperatorContact::Url(page_link_url("operator-contact", &c)?))
            }
            Some(c) => {
                let address = c.strip_prefix("mailto:").unwrap_or(&c);
                let valid = address.split_once('@').is_some_and(|(local, domain)| {
                    !local.is_empty() && domain.contains('.') && !domain.starts_with('.')
                }) && !address
                    .chars()
                    .any(|c| c.is_whitespace() || c.is_control() || "<>\"'?#/\\".contains(c));
                if !valid {
                    bail!("operator-contact must be an email address or an https:// URL (got {c})");
                }
                Some(OperatorContact::Email(address.to_owned()))
            }
        };
        let logo = match nonempty(self.logo) {
            None => None,
            Some(url) if url.starts_with("https://") || url.starts_with("http://") => {
                Some(OperatorLogo::Url(page_link_url("operator-logo", &url)?))
            }
            Some(file) => {
                let path = Path::new(&file);
                let content_type = match path
                    .extension()
                    .and_then(|e| e.to_str())
                    .map(str::to_ascii_lowercase)
                    .as_deref()
                {
                    Some("png") => "image/png",
                    Some("svg") => "image/svg+xml",
                    Some("jpg" | "jpeg") => "image/jpeg",
                    Some("webp") => "image/webp",
                    Some("gif") => "image/gif",
                    _ => bail!(
                        "operator-logo must be an https:// URL or a .png, .svg, .jpg, .webp or .gif file (got {file})"
                    ),
                };
                let size = std::fs::metadata(path)
                    .with_context(|| format!("could not read operator-logo {file}"))?
                    .len();
                if size > MAX_OPERATOR_LOGO_BYTES {
                    bail!("operator-logo {file} is {size} bytes; at most {MAX_OPERATOR_LOGO_BYTES} are served");
                }
                let bytes = std::fs::read(path)
                    .with_context(|| format!("could not read operator-logo {file}"))?;
                Some(OperatorLogo::File {
                    bytes: bytes.into(),
                    content_type,
                })
            }
        };
        Ok(Operator {
            name,
            logo,
            privacy_url,
            contact,
        })
    }
}

/// A URL a page links to or loads: `https://` (`http://` only on
/// loopback, for tests), written into pages as it is.
fn page_link_url(name: &str, value: &str) -> anyhow::Result<String> {
    let url = url::Url::parse(value).with_context(|| format!("{name} is not a URL: {value}"))?;
    let loopback = matches!(url.host_str(), Some("127.0.0.1" | "localhost" | "[::1]"));
    if url.scheme() != "https" && !(url.scheme() == "http" && loopback) {
        bail!("{name} must be an https:// URL (got {value})");
    }
    if value.chars().any(|c| {
        matches!(c, '"' | '\'' | '<' | '>' | '`' | '\\') || c.is_whitespace() || c.is_control()
    }) {
        bail!("{name} must not contain quotes, angle brackets, backslashes or spaces: {value}");
    }
    Ok(value.to_owned())
}

/// Whether sandbox mode was asked for explicitly (SPEC §12).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SandboxSetting {
    /// `--production`: never sandbox.
    Off,
    /// `--sandbox`: sandbox wherever it listens.
    On,
    /// Sandbox only on a loopback address with an `http://` issuer.
    Auto,
}

impl SandboxSetting {
    pub fn resolve(production: Option<bool>, sandbox: Option<bool>) -> anyhow::Result<Self> {
        match (production.unwrap_or(false), sandbox) {
            (true, Some(true)) => bail!("--production and --sandbox contradict each other"),
            (true, _) | (false, Some(false)) => Ok(Self::Off),
            (false, Some(true)) => Ok(Self::On),
            (false, None) => Ok(Self::Auto),
        }
    }

    /// Decides for a server bound to `listen` with issuer `issuer`.
    pub fn enabled(self, listen: SocketAddr, issuer: &str) -> bool {
        match self {
            Self::Off => false,
            Self::On => true,
            Self::Auto => listen.ip().is_loopback() && issuer.starts_with("http://"),
        }
    }
}

/// Checks an issuer or API base URL: absolute http(s), no query or fragment.
pub fn validate_base_url(name: &str, value: &str) -> anyhow::Result<String> {
    let url = url::Url::parse(value).with_context(|| format!("{name} is not a URL: {value}"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        bail!("{name} must be an http:// or https:// URL: {value}");
    }
    if url.query().is_some() || url.fragment().is_some() {
        bail!("{name} must not have a query or fragment: {value}");
    }
    // It is written into pages and headers as it is.
    if value.chars().any(|c| {
        matches!(c, '"' | '\'' | '<' | '>' | '`' | '\\') || c.is_whitespace() || c.is_control()
    }) {
        bail!("{name} must not contain quotes, angle brackets, backslashes or spaces: {value}");
    }
    // Kept exactly as given: the issuer is an identifier compared byte for
    // byte (a trailing slash included); URLs are built on it without one.
    Ok(value.to_owned())
}

pub fn parse_listen(value: &str) -> anyhow::Result<SocketAddr> {
    value.parse().with_context(|| {
        format!("listen must be an IP address and port, e.g. 127.0.0.1:8080 (got {value})")
    })
}

/// The longest any connection timeout may be set to (an hour).
pub const MAX_TIMEOUT_SECONDS: u64 = 3600;
/// The most connections a listener may be allowed.
pub const MAX_MAX_CONNECTIONS: usize = 1_000_000;

/// A connection timeout in seconds: 1 to [`MAX_TIMEOUT_SECONDS`].
pub fn connection_timeout(name: &str, seconds: u64) -> anyhow::Result<std::time::Duration> {
    if !(1..=MAX_TIMEOUT_SECONDS).contains(&seconds) {
        bail!("{name} must be between 1 and {MAX_TIMEOUT_SECONDS} seconds (got {seconds})");
    }
    Ok(std::time::Duration::from_secs(seconds))
}

/// Checks the connection caps: the total at least 1, the per-address cap
/// between 1 and the total.
pub fn connection_caps(total: usize, per_ip: usize) -> anyhow::Result<(usize, usize)> {
    if !(1..=MAX_MAX_CONNECTIONS).contains(&total) {
        bail!("max-connections must be between 1 and {MAX_MAX_CONNECTIONS} (got {total})");
    }
    if !(1..=total).contains(&per_ip) {
        bail!(
            "max-connections-per-ip must be between 1 and max-connections ({total}) (got {per_ip})"
        );
    }
    Ok((total, per_ip))
}

/// `--admin-listen`: an IP address and port, or `off`.
pub fn parse_admin_listen(value: &str) -> anyhow::Result<Option<SocketAddr>> {
    if value.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    value.parse().map(Some).with_context(|| {
        format!("admin-listen must be an IP address and port, e.g. 127.0.0.1:9464, or off (got {value})")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls_that_could_break_out_of_a_page_attribute_are_refused() {
        assert!(validate_base_url("issuer", "https://access.example.no/auth").is_ok());
        for bad in [
            "https://a.example/\"x",
            "https://a.example/<p>",
            "https://a.example/a b",
            "https://a.example/'",
            "ftp://a.example",
            "https://a.example/?q=1",
        ] {
            assert!(validate_base_url("issuer", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sandbox_is_automatic_only_on_loopback_http() {
        let auto = SandboxSetting::resolve(None, None).unwrap();
        let lo: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        let any: SocketAddr = "0.0.0.0:8080".parse().unwrap();
        assert!(auto.enabled(lo, "http://127.0.0.1:8080"));
        assert!(!auto.enabled(lo, "https://access.example.no"));
        assert!(!auto.enabled(any, "http://0.0.0.0:8080"));
        assert!(SandboxSetting::resolve(None, Some(true))
            .unwrap()
            .enabled(any, "https://x"));
        assert!(!SandboxSetting::resolve(Some(true), None)
            .unwrap()
            .enabled(lo, "http://x"));
        assert!(SandboxSetting::resolve(Some(true), Some(true)).is_err());
    }

    fn upstream(issuer: &str) -> UpstreamInput {
        UpstreamInput {
            issuer: Some(issuer.to_owned()),
            client_id: Some("samtykke".to_owned()),
            client_secret: Some("secret".to_owned()),
            ..UpstreamInput::default()
        }
    }

    #[test]
    fn upstream_settings_are_checked_with_clear_messages() {
        assert!(UpstreamInput::default().resolve().unwrap().is_none());
        let ok = upstream("https://idporten.no").resolve().unwrap().unwrap();
        assert_eq!(
            (ok.pid_claim.as_str(), ok.scope.as_str()),
            ("pid", "openid")
        );
        assert!(
            !format!("{ok:?}").contains("secret\""),
            "the secret is never printed"
        );
        let error = |input: UpstreamInput| input.resolve().unwrap_err().to_string();
        assert!(error(upstream("not a url")).contains("upstream-issuer is not a URL"));
        assert!(error(upstream("http://idporten.no")).contains("https://"));
        assert!(upstream("http://127.0.0.1:4000").resolve().is_ok());
        let no_id = UpstreamInput {
            client_id: None,
            ..upstream("https://idporten.no")
        };
        assert!(error(no_id).contains("--upstream-client-id"));
        let no_secret = UpstreamInput {
            client_secret: None,
            ..upstream("https://idporten.no")
        };
        assert!(
            error(no_secret).contains("--upstream-client-secret or --upstream-private-key-file")
        );
        let both = UpstreamInput {
            private_key_file: Some("/nonexistent.pem".to_owned()),
            ..upstream("https://idporten.no")
        };
        assert!(error(both).contains("not both"));
        let no_issuer = UpstreamInput {
            client_id: Some("x".to_owned()),
            ..UpstreamInput::default()
        };
        assert!(error(no_issuer).contains("needs --upstream-issuer"));
        let scope = UpstreamInput {
            scope: Some("profile".to_owned()),
            ..upstream("https://idporten.no")
        };
        assert!(error(scope).contains("must include openid"));
        let file: FileConfig = toml::from_str("upstream_issuer = \"https://idporten.no\"\nupstream_acr_values = \"idporten-loa-high\"").unwrap();
        assert_eq!(
            file.upstream_acr_values.as_deref(),
            Some("idporten-loa-high")
        );
    }

    #[test]
    fn sqlite_synchronous_defaults_to_full_outside_sandbox_and_reads_from_the_file() {
        assert_eq!(
            SqliteSynchronous::default_for(false),
            SqliteSynchronous::Full
        );
        assert_eq!(
            SqliteSynchronous::default_for(true),
            SqliteSynchronous::Normal
        );
        let c: FileConfig = toml::from_str("sqlite_synchronous = \"normal\"").unwrap();
        assert_eq!(c.sqlite_synchronous, Some(SqliteSynchronous::Normal));
        assert!(toml::from_str::<FileConfig>("sqlite_synchronous = \"off\"").is_err());
    }

    #[test]
    fn the_config_file_refuses_unknown_keys() {
        assert!(toml::from_str::<FileConfig>("listen = \"127.0.0.1:1\"\nbogus = 1").is_err());
        let c: FileConfig = toml::from_str("production = true\naccess_token_ttl = 600").unwrap();
        assert_eq!(c.production, Some(true));
        assert_eq!(c.access_token_ttl, Some(600));
    }

    #[test]
    fn the_delivery_listener_is_off_by_default_and_needs_its_three_files() {
        assert_eq!(DeliveryInput::default().resolve().unwrap(), None);
        let off = DeliveryInput {
            listen: Some("off".into()),
            ..DeliveryInput::default()
        };
        assert_eq!(off.resolve().unwrap(), None);
        let all = || DeliveryInput {
            listen: Some("127.0.0.1:8443".into()),
            tls_cert: Some("server.pem".into()),
            tls_key: Some("server.key".into()),
            client_ca: Some("ca.pem".into()),
        };
        let settings = all().resolve().unwrap().unwrap();
        assert_eq!(settings.listen, "127.0.0.1:8443".parse().unwrap());
        assert_eq!(settings.client_ca, PathBuf::from("ca.pem"));
        let error = |input: DeliveryInput| input.resolve().unwrap_err().to_string();
        let no_key = DeliveryInput {
            tls_key: None,
            client_ca: None,
            ..all()
        };
        assert!(
            error(no_key).contains("(missing: --delivery-tls-key, --delivery-client-ca)"),
            "names what is missing"
        );
        let no_listen = DeliveryInput {
            listen: None,
            ..all()
        };
        assert!(error(no_listen).contains("--delivery-tls-cert needs --delivery-listen"));
        let bad = DeliveryInput {
            listen: Some("localhost".into()),
            ..all()
        };
        assert!(error(bad).contains("delivery-listen must be an IP address and port"));
        let file: FileConfig = toml::from_str(
            "delivery_listen = \"0.0.0.0:8443\"\ndelivery_client_ca = \"/etc/samtykke/ca.pem\"",
        )
        .unwrap();
        assert_eq!(file.delivery_listen.as_deref(), Some("0.0.0.0:8443"));
    }

    #[test]
    fn connection_settings_are_validated() {
        assert!(connection_timeout("idle-timeout", 0).is_err());
        assert!(connection_timeout("idle-timeout", 3601).is_err());
        assert_eq!(
            connection_timeout("idle-timeout", 5).unwrap(),
            std::time::Duration::from_secs(5)
        );
        assert!(connection_caps(0, 0).is_err());
        assert!(connection_caps(10, 0).is_err());
        assert!(connection_caps(10, 11).is_err());
        assert_eq!(connection_caps(10, 10).unwrap(), (10, 10));
        assert_eq!(parse_admin_listen("off").unwrap(), None);
        assert_eq!(
            parse_admin_listen("127.0.0.1:9464").unwrap(),
            Some("127.0.0.1:9464".parse().unwrap())
        );
        assert!(parse_admin_listen("localhost").is_err());
    }
}
