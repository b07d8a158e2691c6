//! `hostd-fault`: the `hostd` command line with test-only failure injection
//! (cargo feature `fault-injection`), for the lab and CLI tests. Not
//! packaged; the `hostd` binary has no such hook.
//!
//! `HOSTD_FAULT=stop:N` stops before step N as if it had failed (`N` alone,
//! or the older `HOSTD_FAIL_AT_STEP=N`, means the same); `HOSTD_FAULT=refuse:N`
//! sends, in place of step N, a request the kernel refuses, in the middle of
//! its batch.

use clap::Parser as _;

fn main() {
    let cli = hostd::cli::Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("HOSTD_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let spec = std::env::var("HOSTD_FAULT")
        .ok()
        .or_else(|| std::env::var("HOSTD_FAIL_AT_STEP").ok());
    let fault = match spec.as_deref().map(str::parse::<hostd::apply::Fault>) {
        None => None,
        Some(Ok(f)) => Some(f),
        Some(Err(e)) => {
            eprintln!("hostd-fault: {e}");
            std::process::exit(hostd::cli::exit::USAGE);
        }
    };
    std::process::exit(hostd::cli::run_with(cli, hostd::cli::Hooks { fault }));
}
