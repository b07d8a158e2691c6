//! What drives the status source (docs/daemon.md, "LACP and LLDP status"):
//!
//! - **links**: the daemon's rtnetlink subscription (link events, through
//!   an [`Inbox`]) marks the links dirty; coalesced (`--status-quiet`,
//!   `--status-max-delay`), one full link read follows. Only events of
//!   links the status reports on (bonds, members, NICs) or of links not
//!   seen yet count. Not every LACP change makes a netlink event (a
//!   partner's state bits), so the bonds are also polled (a dump filtered
//!   to the bonds and their members): every second for
//!   [`FOLLOW_UP`] after any change, then every `--status-poll`.
//!   Open vSwitch bonds (`bond/show`, `lacp/show` over ovs-vswitchd's
//!   control socket, while it runs) are read with the links and at each
//!   poll, and after OVSDB configuration changes (`super::ovs_watch`).
//! - **lldp**: `lldpcli watch`, supervised ([`super::lldp_watch`]): each
//!   event, coalesced, is one `lldpcli show neighbors` read; the watch
//!   stopping makes LLDP "unavailable (why)" until it runs again.
//! - **the document**: when the confirmed document changes, its
//!   `daemon.cabling` (else `--cabling`) is the intent of the diagnosis,
//!   and lldpd is told to announce this host on the document's NICs
//!   (again whenever lldpd comes back).
//!
//! Each read runs on the blocking pool, one of each kind at a time; what
//! changed becomes `LacpChanged`, `LldpChanged` and the `Diagnosis`
//! property.

use std::{sync::Arc, time::Duration};

use serde_json::json;
use tokio::{
    sync::mpsc,
    task::JoinHandle,
    time::{sleep_until, Instant},
};

use super::{
    coalesce::Coalescer,
    lldp_watch::{self, WatchMsg},
    status::{Inbox, LldpRead, Refresh, StatusChange},
    Daemon, Note,
};
use crate::status::lldpd::{managed_nics, Announce};

/// After a change, the bonds are polled every [`FOLLOW_UP_EVERY`] for this
/// long (a negotiation's steps are not all notified).
pub const FOLLOW_UP: Duration = Duration::from_secs(10);
/// See [`FOLLOW_UP`].
pub const FOLLOW_UP_EVERY: Duration = Duration::from_secs(1);
/// The announcement is read back and made again until lldpd shows it (a
/// freshly started lldpd's own configuration client can undo it).
const ANNOUNCE_ATTEMPTS: u32 = 10;
/// ... waiting this long between attempts.
const ANNOUNCE_PAUSE: Duration = Duration::from_secs(1);
/// LLDP events come in bursts (a neighbour added, then updated): quiet time.
const LLDP_QUIET: Duration = Duration::from_millis(50);
/// ... and longest delay.
const LLDP_MAX_DELAY: Duration = Duration::from_millis(500);

/// Starts the status tasks.
pub fn spawn(d: &Daemon, inbox: Arc<Inbox>) -> Vec<JoinHandle<()>> {
    vec![
        tokio::spawn(links(d.clone(), inbox)),
        tokio::spawn(lldp_and_document(d.clone())),
    ]
}

/// Announces `changes`; true when there were any.
fn emit(d: &Daemon, changes: Vec<StatusChange>) -> bool {
    let any = !changes.is_empty();
    for c in changes {
        match c {
            StatusChange::Lacp(v) => {
                tracing::info!(bond = %v["bond"].as_str().unwrap_or(""), "LACP status changed");
                d.note(Note::Lacp(v));
            }
            StatusChange::Lldp(v) => {
                tracing::info!(nic = %v["nic"].as_str().unwrap_or("-"), "LLDP status changed");
                d.note(Note::Lldp(v));
            }
            StatusChange::Diagnosis(v) => {
                let n = v.as_array().map_or(0, Vec::len);
                tracing::info!(findings = n, "diagnosis changed");
                d.note(Note::Diagnosis);
            }
        }
    }
    any
}

async fn refresh(d: &Daemon, what: Refresh) -> Vec<StatusChange> {
    let src = d.status_source();
    match tokio::task::spawn_blocking(move || src.refresh(&what)).await {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "status read task");
            Vec::new()
        }
    }
}

async fn links(d: Daemon, inbox: Arc<Inbox>) {
    let cfg = d.config().status.clone();
    let src = d.status_source();
    let mut co = Coalescer::new(cfg.quiet, cfg.max_delay);
    let mut first_event: Option<Instant> = None;
    let mut follow_until: Option<Instant> = None;
    let mut next_poll = cfg.poll.map(|p| Instant::now() + p);
    // The first read, at once.
    co.note(Instant::now());
    loop {
        let due = [co.deadline(), next_poll].into_iter().flatten().min();
        tokio::select! {
            batch = inbox.next() => {
                let relevant = batch.overflow
                    || batch.ovs
                    || batch.links.iter().any(|(i, n)| src.concerns(*i, n.as_deref()));
                if relevant {
                    let now = Instant::now();
                    co.note(now);
                    first_event = first_event.or(batch.first).or(Some(now));
                }
            }
            () = sleep_until(due.unwrap_or_else(far_future)), if due.is_some() => {
                let now = Instant::now();
                let mut what = Refresh::default();
                if co.due(now) {
                    co.take();
                    what.links = true;
                } else if next_poll.is_some_and(|t| now >= t) {
                    what.bonds = true;
                } else {
                    continue;
                }
                let since = if what.links { first_event.take() } else { None };
                let changed = emit(&d, refresh(&d, what).await);
                let now = Instant::now();
                if changed {
                    follow_until = Some(now + FOLLOW_UP);
                    if let Some(s) = since {
                        let us = now.duration_since(s).as_micros() as u64;
                        src.record("last_event_to_signal_us", json!(us));
                    }
                }
                next_poll = match follow_until {
                    Some(u) if now < u => Some(now + FOLLOW_UP_EVERY),
                    _ => cfg.poll.map(|p| now + p),
                };
            }
        }
    }
}

fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(86400 * 365)
}

/// The host name, for the LLDP announcement.
fn hostname() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
}

/// What to announce for the confirmed document (`None`: nothing: no
/// document, or one without NICs).
fn announcement(d: &Daemon, name: Option<&str>) -> Option<Announce> {
    let doc = d.confirmed_document()?;
    let nics = managed_nics(&doc.state);
    if nics.is_empty() {
        return None;
    }
    let host = name.map(str::to_owned).or_else(hostname)?;
    Some(Announce::managed(&host, &nics))
}

async fn lldp_and_document(d: Daemon) {
    let cfg = d.config().status.clone();
    let src = d.status_source();
    let (tx, mut rx) = mpsc::channel(64);
    // Keeps the channel open when LLDP is off (no watch).
    let _keep = tx.clone();
    let watch = cfg.lldp.then(|| {
        tokio::spawn(lldp_watch::supervise(
            cfg.lldpcli.clone(),
            tx,
            lldp_watch::Backoff::default(),
        ))
    });
    let _abort = AbortOnDrop(watch);
    let mut target = d.watch_target();
    let mut co = Coalescer::new(LLDP_QUIET, LLDP_MAX_DELAY);
    let mut pending: Option<LldpRead> = None;
    let mut first_event: Option<Instant> = None;
    let mut up = false;
    let mut want: Option<Announce> = None;
    let mut announced: Option<Announce> = None;
    let (ann_tx, mut ann_rx) = mpsc::channel::<(Announce, Result<u32, String>)>(4);
    let mut announcing = false;
    let mut document_changed = true;
    loop {
        if document_changed {
            document_changed = false;
            let intent = d
                .confirmed_document()
                .and_then(|doc| doc.cabling())
                .or_else(|| cfg.cabling.clone());
            let s = src.clone();
            let changes = tokio::task::spawn_blocking(move || s.set_intent(intent))
                .await
                .unwrap_or_default();
            emit(&d, changes);
            want = if cfg.lldp && cfg.announce {
                announcement(&d, cfg.system_name.as_deref())
            } else {
                None
            };
        }
        if up && !announcing && want.is_some() && want != announced {
            if let Some(a) = want.clone() {
                announcing = true;
                let cli = cfg.lldpcli.clone();
                let tx = ann_tx.clone();
                tokio::task::spawn_blocking(move || {
                    let r = cli
                        .announce_verified(&a, ANNOUNCE_ATTEMPTS, ANNOUNCE_PAUSE)
                        .map_err(|e| e.to_string());
                    let _ = tx.blocking_send((a, r));
                });
            }
        }
        let due = co.deadline();
        tokio::select! {
            m = rx.recv() => {
                let Some(m) = m else { return };
                let now = Instant::now();
                match m {
                    WatchMsg::Started => {
                        up = true;
                        // A restarted lldpd forgot what it was told.
                        announced = None;
                        pending = Some(LldpRead::Read);
                        src.record("lldp_watch", json!({"running": true}));
                    }
                    WatchMsg::Event(_, _) => {
                        pending = Some(LldpRead::Read);
                        first_event.get_or_insert(now);
                    }
                    WatchMsg::Stopped(why) => {
                        up = false;
                        src.record("lldp_watch", json!({"running": false, "why": why}));
                        pending = Some(LldpRead::Unavailable(why));
                    }
                }
                co.note(now);
            }
            r = target.changed() => {
                if r.is_err() { return }
                document_changed = true;
            }
            Some((a, r)) = ann_rx.recv() => {
                announcing = false;
                match r {
                    Ok(attempts) => {
                        tracing::info!(ports = a.ports.len(), attempts, "LLDP: lldpd announces this host");
                        src.record("lldp_announce", json!({
                            "attempts": attempts,
                            "system_name": a.system_name,
                            "ports": a.ports.iter().map(|p| json!({"nic": p.nic.as_str(), "description": p.description})).collect::<Vec<_>>(),
                        }));
                        announced = Some(a);
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "LLDP: configuring lldpd's announcement failed (retried when lldpd restarts or the document changes)");
                        src.record("lldp_announce", json!({"error": e}));
                        // Not retried in a loop: the next start of the
                        // watch (lldpd back) or document change retries.
                        announced = Some(a);
                    }
                }
            }
            () = sleep_until(due.unwrap_or_else(far_future)), if due.is_some() => {
                if !co.due(Instant::now()) { continue }
                co.take();
                let Some(p) = pending.take() else { continue };
                let since = first_event.take();
                let changed = emit(&d, refresh(&d, Refresh { lldp: Some(p), ..Refresh::default() }).await);
                if changed {
                    if let Some(s) = since {
                        let us = Instant::now().duration_since(s).as_micros() as u64;
                        src.record("last_lldp_event_to_signal_us", json!(us));
                    }
                }
            }
        }
    }
}

struct AbortOnDrop(Option<JoinHandle<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if let Some(h) = &self.0 {
            h.abort();
        }
    }
}
