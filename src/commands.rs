//! What each subcommand does.

use crate::bench;
use crate::cli::{Cli, Command, KeyAction, ParkedAction, Suite};
use crate::serve;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use switchyard_api::failure_log::{self, FailureLog};
use switchyard_api::site_client::{SiteClient, SiteDirectory};
use switchyard_api::{Central, keys};
use switchyard_core::config::{Config, SecretRef};
use switchyard_core::error::codes;
use switchyard_core::script::{ScriptLimits, compile};
use switchyard_layers::store_forward::{FjallOutbox, OutboxError, OutboxOptions};
use switchyard_site::SiteNode;

/// A failed command: exit code and message.
#[derive(Debug)]
pub struct Exit(pub i32, pub String);

impl From<String> for Exit {
    fn from(message: String) -> Self {
        Exit(1, message)
    }
}

type Result<T = ()> = std::result::Result<T, Exit>;

/// Runs a command.
pub fn run(cli: Cli) -> Result {
    match cli.command {
        Command::Check { config } => check(&config),
        Command::Key { action } => key(action),
        Command::Bench {
            suite,
            seconds,
            drain,
            smtp_delay_ms,
        } => runtime()?.block_on(bench(
            suite,
            Duration::from_secs(seconds),
            drain,
            Duration::from_millis(smtp_delay_ms),
        )),
        Command::Load {
            url,
            body,
            header,
            concurrency,
            duration,
        } => runtime()?.block_on(load_generator(url, body, header, concurrency, &duration)),
        Command::EchoServer => {
            runtime()?.block_on(bench::echo::serve_until_stdin_closes());
            Ok(())
        }
        Command::Dev { config } => runtime()?.block_on(dev(&config)),
        Command::Central { config, listen } => runtime()?.block_on(central(&config, listen)),
        Command::Site { config, site, node } => {
            runtime()?.block_on(site_node(&config, &site, node.as_deref()))
        }
        Command::Parked {
            action,
            config,
            site,
            json,
        } => runtime()?.block_on(parked(action, &config, site.as_deref(), json)),
        Command::Failures {
            config,
            since,
            json,
        } => failures(&config, since.as_deref(), json),
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Exit(1, format!("cannot start the async runtime: {e}")))
}

fn load(path: &Path) -> Result<Config> {
    let config = Config::load(path).map_err(|errors| Exit(1, errors.to_string()))?;
    for warning in &config.warnings {
        tracing::warn!("{warning}");
    }
    Ok(config)
}

