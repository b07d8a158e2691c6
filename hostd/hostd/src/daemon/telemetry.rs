//! The eBPF telemetry agent, supervised: when the target document has a
//! `telemetry:` section, the agent ([`crate::telemetry::run`]) runs on its
//! own thread, attached to the section's interfaces that exist. When one of
//! them appears, is recreated (new ifindex) or disappears, or the section
//! changes, the agent is stopped (which detaches everything) and started
//! again on the interfaces present; counters pinned on bpffs carry over. An
//! agent that fails is restarted with back-off (1 s doubling to 60 s),
//! instead of the process exiting as `hostd telemetry run` does.

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    thread::JoinHandle,
    time::Duration,
};

use hostd_core::telemetry::TelemetrySpec;
use tokio::sync::broadcast;

use super::{events::Event, Daemon};

/// Agents being stopped, joined by [`stop_all`].
static STOPPING: Mutex<Vec<JoinHandle<()>>> = Mutex::new(Vec::new());

struct Running {
    spec: TelemetrySpec,
    present: Vec<(String, u32)>,
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
    failed: Arc<Mutex<Option<String>>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            if let Ok(mut v) = STOPPING.lock() {
                v.push(h);
            }
        }
    }
}

/// Joins agents that were told to stop (they detach before returning).
pub async fn stop_all() {
    let handles: Vec<JoinHandle<()>> = STOPPING
        .lock()
        .map(|mut v| v.drain(..).collect())
        .unwrap_or_default();
    if handles.is_empty() {
        return;
    }
    let _ = tokio::task::spawn_blocking(move || {
        for h in handles {
            let _ = h.join();
        }
    })
    .await;
}

/// The section's interfaces that exist now, with their ifindex.
fn present(spec: &TelemetrySpec) -> Vec<(String, u32)> {
    spec.interfaces
        .iter()
        .filter_map(|n| {
            nix::net::if_::if_nametoindex(n.as_str())
                .ok()
                .map(|i| (n.as_str().to_owned(), i))
        })
        .collect()
}

fn start(
    spec: &TelemetrySpec,
    present: Vec<(String, u32)>,
    pin: Option<std::path::PathBuf>,
) -> Running {
    let stop = Arc::new(AtomicBool::new(false));
    let failed = Arc::new(Mutex::new(None));
    let mut sub = spec.clone();
    sub.interfaces
        .retain(|n| present.iter().any(|(p, _)| p == n.as_str()));
    let (flag, fail) = (stop.clone(), failed.clone());
    let names: Vec<String> = present
        .iter()
        .map(|(n, i)| format!("{n} (ifindex {i})"))
        .collect();
    tracing::info!(interfaces = ?names, "telemetry agent starting");
    let handle = std::thread::Builder::new()
        .name("telemetry".into())
        .spawn(move || {
            let r = crate::telemetry::run(&sub, pin.as_deref(), &flag, |s| {
                tracing::info!(mode = ?s.mode, attached = ?s.attached, "telemetry agent attached");
            });
            match r {
                Ok(()) => tracing::info!("telemetry agent stopped; detached"),
                Err(e) => {
                    tracing::warn!(error = %e, "telemetry agent failed");
                    if let Ok(mut f) = fail.lock() {
                        *f = Some(e.to_string());
                    }
                }
            }
        })
        .map_err(|e| tracing::error!(error = %e, "cannot start the telemetry thread"))
        .ok();
    Running {
        spec: spec.clone(),
        present,
        stop,
        handle,
        failed,
    }
}

/// Supervises the agent for the target document until aborted.
pub async fn supervise(d: Daemon, links: broadcast::Sender<Event>) {
    let mut target = d.watch_target();
    let mut link_rx = links.subscribe();
    let pin = d.config().telemetry_pin_dir.clone();
    let mut running: Option<Running> = None;
    let mut backoff = Duration::ZERO;
    loop {
        let spec = target
            .borrow_and_update()
            .as_ref()
            .and_then(|t| t.state.telemetry.clone());
        let finished = running
            .as_ref()
            .is_some_and(|r| r.handle.as_ref().is_none_or(JoinHandle::is_finished));
        match &spec {
            None => {
                if running.take().is_some() {
                    tracing::info!("telemetry section gone: agent stopped");
                    stop_all().await;
                }
            }
            Some(spec) => {
                let now = present(spec);
                let same = running
                    .as_ref()
                    .is_some_and(|r| &r.spec == spec && r.present == now);
                if !same || finished {
                    if finished {
                        let why = running
                            .as_ref()
                            .and_then(|r| r.failed.lock().ok().and_then(|f| f.clone()));
                        backoff = if why.is_some() {
                            (backoff * 2).clamp(Duration::from_secs(1), Duration::from_secs(60))
                        } else {
                            Duration::ZERO
                        };
                        if let Some(w) = why {
                            tracing::warn!(error = %w, retry_in = ?backoff, "telemetry agent failed: restarting");
                        }
                    } else if running.is_some() {
                        tracing::info!(interfaces = ?now, "telemetry interfaces changed: re-attaching");
                    }
                    running = None;
                    stop_all().await;
                    if !backoff.is_zero() {
                        tokio::time::sleep(backoff).await;
                    }
                    if now.is_empty() {
                        tracing::warn!("none of the telemetry interfaces exists: waiting for one");
                    } else {
                        running = Some(start(spec, present(spec), pin.clone()));
                    }
                }
            }
        }
        let watching = running.is_some();
        tokio::select! {
            r = target.changed() => if r.is_err() { return },
            ev = link_rx.recv() => {
                let relevant = match &ev {
                    Ok(e) => spec.as_ref().is_some_and(|s| match e.link_name() {
                        Some(n) => s.interfaces.iter().any(|i| i.as_str() == n),
                        None => true,
                    }),
                    Err(broadcast::error::RecvError::Lagged(_)) => true,
                    Err(broadcast::error::RecvError::Closed) => return,
                };
                if !relevant { continue }
            }
            // Notice an agent that exited on its own.
            () = tokio::time::sleep(Duration::from_secs(5)), if watching => {}
        }
    }
}
