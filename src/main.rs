//! The `switchyard` command line (SPEC §1): run central, a site, or both; check a
//! configuration; manage API keys, parked messages and the failure log.

mod alloc;
mod bench;
mod cli;
mod commands;
mod serve;

use clap::Parser;

/// Counts each thread's allocations so a script run has a memory budget.
#[global_allocator]
static ALLOCATOR: alloc::Counting = alloc::Counting;

fn main() {
    let args = cli::Cli::parse();
    switchyard_core::tls::install_crypto_provider();
    switchyard_core::script::install_allocation_probe(alloc::net_allocated);
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
