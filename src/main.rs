//! The `switchyard` command line (SPEC §1): run central, a site, or both; check a
//! configuration; manage API keys, parked messages and the failure log.

mod bench;
mod cli;
mod commands;
mod serve;

use clap::Parser;

fn main() {
    let args = cli::Cli::parse();
    switchyard_core::tls::install_crypto_provider();
    cli::init_logging(&args);
    let code = match commands::run(args) {
        Ok(()) => 0,
        Err(commands::Exit(code, message)) => {
            if !message.is_empty() {
                eprintln!("{message}");
            }
            code
        }
    };
    std::process::exit(code);
}
