//! The OVSDB event source: a monitor of the configuration columns of the
//! tables hostd manages (bridges, ports, interfaces; never the status
//! columns ovs-vswitchd rewrites every few seconds, so an idle switch sends
//! nothing). Each update becomes an [`Event::Ovs`]: the reconcile loop
//! then plans the OVS part of the document against the rows, as it does
//! the kernel part on netlink events. ovsdb-server may start after hostd,
//! restart, or not be installed at all: the watch waits for its socket,
//! reconnects with a bounded back-off, and sends one event on every
//! (re)connection (rows may have changed while it was away).

use std::{path::PathBuf, time::Duration};

use hostd_ovsdb::{Client, CONFIG_TABLES, DB};
use tokio::sync::mpsc;

use super::events::Event;

const MIN_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Watches `db_socket` until `tx` closes.
pub async fn run(db_socket: PathBuf, tx: mpsc::Sender<Vec<Event>>) {
    let mut backoff = MIN_BACKOFF;
    loop {
        if db_socket.exists() {
            match watch_once(&db_socket, &tx).await {
                Ok(Closed::Receiver) => return,
                Ok(Closed::Server(why)) => {
                    tracing::warn!(socket = %db_socket.display(), %why, "OVSDB connection closed; reconnecting");
                    backoff = MIN_BACKOFF;
                }
                Err(e) => {
                    tracing::debug!(socket = %db_socket.display(), error = %e, "OVSDB not reachable");
                }
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

enum Closed {
    /// The daemon is stopping.
    Receiver,
    /// ovsdb-server went away.
    Server(String),
}

async fn watch_once(
    db_socket: &std::path::Path,
    tx: &mpsc::Sender<Vec<Event>>,
) -> Result<Closed, hostd_ovsdb::Error> {
    let client = Client::connect_unix(db_socket).await?;
    let mut notes = client.subscribe();
    client.monitor_cache(DB, CONFIG_TABLES).await?;
    tracing::info!(socket = %db_socket.display(), "watching OVSDB");
    if tx.send(vec![Event::Ovs]).await.is_err() {
        return Ok(Closed::Receiver);
    }
    // The first update (the initial rows) came with the monitor reply or
    // right after it; later ones are changes.
    while let Some(msg) = notes.recv().await {
        let method = msg.get("method").and_then(|m| m.as_str()).unwrap_or("");
        if !method.starts_with("update") {
            continue;
        }
        // Drain what else is queued: one event per burst.
        while notes.try_recv().is_ok() {}
        if tx.send(vec![Event::Ovs]).await.is_err() {
            return Ok(Closed::Receiver);
        }
    }
    Ok(Closed::Server(
        client
            .closed()
            .unwrap_or_else(|| "connection closed".into()),
    ))
}
