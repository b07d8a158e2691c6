//! A D-Bus client of the daemon's signals that records when each one
//! arrives: what a local tool subscribing to `org.hostnet.Hostd1` sees, and
//! the clock of the event-to-signal benchmark (docs/daemon.md).
//!
//! It runs on its own thread and connection; every signal of the daemon's
//! object is kept (`LacpChanged`, `LldpChanged`, `Drift`, ... with their
//! JSON argument; a property change as `PropertiesChanged.NAME` with its
//! value, JSON when it is JSON text).

use std::{
    sync::{Arc, Condvar, Mutex, PoisonError},
    thread::JoinHandle,
    time::{Duration, Instant},
};

use futures_util::StreamExt as _;
use serde_json::Value;
use zbus::zvariant::{OwnedValue, Value as ZValue};

use super::dbus;

/// One signal, as received.
#[derive(Debug, Clone, PartialEq)]
pub struct Received {
    /// When this process received it.
    pub at: Instant,
    /// The member (`LacpChanged`), or `PropertiesChanged.Diagnosis` for a
    /// property.
    pub member: String,
    /// The JSON argument (the last string argument, parsed), or the
    /// property's value.
    pub body: Value,
}

#[derive(Default)]
struct Log {
    items: Vec<Received>,
    ended: Option<String>,
}

/// The signals received so far.
pub struct SignalLog {
    log: Arc<(Mutex<Log>, Condvar)>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

fn text_value(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|_| Value::String(s.to_owned()))
}

fn variant_json(v: &ZValue<'_>) -> Value {
    match v {
        ZValue::Str(s) => text_value(s.as_str()),
        ZValue::U64(n) => Value::from(*n),
        ZValue::U32(n) => Value::from(*n),
        ZValue::I64(n) => Value::from(*n),
        ZValue::Bool(b) => Value::from(*b),
        other => Value::String(format!("{other:?}")),
    }
}

fn decode(m: &zbus::Message) -> Vec<(String, Value)> {
    let h = m.header();
    let member = h
        .member()
        .map(|x| x.as_str().to_owned())
        .unwrap_or_default();
    let iface = h
        .interface()
        .map(|x| x.as_str().to_owned())
        .unwrap_or_default();
    let body = m.body();
    if iface == "org.freedesktop.DBus.Properties" && member == "PropertiesChanged" {
        let Ok((_, changed, _)) = body.deserialize::<(
            String,
            std::collections::HashMap<String, OwnedValue>,
            Vec<String>,
        )>() else {
            return Vec::new();
        };
        let mut out: Vec<(String, Value)> = changed
            .iter()
            .map(|(k, v)| (format!("PropertiesChanged.{k}"), variant_json(v)))
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        return out;
    }
    if iface != dbus::INTERFACE {
        return Vec::new();
    }
    let arg = body
        .deserialize::<(String, String)>()
        .map(|(_, s)| s)
        .or_else(|_| body.deserialize::<(String,)>().map(|(s,)| s))
        .map(|s| text_value(&s))
        .unwrap_or(Value::Null);
    vec![(member, arg)]
}

impl SignalLog {
    /// Connects to the bus at `address` and subscribes to every signal of
    /// the daemon's object; returns once the subscription is in place.
    pub fn start(address: &str) -> Result<Self, String> {
        let log: Arc<(Mutex<Log>, Condvar)> = Arc::default();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<(), String>>();
        let address = address.to_owned();
        let l = log.clone();
        let thread = std::thread::Builder::new()
            .name("hostd-signals".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e.to_string()));
                        return;
                    }
                };
                rt.block_on(async move {
                    let sub = async {
                        let conn = zbus::connection::Builder::address(address.as_str())?
                            .build()
                            .await?;
                        let rule = zbus::MatchRule::builder()
                            .msg_type(zbus::message::Type::Signal)
                            .path(dbus::PATH)?
                            .build();
                        let stream =
                            zbus::MessageStream::for_match_rule(rule, &conn, Some(1024)).await?;
                        Ok::<_, zbus::Error>((conn, stream))
                    };
                    let (_conn, mut stream) = match sub.await {
                        Ok(x) => x,
                        Err(e) => {
                            let _ = ready_tx.send(Err(e.to_string()));
                            return;
                        }
                    };
                    let _ = ready_tx.send(Ok(()));
                    let mut stop_rx = stop_rx;
                    let why = loop {
                        tokio::select! {
                            m = stream.next() => match m {
                                Some(Ok(m)) => {
                                    let at = Instant::now();
                                    let items = decode(&m);
                                    let (lock, cv) = &*l;
                                    let mut g = lock.lock().unwrap_or_else(PoisonError::into_inner);
                                    for (member, body) in items {
                                        g.items.push(Received { at, member, body });
                                    }
                                    cv.notify_all();
                                }
                                Some(Err(e)) => break e.to_string(),
                                None => break "the bus connection ended".to_owned(),
                            },
                            _ = &mut stop_rx => break "stopped".to_owned(),
                        }
                    };
                    let (lock, cv) = &*l;
                    lock.lock().unwrap_or_else(PoisonError::into_inner).ended = Some(why);
                    cv.notify_all();
                });
            })
            .map_err(|e| e.to_string())?;
        match ready_rx.recv_timeout(Duration::from_secs(60)) {
            Ok(Ok(())) => Ok(Self {
                log,
                stop: Some(stop_tx),
                thread: Some(thread),
            }),
            Ok(Err(e)) => Err(e),
            Err(e) => Err(format!("subscribing: {e}")),
        }
    }

    /// How many signals have been received.
    pub fn len(&self) -> usize {
        self.guard().items.len()
    }

    /// No signal yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Everything received so far.
    pub fn all(&self) -> Vec<Received> {
        self.guard().items.clone()
    }

    fn guard(&self) -> std::sync::MutexGuard<'_, Log> {
        self.log.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits up to `timeout` for a signal at or after position `from`
    /// that satisfies `pred`; returns it with its position.
    pub fn wait(
        &self,
        from: usize,
        timeout: Duration,
        pred: impl Fn(&Received) -> bool,
    ) -> Option<(usize, Received)> {
        let deadline = Instant::now() + timeout;
        let (lock, cv) = &*self.log;
        let mut g = lock.lock().unwrap_or_else(PoisonError::into_inner);
        let mut seen = from;
        loop {
            if let Some((i, r)) = g.items.iter().enumerate().skip(seen).find(|(_, r)| pred(r)) {
                return Some((i, r.clone()));
            }
            seen = g.items.len().max(from);
            if g.ended.is_some() {
                return None;
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            g = cv
                .wait_timeout(g, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }
}

impl Drop for SignalLog {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
