//! `collector`: parse flags, set up logging, run until SIGINT/SIGTERM.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Parser;
use collector::config::Config;

/// sFlow v5 collector: per-subnet and per-interface traffic series over HTTP.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// YAML configuration file (default: the embedded defaults).
    #[arg(short, long)]
    config: Option<PathBuf>,
    /// Validate the configuration, print it with defaults filled in, exit.
    #[arg(long)]
    check: bool,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let cfg = match &args.config {
        Some(p) => Config::from_file(p)?,
        None => Config::default(),
    };
    if args.check {
        print!(
            "{}",
            serde_norway::to_string(&cfg).context("printing configuration")?
        );
        return Ok(());
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(collector::run(cfg, shutdown_signal()))
}

async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
    tracing::info!("shutdown requested");
}