/// `switchyard check`: every configuration and script error, as `file:line:col: message`.
fn check(path: &Path) -> Result {
    let (config, config_errors) = Config::load_lenient(path).map_err(|e| Exit(1, e.to_string()))?;
    for warning in &config.warnings {
        eprintln!("warning: {warning}");
    }
    let central_engine = switchyard_api::central_engine(&ScriptLimits::default());
    let site_engine = switchyard_site::site_engine(&ScriptLimits::default());
    let mut errors = Vec::new();
    let mut scripts = 0;
    for method in config.api_methods.values() {
        scripts += 1;
        if let Err(e) = compile(&central_engine, &method.script) {
            errors.push(e);
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    let site_scripts = config
        .templates
        .values()
        .flat_map(|t| {
            t.scripts
                .values()
                .chain(t.alarms.iter().filter_map(|a| a.on_trigger.as_ref()))
        })
        .chain(config.shared_scripts.values());
    for script in site_scripts {
        if !seen.insert(script.path.clone()) {
            continue;
        }
        scripts += 1;
        if let Err(e) = compile(&site_engine, script) {
            errors.push(e);
        }
    }
    // Configuration problems first (in file order), then script errors.
    let mut lines: Vec<String> = config_errors.iter().map(ToString::to_string).collect();
    lines.extend(errors.iter().map(ToString::to_string));
    if !lines.is_empty() {
        let count = lines.len();
        return Err(Exit(
            1,
            format!(
                "{}\n{count} error(s) in {}",
                lines.join("\n"),
                path.display()
            ),
        ));
    }
    println!(
        "{}: ok ({} site(s), {} API method(s), {} template(s), {} instance(s), {} script(s) compiled)",
        path.display(),
        config.sites.len(),
        config.api_methods.len(),
        config.templates.len(),
        config.instances.len(),
        scripts
    );
    Ok(())
}

fn key(action: KeyAction) -> Result {
    match action {
        KeyAction::New { name, config } => {
            let key = keys::new_key(&config, &name)?;
            eprintln!(
                "API key `{name}` created; its hash is in {}. This is the only time the key is shown:",
                config.display()
            );
            println!("{key}");
            eprintln!(
                "Approve it for methods in `approved_keys`, then reload central (SIGHUP or POST /admin/reload)."
            );
        }
        KeyAction::Disable { name, config } => {
            keys::set_enabled(&config, &name, false)?;
            eprintln!(
                "API key `{name}` disabled in {}; it is refused after central reloads (SIGHUP or POST /admin/reload).",
                config.display()
            );
        }
        KeyAction::Enable { name, config } => {
            keys::set_enabled(&config, &name, true)?;
            eprintln!(
                "API key `{name}` enabled in {}; it is accepted after central reloads (SIGHUP or POST /admin/reload).",
                config.display()
            );
        }
    }
    Ok(())
}

async fn start_site(
    config: &Config,
    name: &str,
    node: Option<&str>,
) -> Result<tokio::task::JoinHandle<()>> {
    let node = SiteNode::start(config, name, node)
        .await
        .map_err(|e| Exit(1, e.to_string()))?;
    let tls = match &node.settings.tls {
        Some(files) => Some(
            switchyard_core::tls::server_config(files)
                .map_err(|e| Exit(1, format!("sites.{name}.{e}")))?,
        ),
        None => None,
    };
    let what = match node.pair() {
        Some(_) => format!("site {name} node {}", node.node_name),
        None => format!("site {name}"),
    };
    let listener = serve::bind(&what, node.settings.listen).await?;
    let addr = listener.local_addr().map_err(|e| Exit(1, e.to_string()))?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    eprintln!(
        "{what}: cluster endpoint on {scheme}://{addr}, data in {}",
        node.settings.data_dir.display()
    );
    Ok(serve::spawn(
        switchyard_site::cluster::router(node),
        listener,
        tls,
    ))
}

async fn start_central(config: Config) -> Result<tokio::task::JoinHandle<()>> {
    let listen = config.central.listen;
    let data_dir = config.central.data_dir.clone();
    let admin = config.central.admin_token.is_some();
    let central = Central::start(config)
        .await
        .map_err(|e| Exit(1, e.to_string()))?;
    let listener = serve::bind("central", listen).await?;
    let addr = listener.local_addr().map_err(|e| Exit(1, e.to_string()))?;
    eprintln!(
        "central: Inbound API on http://{addr}/api/{{method}} (health /health, metrics /metrics, OpenAPI /openapi.json), data in {}",
        data_dir.display()
    );
    if !admin {
        eprintln!(
            "central: admin endpoints disabled (set central.admin_token to enable /admin/reload, /admin/failures, /admin/parked)"
        );
    }
    serve::reload_on_sighup(central.clone());
    Ok(serve::spawn(switchyard_api::app(central), listener, None))
}

async fn dev(path: &Path) -> Result {
    let config = load(path)?;
    let mut servers = Vec::new();
    for (name, site) in &config.sites {
        if site.pair.is_empty() {
            servers.push(start_site(&config, name, None).await?);
        } else {
            // A pair runs whole in one process: both nodes and the witness.
            for node in site.node_names() {
                servers.push(start_site(&config, name, Some(node)).await?);
            }
        }
    }
    servers.push(start_central(config).await?);
    eprintln!("switchyard dev: running; Ctrl-C to stop");
    for server in servers {
        let _ = server.await;
    }
    Ok(())
}

/// The tokens the shipped examples use: fine for `switchyard dev`, refused by a
/// `central` or `site` that listens beyond loopback (a copied example must not become
/// a production secret).
const EXAMPLE_TOKENS: &[&str] = &["dev-admin-token", "dev-site-token"];

/// Refuses an example token on a node that listens beyond this machine.
fn refuse_example_token(
    what: &str,
    token: Option<&SecretRef>,
    listen: std::net::SocketAddr,
    base_dir: &Path,
) -> Result {
    if listen.ip().is_loopback() {
        return Ok(());
    }
    let Some(Ok(value)) = token.map(|t| t.resolve(base_dir)) else {
        return Ok(());
    };
    if EXAMPLE_TOKENS.contains(&value.expose()) {
        return Err(Exit(
            1,
            format!(
                "{what} is the token of the shipped example; choose your own before listening on {listen} (the example's tokens are only accepted on loopback)"
            ),
        ));
    }
    Ok(())
}

async fn central(path: &Path, listen: Option<std::net::SocketAddr>) -> Result {
    let mut config = load(path)?;
    if let Some(listen) = listen {
        config.central.listen = listen;
    }
    refuse_example_token(
        "central.admin_token",
        config.central.admin_token.as_ref(),
        config.central.listen,
        &config.base_dir,
    )?;
    let server = start_central(config).await?;
    let _ = server.await;
    Ok(())
}

async fn site_node(path: &Path, name: &str, node: Option<&str>) -> Result {
    let config = load(path)?;
    if let Some(site) = config.sites.get(name) {
        refuse_example_token(
            &format!("sites.{name}.token"),
            Some(&site.token),
            site.listen,
            &config.base_dir,
        )?;
    }
    let server = start_site(&config, name, node).await?;
    serve::log_sighup(name.to_string());
    let _ = server.await;
    Ok(())
}

async fn parked(action: ParkedAction, path: &Path, site: Option<&str>, json: bool) -> Result {
    let config = load(path)?;
    let site = match site {
        Some(s) => s.to_string(),
        None if config.sites.len() == 1 => config.sites.keys().next().cloned().unwrap_or_default(),
        None => {
            return Err(Exit(
                2,
                "--site is required (the configuration has several sites)".into(),
            ));
        }
    };
    let settings = config
        .sites
        .get(&site)
        .ok_or_else(|| Exit(1, format!("no site named `{site}` in {}", path.display())))?;
    let client = SiteClient::new(
        Arc::new(SiteDirectory::from_config(&config)),
        Duration::from_secs(2),
    );
    let timeout = Duration::from_secs(30);
    // The running site first; its data directly when it is not running.
    let online = match &action {
        ParkedAction::List { after, limit } => client
            .parked(&site, after.as_deref(), *limit, timeout)
            .await
            .map(|list| serde_json::to_value(list).unwrap_or_default()),
        ParkedAction::Retry { id } => client.parked_action(&site, id, "retry", timeout).await,
        ParkedAction::Discard { id } => client.parked_action(&site, id, "discard", timeout).await,
    };
    let value = match online {
        Ok(v) => v,
        Err(f) if f.code == codes::SITE_UNREACHABLE => {
            tracing::info!(site = %site, "site not running; using its data directly");
            offline_parked(&action, &settings.data_dir.join("outbox")).await?
        }
        Err(f) => return Err(Exit(1, format!("site {site}: {}", f.message))),
    };
    print_parked(&action, &value, json);
    Ok(())
}

async fn offline_parked(action: &ParkedAction, dir: &Path) -> Result<serde_json::Value> {
    if !dir.exists() {
        return Err(Exit(
            1,
            format!(
                "the site is not running and has no data in {}",
                dir.display()
            ),
        ));
    }
    let outbox = FjallOutbox::open(
        dir,
        OutboxOptions {
            min_free_disk: 0,
            ..Default::default()
        },
    )
    .map_err(|e| Exit(1, e.to_string()))?;
    let parse = |id: &str| id.parse().map_err(|e: String| Exit(2, e));
    let not_found = |e: OutboxError| Exit(1, e.to_string());
    let value = match action {
        ParkedAction::List { after, limit } => {
            let after = after.as_deref().map(parse).transpose()?;
            let page = outbox.list_parked(after, *limit).map_err(not_found)?;
            serde_json::json!({
                "items": page.items.iter().map(switchyard_site::cluster::parked_view).collect::<Vec<_>>(),
                "next": page.next.map(|id| id.to_string()),
            })
        }
        ParkedAction::Retry { id } => {
            let id = parse(id)?;
            outbox.retry_parked(id).await.map_err(not_found)?;
            serde_json::json!({ "id": id.to_string(), "status": "retried" })
        }
        ParkedAction::Discard { id } => {
            let id = parse(id)?;
            outbox.discard_parked(id).await.map_err(not_found)?;
            serde_json::json!({ "id": id.to_string(), "status": "discarded" })
        }
    };
    outbox.close();
    Ok(value)
}

fn print_parked(action: &ParkedAction, value: &serde_json::Value, json: bool) {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(value).unwrap_or_default()
        );
        return;
    }
    match action {
        ParkedAction::List { .. } => {
            let items = value["items"].as_array().cloned().unwrap_or_default();
            if items.is_empty() {
                println!("no parked messages");
                return;
            }
            println!(
                "{:<36}  {:<12}  {:<16}  {:>8}  {:<29}  REASON",
                "ID", "CATEGORY", "TARGET", "ATTEMPTS", "PARKED"
            );
            for item in &items {
                println!(
                    "{:<36}  {:<12}  {:<16}  {:>8}  {:<29}  {}",
                    item["id"].as_str().unwrap_or(""),
                    item["category"].as_str().unwrap_or(""),
                    item["target"].as_str().unwrap_or(""),
                    // A JSON value ignores width and alignment; its text does not.
                    item["attempts"].to_string(),
                    item["parked"].as_str().unwrap_or(""),
                    item["reason"].as_str().unwrap_or("")
                );
            }
            if let Some(next) = value["next"].as_str() {
                println!("more: --after {next}");
            }
        }
        ParkedAction::Retry { id } => println!("{id}: back to pending (attempts reset)"),
        ParkedAction::Discard { id } => println!("{id}: discarded"),
    }
}

