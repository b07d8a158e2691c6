//! `controller`: the reference controller and fabric service
//! (docs/fleet.md).

use std::{net::SocketAddr, path::PathBuf, process::ExitCode, time::Duration};

use anyhow::Context;
use clap::{Parser, Subcommand};
use controller::{admin, server};
use serde_json::{json, Value};

#[derive(Parser)]
#[command(about = "hostnet reference controller and fabric service")]
struct Cli {
    /// The store directory.
    #[arg(long, global = true, default_value = "/var/lib/hostnet-controller")]
    state_dir: PathBuf,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Creates the store and its first CA; prints the trust bundle agents
    /// start with.
    Init {
        /// CA lifetime in days.
        #[arg(long, default_value_t = 3650)]
        ca_days: u64,
    },
    /// Serves the channel and the admin socket.
    Serve {
        /// Listen address.
        #[arg(long, default_value = "0.0.0.0:7443")]
        listen: SocketAddr,
        /// This controller's name.
        #[arg(long, default_value = "controller")]
        name: String,
        /// Names in the server certificate (first: the one agents verify).
        #[arg(long = "server-name", default_values_t = vec![fleet::DEFAULT_SERVER_NAME.to_string()])]
        server_names: Vec<String>,
        /// Agent certificate lifetime, seconds.
        #[arg(long, default_value_t = 86400)]
        cert_validity_s: u64,
        /// Group commit period, ms.
        #[arg(long, default_value_t = 100)]
        flush_ms: u64,
        /// Issue certificates whose validity starts this many seconds
        /// later (negative: earlier). For tests of expired certificates.
        #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
        not_before_offset_s: i64,
        /// Tokio worker threads.
        #[arg(long, default_value_t = 2)]
        threads: usize,
    },
    /// The fleet.
    Fleet {
        #[command(subcommand)]
        cmd: FleetCmd,
    },
    /// A one-time bootstrap token for an agent.
    Token {
        /// Agent id.
        agent: String,
        /// Validity, seconds.
        #[arg(long, default_value_t = 3600)]
        ttl_s: u64,
    },
    /// Sets a desired hostd document for agents ("*": all).
    Desired {
        /// The document file.
        file: PathBuf,
        /// Agents.
        #[arg(required = true)]
        agents: Vec<String>,
        /// Commit-confirmed window, seconds (0: apply and keep).
        #[arg(long, default_value_t = 60)]
        confirm_within_s: u32,
    },
    /// Sets a server's connection intent (compiled by the fabric service).
    Intent {
        /// Agent id.
        agent: String,
        /// The intent file.
        file: PathBuf,
    },
    /// Sets the fabric (switch facts and drivers).
    Fabric {
        /// fabric.yaml.
        file: PathBuf,
    },
    /// Revokes an agent's certificates.
    Revoke {
        /// Agent id.
        agent: String,
    },
    /// Asks agents to renew their certificates now (none: all).
    Renew {
        /// Agents.
        agents: Vec<String>,
    },
    /// CA rotation.
    Ca {
        #[command(subcommand)]
        cmd: CaCmd,
    },
    /// Counters.
    Stats,
}

#[derive(Subcommand)]
enum FleetCmd {
    /// Every agent (JSON).
    List,
    /// One agent (JSON).
    Show {
        /// Agent id.
        agent: String,
    },
}

#[derive(Subcommand)]
enum CaCmd {
    /// A new CA signs from now on; agents get the new bundle and renew.
    Rotate,
    /// Trust only the active CA.
    Retire,
}

fn print(v: &Value) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

async fn call(cli: &Cli, req: Value) -> anyhow::Result<Value> {
    Ok(admin::call(&cli.state_dir.join("admin.sock"), &req).await?)
}

fn read(p: &PathBuf) -> anyhow::Result<String> {
    std::fs::read_to_string(p).with_context(|| p.display().to_string())
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match &cli.cmd {
        Cmd::Init { ca_days } => {
            let bundle = server::init(&cli.state_dir, Duration::from_secs(ca_days * 86400))?;
            print!("{bundle}");
        }
        Cmd::Serve { .. } => unreachable!("handled in main"),
        Cmd::Fleet { cmd } => {
            let sock = cli.state_dir.join("admin.sock");
            let req = match cmd {
                FleetCmd::List => json!({ "op": "list" }),
                FleetCmd::Show { agent } => json!({ "op": "show", "agent": agent }),
            };
            // Without a running controller, the store itself.
            let v = match admin::call(&sock, &req).await {
                Ok(v) => v,
                Err(_) => {
                    let mut cfg =
                        server::Config::new(cli.state_dir.clone(), "127.0.0.1:0".parse()?);
                    cfg.name = "offline".into();
                    let ctl = server::Controller::open(cfg)?;
                    match cmd {
                        FleetCmd::List => ctl.list()?,
                        FleetCmd::Show { agent } => ctl.show(agent)?,
                    }
                }
            };
            print(&v);
        }
        Cmd::Token { agent, ttl_s } => {
            let v = call(
                &cli,
                json!({ "op": "token", "agent": agent, "ttl_s": ttl_s }),
            )
            .await?;
            println!("{}", v.as_str().unwrap_or_default());
        }
        Cmd::Desired {
            file,
            agents,
            confirm_within_s,
        } => {
            let doc = read(file)?;
            print(&call(&cli, json!({ "op": "desired", "agents": agents, "document": doc, "confirm_within_s": confirm_within_s })).await?);
        }
        Cmd::Intent { agent, file } => {
            print(
                &call(
                    &cli,
                    json!({ "op": "intent", "agent": agent, "intent": read(file)? }),
                )
                .await?,
            );
        }
        Cmd::Fabric { file } => {
            print(&call(&cli, json!({ "op": "fabric", "config": read(file)? })).await?);
        }
        Cmd::Revoke { agent } => {
            print(&call(&cli, json!({ "op": "revoke", "agent": agent })).await?)
        }
        Cmd::Renew { agents } => {
            print(&call(&cli, json!({ "op": "renew", "agents": agents })).await?)
        }
        Cmd::Ca { cmd } => {
            let op = match cmd {
                CaCmd::Rotate => "ca-rotate",
                CaCmd::Retire => "ca-retire",
            };
            print(&call(&cli, json!({ "op": op })).await?);
        }
        Cmd::Stats => print(&call(&cli, json!({ "op": "stats" })).await?),
    }
    Ok(())
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let threads = match &cli.cmd {
        Cmd::Serve { threads, .. } => *threads,
        _ => 1,
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("controller: runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let r = rt.block_on(async move {
        if let Cmd::Serve { listen, name, server_names, cert_validity_s, flush_ms, not_before_offset_s, .. } = &cli.cmd {
            let mut cfg = server::Config::new(cli.state_dir.clone(), *listen);
            cfg.name = name.clone();
            cfg.server_names = server_names.clone();
            cfg.cert_validity = Duration::from_secs(*cert_validity_s);
            cfg.flush_every = Duration::from_millis(*flush_ms);
            cfg.not_before_offset_s = *not_before_offset_s;
            let ctl = server::Controller::open(cfg)?;
            let sock = cli.state_dir.join("admin.sock");
            let a = ctl.clone();
            tokio::spawn(async move {
                if let Err(e) = admin::serve(a, &sock).await {
                    tracing::error!(error = %e, "admin socket");
                }
            });
            let shutdown = async {
                let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
                }
            };
            ctl.serve(shutdown).await?;
            Ok(())
        } else {
            run(cli).await
        }
    });
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("controller: {e:#}");
            ExitCode::FAILURE
        }
    }
}
