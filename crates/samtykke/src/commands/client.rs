//! `samtykke client create|list|show|rotate-secret|disable|enable|delete`.

use std::io::Write;

use anyhow::{anyhow, Context};
use clap::{Args, Subcommand, ValueEnum};
use samtykke_core::domain::{
    Client, ClientId, ClientKeySet, ClientKeys, ClientName, ClientSecret, FetchUri, OrgNumber,
    Purpose, RedirectUri, RequestObjectPolicy,
};
use samtykke_core::store::{Store, StoreError};
use samtykke_core::{Clock, SystemClock};
use samtykke_http::CLIENT_CACHE_TTL;
use serde_json::json;

#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// Register a client; its secret is printed once
    Create(CreateArgs),
    /// List every client
    List {
        /// Print a JSON array
        #[arg(long)]
        json: bool,
    },
    /// Show one client
    Show {
        client_id: String,
        /// Print JSON
        #[arg(long)]
        json: bool,
    },
    /// Replace the client's secret; the new one is printed once
    RotateSecret {
        client_id: String,
        /// Print {"client_id": …, "client_secret": …}
        #[arg(long)]
        json: bool,
    },
    /// Refuse the client's authentication until enabled again
    Disable { client_id: String },
    /// Allow a disabled client again
    Enable { client_id: String },
    /// Delete the client and every token issued to it
    Delete { client_id: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PurposeArg {
    Presentation,
    Processing,
}

#[derive(Debug, Clone, Args)]
pub struct CreateArgs {
    /// Display name shown to individuals on the consent page
    #[arg(long)]
    pub name: String,
    /// Organisation number (9 digits, mod-11 checked)
    #[arg(long)]
    pub org: String,
    /// Redirect URI for the authorization-code flow (repeatable; exact match)
    #[arg(long = "redirect-uri")]
    pub redirect_uris: Vec<String>,
    /// Purpose the client may fetch debt for (repeatable)
    #[arg(long = "purpose", value_enum)]
    pub purposes: Vec<PurposeArg>,
    /// May register agreement consents (scope consent.create)
    #[arg(long)]
    pub agreement: bool,
    /// May read the consent event feed (scope client.access.consent.events)
    #[arg(long)]
    pub events: bool,
    /// Must use PKCE (S256) in the authorization-code flow
    #[arg(long)]
    pub require_pkce: bool,
    /// URL of the client's JWK set, to verify its signed request objects
    /// (https; http only on a loopback host, for sandbox tests)
    #[arg(long, value_name = "URL", conflicts_with = "jwks")]
    pub jwks_uri: Option<String>,
    /// The client's public JWK set for signed request objects, as JSON or
    /// @FILE (RSA keys for RS256, P-256 keys for ES256)
    #[arg(long, value_name = "JSON|@FILE")]
    pub jwks: Option<String>,
    /// A request_uri the client may send (repeatable; exact match; the only
    /// URIs the server fetches request objects from)
    #[arg(long = "request-uri", value_name = "URL")]
    pub request_uris: Vec<String>,
    /// Accept unsigned (alg=none) request objects from the client
    #[arg(long)]
    pub allow_unsigned_request_objects: bool,
    /// Print {"client_id": …, "client_secret": …} for scripts
    #[arg(long)]
    pub json: bool,
}

/// Validates the arguments into a client with a fresh id and secret.
pub fn new_client(args: &CreateArgs, clock: &dyn Clock) -> anyhow::Result<(Client, ClientSecret)> {
    let name = ClientName::parse(&args.name).context("--name")?;
    let org_number = OrgNumber::parse(&args.org).with_context(|| format!("--org {}", args.org))?;
    let redirect_uris = args
        .redirect_uris
        .iter()
        .map(|u| RedirectUri::parse(u).with_context(|| format!("--redirect-uri {u}")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut purposes: Vec<Purpose> = args
        .purposes
        .iter()
        .map(|p| match p {
            PurposeArg::Presentation => Purpose::Presentation,
            PurposeArg::Processing => Purpose::Processing,
        })
        .collect();
    purposes.sort();
    purposes.dedup();
    let request_objects = request_object_policy(args)?;
    let secret = ClientSecret::generate();
    let client = Client {
        id: ClientId::generate(),
        secret_hash: secret.hash(),
        name,
        org_number,
        redirect_uris,
        purposes,
        may_create_agreements: args.agreement,
        may_read_events: args.events,
        require_pkce: args.require_pkce,
        disabled: false,
        created_at: clock.now(),
        token_generation: 0,
        request_objects,
    };
    Ok((client, secret))
}

/// `--jwks`, `--jwks-uri`, `--request-uri` and
/// `--allow-unsigned-request-objects`.
fn request_object_policy(args: &CreateArgs) -> anyhow::Result<RequestObjectPolicy> {
    let keys = match (&args.jwks, &args.jwks_uri) {
        (Some(_), Some(_)) => return Err(anyhow!("give either --jwks or --jwks-uri, not both")),
        (Some(jwks), None) => {
            let json = match jwks.strip_prefix('@') {
                Some(path) => std::fs::read_to_string(path)
                    .with_context(|| format!("--jwks: cannot read {path}"))?,
                None => jwks.clone(),
            };
            Some(ClientKeys::Inline(
                ClientKeySet::parse_registered(&json).context("--jwks")?,
            ))
        }
        (None, Some(uri)) => Some(ClientKeys::Remote(
            FetchUri::parse(uri).with_context(|| format!("--jwks-uri {uri}"))?,
        )),
        (None, None) => None,
    };
    let mut request_uris = args
        .request_uris
        .iter()
        .map(|u| FetchUri::parse(u).with_context(|| format!("--request-uri {u}")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    request_uris.dedup();
    let policy = RequestObjectPolicy {
        keys,
        request_uris,
        allow_unsigned: args.allow_unsigned_request_objects,
    };
    if !policy.request_uris.is_empty() && !policy.accepts_request_objects() {
        return Err(anyhow!(
            "--request-uri needs --jwks, --jwks-uri or --allow-unsigned-request-objects"
        ));
    }
    Ok(policy)
}

fn parse_id(id: &str) -> anyhow::Result<ClientId> {
    ClientId::parse(id).map_err(|e| anyhow!("{e}: {id}"))
}

fn not_found(id: &ClientId) -> impl FnOnce(StoreError) -> anyhow::Error + '_ {
    move |e| match e {
        StoreError::NotFound => anyhow!("no client with id {id}"),
        other => other.into(),
    }
}

fn client_json(c: &Client) -> serde_json::Value {
    json!({
        "client_id": c.id.as_str(),
        "name": c.name.as_str(),
        "org": c.org_number.as_str(),
        "redirect_uris": c.redirect_uris.iter().map(RedirectUri::as_str).collect::<Vec<_>>(),
        "purposes": c.purposes.iter().map(|p| p.as_str()).collect::<Vec<_>>(),
        "agreement": c.may_create_agreements,
        "events": c.may_read_events,
        "require_pkce": c.require_pkce,
        "jwks": match &c.request_objects.keys {
            Some(ClientKeys::Inline(set)) => serde_json::from_str(&set.to_json()).unwrap_or_default(),
            _ => serde_json::Value::Null,
        },
        "jwks_uri": match &c.request_objects.keys {
            Some(ClientKeys::Remote(uri)) => Some(uri.as_str()),
            _ => None,
        },
        "request_uris": c.request_objects.request_uris.iter().map(FetchUri::as_str).collect::<Vec<_>>(),
        "allow_unsigned_request_objects": c.request_objects.allow_unsigned,
        "disabled": c.disabled,
        "created_at": c.created_at.unix_timestamp(),
    })
}

fn write_client(out: &mut dyn Write, c: &Client) -> std::io::Result<()> {
    let list = |v: Vec<&str>| {
        if v.is_empty() {
            "-".to_owned()
        } else {
            v.join(", ")
        }
    };
    writeln!(out, "client_id      {}", c.id)?;
    writeln!(out, "name           {}", c.name.as_str())?;
    writeln!(out, "org            {}", c.org_number)?;
    writeln!(
        out,
        "redirect_uris  {}",
        list(c.redirect_uris.iter().map(RedirectUri::as_str).collect())
    )?;
    writeln!(
        out,
        "purposes       {}",
        list(c.purposes.iter().map(|p| p.as_str()).collect())
    )?;
    writeln!(out, "agreement      {}", c.may_create_agreements)?;
    writeln!(out, "events         {}", c.may_read_events)?;
    writeln!(out, "require_pkce   {}", c.require_pkce)?;
    let keys = match &c.request_objects.keys {
        Some(ClientKeys::Inline(set)) => format!("{} registered", set.len()),
        Some(ClientKeys::Remote(uri)) => uri.to_string(),
        None => "-".to_owned(),
    };
    writeln!(out, "jwks           {keys}")?;
    writeln!(
        out,
        "request_uris   {}",
        list(
            c.request_objects
                .request_uris
                .iter()
                .map(FetchUri::as_str)
                .collect()
        )
    )?;
    writeln!(out, "alg_none       {}", c.request_objects.allow_unsigned)?;
    writeln!(
        out,
        "status         {}",
        if c.disabled { "disabled" } else { "enabled" }
    )?;
    Ok(())
}

fn write_secret(
    out: &mut dyn Write,
    id: &ClientId,
    secret: &ClientSecret,
    as_json: bool,
) -> anyhow::Result<()> {
    if as_json {
        writeln!(
            out,
            "{}",
            json!({"client_id": id.as_str(), "client_secret": secret.expose()})
        )?;
    } else {
        writeln!(out, "client_secret  {}", secret.expose())?;
        writeln!(
            out,
            "The secret is shown only now; the database keeps only its hash."
        )?;
    }
    Ok(())
}

pub async fn run(
    store: &dyn Store,
    command: ClientCommand,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    match command {
        ClientCommand::Create(args) => {
            let (client, secret) = new_client(&args, &SystemClock)?;
            store.insert_client(&client).await?;
            if client.purposes.is_empty()
                && !client.may_create_agreements
                && !client.may_read_events
            {
                // On standard error, so that `--json` output stays one object.
                eprintln!(
                    "warning: client {} is granted nothing it could get a token for: no --purpose, \
                     no --agreement, no --events; create it again with the ones it needs",
                    client.id
                );
            }
            if !args.json {
                write_client(out, &client)?;
            }
            write_secret(out, &client.id, &secret, args.json)?;
        }
        ClientCommand::List { json } => {
            let clients = store.list_clients().await?;
            if json {
                let all: Vec<_> = clients.iter().map(client_json).collect();
                writeln!(out, "{}", serde_json::Value::Array(all))?;
            } else {
                writeln!(out, "{:<38} {:<9} {:<9} NAME", "CLIENT_ID", "ORG", "STATUS")?;
                for c in &clients {
                    let status = if c.disabled { "disabled" } else { "enabled" };
                    writeln!(
                        out,
                        "{:<38} {:<9} {:<9} {}",
                        c.id,
                        c.org_number,
                        status,
                        c.name.as_str()
                    )?;
                }
            }
        }
        ClientCommand::Show { client_id, json } => {
            let id = parse_id(&client_id)?;
            let client = store
                .find_client(&id)
                .await?
                .ok_or_else(|| anyhow!("no client with id {id}"))?;
            if json {
                writeln!(out, "{}", client_json(&client))?;
            } else {
                write_client(out, &client)?;
            }
        }
        ClientCommand::RotateSecret { client_id, json } => {
            let id = parse_id(&client_id)?;
            let secret = ClientSecret::generate();
            store
                .replace_client_secret(&id, &secret.hash())
                .await
                .map_err(not_found(&id))?;
            if store
                .sandbox_credentials()
                .await?
                .is_some_and(|s| s.client_id == id)
            {
                store.update_sandbox_secret(&secret).await?;
            }
            changes_in_force().await;
            write_secret(out, &id, &secret, json)?;
        }
        ClientCommand::Disable { client_id } => {
            let id = parse_id(&client_id)?;
            store
                .set_client_disabled(&id, true)
                .await
                .map_err(not_found(&id))?;
            changes_in_force().await;
            writeln!(out, "disabled {id}")?;
        }
        ClientCommand::Enable { client_id } => {
            let id = parse_id(&client_id)?;
            store
                .set_client_disabled(&id, false)
                .await
                .map_err(not_found(&id))?;
            changes_in_force().await;
            writeln!(out, "enabled {id}")?;
        }
        ClientCommand::Delete { client_id } => {
            let id = parse_id(&client_id)?;
            store.delete_client(&id).await.map_err(not_found(&id))?;
            changes_in_force().await;
            writeln!(out, "deleted {id}")?;
        }
    }
    Ok(())
}

/// Running servers trust a client they have read for up to
/// [`CLIENT_CACHE_TTL`]; waiting that long (and a little more) before
/// returning means that, once a command has returned, every server judges by
/// the change.
async fn changes_in_force() {
    tokio::time::sleep(CLIENT_CACHE_TTL + std::time::Duration::from_millis(50)).await;
}
