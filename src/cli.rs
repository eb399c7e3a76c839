//! Command-line arguments.

use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

/// switchyard: the integration layer of a SCADA platform — an Inbound API on central,
/// outbound surfaces (external systems, databases, e-mail) at sites, and durable
/// store-and-forward in between.
#[derive(Debug, Parser)]
#[command(name = "switchyard", version, propagate_version = true)]
#[command(
    after_help = "Examples:\n  switchyard dev --config examples/plant/switchyard.toml\n  switchyard check --config switchyard.toml\n  switchyard key new mes --config switchyard.toml\n\nLogs go to stderr; filter them with RUST_LOG (e.g. RUST_LOG=switchyard=debug)."
)]
pub struct Cli {
    /// Log format on stderr.
    #[arg(long, value_enum, global = true, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Log output format.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run central and every site of the configuration in one process (for trying it
    /// out and for tests).
    #[command(
        after_help = "Example:\n  switchyard dev --config examples/plant/switchyard.toml\n\nSIGHUP (or POST /admin/reload) reloads the configuration; Ctrl-C stops."
    )]
    Dev {
        /// Configuration file.
        #[arg(long, default_value = "switchyard.toml")]
        config: PathBuf,
    },
    /// Run the central node: the Inbound API, the config authority that deploys to sites.
    #[command(
        after_help = "Example:\n  switchyard central --config /etc/switchyard/switchyard.toml\n\nSIGHUP (or POST /admin/reload) reloads the configuration and redeploys to the sites."
    )]
    Central {
        /// Configuration file.
        #[arg(long, default_value = "switchyard.toml")]
        config: PathBuf,
        /// Listen here instead of `central.listen` (a second central node on the same
        /// host; nodes sharing `central.data_dir` elect one active node).
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
    },
    /// Run one site node: instances, scripts, outbound surfaces, store-and-forward.
    #[command(
        after_help = "Examples:\n  switchyard site --config /etc/switchyard/switchyard.toml --site plant-a\n  switchyard site --config /etc/switchyard/switchyard.toml --site plant-a --node b\n\nA site keeps running its last deployment while central is down. A site with named\nnodes runs as a pair with a witness: start each node (and the witness) with --node."
    )]
    Site {
        /// Configuration file.
        #[arg(long, default_value = "switchyard.toml")]
        config: PathBuf,
        /// Which site of the configuration this node is.
        #[arg(long)]
        site: String,
        /// Which node of the site's pair this is (`nodes[].name` or `witness.name`,
        /// SPEC §8); only for a site with named nodes.
        #[arg(long)]
        node: Option<String>,
    },
    /// Validate the configuration and compile every script; errors as file:line:col.
    #[command(
        after_help = "Example:\n  switchyard check --config switchyard.toml\n\nExits 1 when anything is wrong, listing every problem."
    )]
    Check {
        /// Configuration file.
        #[arg(long, default_value = "switchyard.toml")]
        config: PathBuf,
    },
    /// Manage API keys (only their hashes are stored in the configuration).
    #[command(
        after_help = "Examples:\n  switchyard key new mes --config switchyard.toml\n  switchyard key disable mes --config switchyard.toml\n\nChanges apply on reload: SIGHUP to central, or POST /admin/reload."
    )]
    Key {
        /// Key action.
        #[command(subcommand)]
        action: KeyAction,
    },
    /// Operate on parked store-and-forward messages of a site.
    #[command(
        after_help = "Examples:\n  switchyard parked list --config switchyard.toml --site plant-a\n  switchyard parked retry 0193… --config switchyard.toml --site plant-a\n\nTalks to the running site; when it is not running, opens its data directly."
    )]
    Parked {
        /// Parked-message action.
        #[command(subcommand)]
        action: ParkedAction,
        /// Configuration file.
        #[arg(long, global = true, default_value = "switchyard.toml")]
        config: PathBuf,
        /// The site.
        #[arg(long, global = true)]
        site: Option<String>,
        /// Print JSON instead of a table.
        #[arg(long, global = true)]
        json: bool,
    },
    /// Run a benchmark suite (build with --release); each prints its figure beside its
    /// baseline measured in the same run.
    #[command(
        after_help = "Examples:\n  cargo run --release -- bench inbound\n  cargo run --release -- bench all --seconds 5"
    )]
    Bench {
        /// Which suite.
        suite: Suite,
        /// Seconds each measurement runs.
        #[arg(long, default_value_t = 5)]
        seconds: u64,
        /// Buffered writes drained by the `external` suite.
        #[arg(long, default_value_t = 100_000)]
        drain: usize,
        /// Per-message delay of the SMTP sink in milliseconds (the server's own work).
        #[arg(long, default_value_t = 2)]
        smtp_delay_ms: u64,
    },
    /// HTTP load generator used by the benchmarks (prints JSON figures).
    #[command(hide = true)]
    Load {
        /// Target URL (POSTed to).
        #[arg(long)]
        url: String,
        /// JSON body.
        #[arg(long, default_value = "{}")]
        body: String,
        /// `Name: value` header, repeatable.
        #[arg(long)]
        header: Vec<String>,
        /// Requests in flight.
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
        /// How long (humantime).
        #[arg(long, default_value = "5s")]
        duration: String,
    },
    /// JSON echo server used by the benchmarks (prints its address; runs until its
    /// standard input closes).
    #[command(hide = true)]
    EchoServer,
    /// Read central's failure log (every 5xx of the Inbound API).
    #[command(
        after_help = "Examples:\n  switchyard failures --config switchyard.toml\n  switchyard failures --config switchyard.toml --since 1h\n  switchyard failures --config switchyard.toml --since 2026-11-28T10:00:00Z"
    )]
    Failures {
        /// Configuration file.
        #[arg(long, default_value = "switchyard.toml")]
        config: PathBuf,
        /// Only failures since this time (RFC 3339) or for this long (`1h`, `30m`).
        #[arg(long)]
        since: Option<String>,
        /// Print JSON lines instead of a table.
        #[arg(long)]
        json: bool,
    },
}