fn failures(path: &Path, since: Option<&str>, json: bool) -> Result {
    let config = load(path)?;
    let since = since
        .map(failure_log::parse_since)
        .transpose()
        .map_err(|e| Exit(2, e))?;
    let records = FailureLog::read(&config.central.data_dir.join(failure_log::FILE_NAME), since)
        .map_err(|e| Exit(1, e.to_string()))?;
    if json {
        for r in &records {
            println!("{}", serde_json::to_string(r).unwrap_or_default());
        }
        return Ok(());
    }
    if records.is_empty() {
        println!("no failures recorded");
        return Ok(());
    }
    println!(
        "{:<32}  {:<20}  {:<12}  {:>6}  {:<18}  {:<36}  {:>8}  DETAIL",
        "TIME", "METHOD", "KEY", "STATUS", "CODE", "INCIDENT", "MS"
    );
    for r in &records {
        println!(
            "{:<32}  {:<20}  {:<12}  {:>6}  {:<18}  {:<36}  {:>8}  {}",
            r.time,
            r.method,
            r.key.as_deref().unwrap_or("-"),
            r.status,
            r.code,
            r.incident,
            r.duration_ms,
            r.detail
        );
    }
    Ok(())
}

async fn bench(suite: Suite, duration: Duration, drain: usize, smtp_delay: Duration) -> Result {
    if cfg!(debug_assertions) {
        eprintln!(
            "warning: this is a debug build; benchmark figures need `cargo run --release -- bench …`"
        );
    }
    let all = matches!(suite, Suite::All);
    if all || matches!(suite, Suite::Inbound) {
        bench::suites::inbound(duration).await;
    }
    if all || matches!(suite, Suite::SiteClient) {
        bench::suites::site_client(duration).await;
    }
    if all || matches!(suite, Suite::External) {
        bench::suites::external(duration, drain).await;
    }
    if all || matches!(suite, Suite::Smtp) {
        bench::suites::smtp(duration, smtp_delay).await;
    }
    if all || matches!(suite, Suite::Drain) {
        bench::drain::run(10_000).await;
    }
    if all || matches!(suite, Suite::Ha) {
        bench::ha::run(duration, 20).await;
    }
    Ok(())
}

async fn load_generator(
    url: String,
    body: String,
    headers: Vec<String>,
    concurrency: usize,
    duration: &str,
) -> Result {
    let duration = switchyard_core::units::parse_duration(duration).map_err(|e| Exit(2, e))?;
    let headers = headers
        .iter()
        .map(|h| {
            h.split_once(':')
                .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                .ok_or_else(|| Exit(2, format!("header `{h}`: expected `Name: value`")))
        })
        .collect::<Result<Vec<_>>>()?;
    let figures = bench::load::run(bench::load::LoadArgs {
        url,
        body,
        headers,
        concurrency,
        duration,
    })
    .await;
    println!("{}", serde_json::to_string(&figures).unwrap_or_default());
    Ok(())
}
