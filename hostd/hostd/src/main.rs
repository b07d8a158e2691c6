//! `hostd`: thin binary over the library ([`hostd::cli::run`]).

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
    std::process::exit(hostd::cli::run(cli));
}