/// Benchmark suites.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Suite {
    /// Inbound API (validated scripted method; Route.To GetAttributes) vs a bare axum echo.
    Inbound,
    /// Central's site client calling instance scripts vs a bare axum echo.
    SiteClient,
    /// ExternalSystem.Call vs raw reqwest; drain of buffered CachedWrites.
    External,
    /// E-mails/s with a pool of 5 SMTP sessions vs one.
    Smtp,
    /// A backlog of 10,000 buffered calls drained at `max_rate = 500` vs unpaced,
    /// counted per second at the HTTP peer.
    Drain,
    /// A pair with a witness: replicated enqueue vs the single-node outbox, replication
    /// lag, failover time over 20 stops of the active node.
    Ha,
    /// All of the above.
    All,
}

/// `switchyard key …`.
#[derive(Debug, Subcommand)]
pub enum KeyAction {
    /// Create a key: prints it once, stores only its hash.
    New {
        /// Key name (used in `approved_keys`).
        name: String,
        /// Configuration file.
        #[arg(long, default_value = "switchyard.toml")]
        config: PathBuf,
    },
    /// Disable a key (refused with 401 after the next reload).
    Disable {
        /// Key name.
        name: String,
        /// Configuration file.
        #[arg(long, default_value = "switchyard.toml")]
        config: PathBuf,
    },
    /// Enable a key again.
    Enable {
        /// Key name.
        name: String,
        /// Configuration file.
        #[arg(long, default_value = "switchyard.toml")]
        config: PathBuf,
    },
}

/// `switchyard parked …`.
#[derive(Debug, Subcommand)]
pub enum ParkedAction {
    /// List parked messages, oldest first.
    List {
        /// Start after this message id (paging).
        #[arg(long)]
        after: Option<String>,
        /// How many.
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Send a parked message back to pending (attempts reset).
    Retry {
        /// Message id.
        id: String,
    },
    /// Delete a parked message.
    Discard {
        /// Message id.
        id: String,
    },
}

/// Sets up `tracing` to stderr, filtered by `RUST_LOG` (default `info`).
pub fn init_logging(cli: &Cli) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        EnvFilter::new("info,lettre=warn,hyper=warn,reqwest=warn,fjall=warn,lsm_tree=warn")
    });
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    match cli.log_format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
