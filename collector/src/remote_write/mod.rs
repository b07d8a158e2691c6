//! Prometheus remote-write 1.0 of the subnet and interface series
//! (docs/collector.md, "Remote-write").
//!
//! Pure parts, tested without a receiver: [`proto`] (messages, protobuf +
//! snappy body), [`series`] (which rows become which samples, metric names
//! and labels), [`queue`] (bounded queue, batches), [`retry`] (status
//! classification, Retry-After, back-off). The I/O edge is [`RemoteWrite`]:
//! [`RemoteWrite::collect`] runs in the flusher right after the store's
//! flush (rows are handed out as the store consolidates them) and
//! [`RemoteWrite::run`] is the one sender task, which sends one batch at a
//! time, oldest first, and retries a batch until it is accepted, rejected or
//! the collector stops, so the receiver sees every series in time order. At
//! shutdown [`RemoteWrite::drain`] sends the rest (with the final flush's
//! rows) once, within `timeout`.

pub mod config;
pub mod proto;
pub mod queue;
pub mod retry;
pub mod series;

use std::{
    fmt::Write as _,
    sync::{
        atomic::{AtomicU64, Ordering::Relaxed},
        Arc, Mutex,
    },
    time::{Duration, SystemTime},
};

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::{
    header::{HeaderValue, AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE, RETRY_AFTER, USER_AGENT},
    Request, Uri,
};
use hyper_util::{
    client::legacy::{connect::HttpConnector, Client},
    rt::TokioExecutor,
};

pub use config::RemoteWriteConfig;
use queue::Queue;
use retry::{Backoff, Outcome};
use series::{Exporter, Item};

use crate::{config::ConfigError, store::Store};

/// Counters exported on `/metrics`.
#[derive(Debug, Default)]
pub struct Counters {
    pub samples_sent: AtomicU64,
    pub requests_sent: AtomicU64,
    /// Attempts that failed and were (or would have been) retried.
    pub requests_retried: AtomicU64,
    pub dropped_queue_full: AtomicU64,
    pub dropped_rejected: AtomicU64,
    /// Samples not delivered by the shutdown drain.
    pub dropped_shutdown: AtomicU64,
}

/// A credential, never printed.
struct Secret(HeaderValue);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// The remote-write pipeline of one collector.
#[derive(Debug)]
pub struct RemoteWrite {
    cfg: RemoteWriteConfig,
    uri: Uri,
    auth: Option<Secret>,
    exporter: Mutex<Exporter>,
    queue: Mutex<Queue>,
    wake: tokio::sync::Notify,
    pub counters: Counters,
}

fn read_secret(field: &'static str, path: &std::path::Path) -> Result<String, ConfigError> {
    let s = std::fs::read_to_string(path).map_err(|e| ConfigError::Invalid {
        field,
        message: format!("reading {}: {e}", path.display()),
    })?;
    let s = s.trim_end_matches(['\n', '\r']).to_string();
    if s.is_empty() {
        return Err(ConfigError::Invalid {
            field,
            message: format!("{} is empty", path.display()),
        });
    }
    Ok(s)
}

impl RemoteWrite {
    /// Validates `cfg`, reads the credential files, and starts the cursors
    /// at the store's newest rows.
    pub fn new(cfg: &RemoteWriteConfig, store: &Store) -> Result<Arc<Self>, ConfigError> {
        cfg.validate()?;
        let uri: Uri = cfg.url.parse().map_err(|e| ConfigError::Invalid {
            field: "remote_write.url",
            message: format!("{e}"),
        })?;
        let header = |v: String, field| {
            let mut h = HeaderValue::from_str(&v).map_err(|_| ConfigError::Invalid {
                field,
                message: "the secret holds characters not allowed in an HTTP header".into(),
            })?;
            h.set_sensitive(true);
            Ok::<_, ConfigError>(Secret(h))
        };
        let auth = if let Some(p) = &cfg.bearer_token_file {
            let t = read_secret("remote_write.bearer_token_file", p)?;
            Some(header(
                format!("Bearer {t}"),
                "remote_write.bearer_token_file",
            )?)
        } else if let Some(b) = &cfg.basic_auth {
            let pw = read_secret("remote_write.basic_auth.password_file", &b.password_file)?;
            let enc =
                base64::engine::general_purpose::STANDARD.encode(format!("{}:{pw}", b.username));
            Some(header(
                format!("Basic {enc}"),
                "remote_write.basic_auth.password_file",
            )?)
        } else {
            None
        };
        Ok(Arc::new(Self {
            cfg: cfg.clone(),
            uri,
            auth,
            exporter: Mutex::new(Exporter::new(&cfg.labels, store)),
            queue: Mutex::new(Queue::new(cfg.queue_max_samples)),
            wake: tokio::sync::Notify::new(),
            counters: Counters::default(),
        }))
    }

    /// Queues the samples of every row the store closed since the last call
    /// (called by the flusher with the store locked, right after a flush).
    pub fn collect(&self, store: &Store) {
        let mut items = Vec::new();
        if let Ok(mut e) = self.exporter.lock() {
            e.collect(store, &mut items);
        }
        if items.is_empty() {
            return;
        }
        if let Ok(mut q) = self.queue.lock() {
            let dropped = q.push(items);
            if dropped > 0 {
                self.counters.dropped_queue_full.fetch_add(dropped, Relaxed);
                tracing::warn!(
                    dropped,
                    queue_max_samples = self.cfg.queue_max_samples,
                    "remote-write queue full: oldest samples dropped"
                );
            }
        }
        self.wake.notify_one();
    }

    /// Samples waiting (not counting a batch in flight).
    pub fn queue_len(&self) -> usize {
        self.queue.lock().map(|q| q.len()).unwrap_or(0)
    }

    fn take(&self) -> Vec<Item> {
        self.queue
            .lock()
            .map(|mut q| q.take(self.cfg.batch_samples))
            .unwrap_or_default()
    }

    /// One attempt: the outcome and, for a failure, a description for logs.
    async fn attempt(
        &self,
        client: &Client<HttpConnector, Full<Bytes>>,
        body: &Bytes,
    ) -> (Outcome, String) {
        let mut req = Request::post(self.uri.clone())
            .header(CONTENT_ENCODING, "snappy")
            .header(CONTENT_TYPE, "application/x-protobuf")
            .header("X-Prometheus-Remote-Write-Version", "0.1.0")
            .header(
                USER_AGENT,
                concat!("hostnet-collector/", env!("CARGO_PKG_VERSION")),
            );
        if let Some(a) = &self.auth {
            req = req.header(AUTHORIZATION, a.0.clone());
        }
        let req = match req.body(Full::new(body.clone())) {
            Ok(r) => r,
            Err(e) => return (Outcome::Reject, format!("building request: {e}")),
        };
        let timeout = Duration::from_secs(self.cfg.timeout);
        let exchange = async {
            let resp = client.request(req).await.map_err(|e| format!("{e:?}"))?;
            let status = resp.status().as_u16();
            let retry_after = resp
                .headers()
                .get(RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            // Read the body (a receiver's error message; also frees the
            // connection for reuse); only its start is logged.
            let body = resp
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            let msg = String::from_utf8_lossy(&body[..body.len().min(512)]).into_owned();
            Ok::<_, String>((status, retry_after, msg))
        };
        match tokio::time::timeout(timeout, exchange).await {
            Err(_) => (
                Outcome::Retry { after: None },
                format!("no response within {timeout:?}"),
            ),
            Ok(Err(e)) => (Outcome::Retry { after: None }, e),
            Ok(Ok((status, ra, msg))) => (
                retry::classify(status, ra.as_deref(), SystemTime::now()),
                format!("HTTP {status}: {}", msg.trim()),
            ),
        }
    }

    /// The sender: until `stop` turns true, sends the queue batch by batch.
    pub async fn run(self: Arc<Self>, mut stop: tokio::sync::watch::Receiver<bool>) {
        let client: Client<HttpConnector, Full<Bytes>> =
            Client::builder(TokioExecutor::new()).build_http();
        let mut backoff = Backoff::new(
            Duration::from_millis(self.cfg.min_backoff_ms),
            Duration::from_millis(self.cfg.max_backoff_ms),
        );
        'outer: loop {
            let batch = self.take();
            if batch.is_empty() {
                tokio::select! {
                    _ = self.wake.notified() => continue,
                    _ = stop.wait_for(|s| *s) => break,
                }
            }
            let n = batch.len() as u64;
            let body = Bytes::from(proto::encode(&queue::request(&batch)));
            loop {
                let (outcome, why) = self.attempt(&client, &body).await;
                match outcome {
                    Outcome::Sent => {
                        self.counters.samples_sent.fetch_add(n, Relaxed);
                        self.counters.requests_sent.fetch_add(1, Relaxed);
                        backoff.reset();
                        break;
                    }
                    Outcome::Reject => {
                        self.counters.dropped_rejected.fetch_add(n, Relaxed);
                        tracing::error!(samples = n, response = %why, "remote-write batch rejected, dropped");
                        break;
                    }
                    Outcome::Retry { after } => {
                        self.counters.requests_retried.fetch_add(1, Relaxed);
                        let wait = after.unwrap_or_else(|| backoff.next_delay());
                        tracing::warn!(samples = n, error = %why, retry_in = ?wait, "remote-write failed, retrying");
                        tokio::select! {
                            _ = tokio::time::sleep(wait) => {}
                            _ = stop.wait_for(|s| *s) => {
                                // Left for `drain`, still the oldest.
                                if let Ok(mut q) = self.queue.lock() {
                                    q.requeue(batch);
                                }
                                break 'outer;
                            }
                        }
                    }
                }
            }
        }
    }

    /// At shutdown, after the sender stopped and the final flush queued the
    /// last rows: sends what is queued, each batch once, within `budget`;
    /// what is left (receiver down or slow) is dropped and counted.
    pub async fn drain(&self, budget: Duration) {
        let client: Client<HttpConnector, Full<Bytes>> =
            Client::builder(TokioExecutor::new()).build_http();
        let deadline = tokio::time::Instant::now() + budget;
        loop {
            let batch = self.take();
            if batch.is_empty() {
                break;
            }
            let n = batch.len() as u64;
            let body = Bytes::from(proto::encode(&queue::request(&batch)));
            let outcome = tokio::time::timeout_at(deadline, self.attempt(&client, &body)).await;
            match outcome {
                Ok((Outcome::Sent, _)) => {
                    self.counters.samples_sent.fetch_add(n, Relaxed);
                    self.counters.requests_sent.fetch_add(1, Relaxed);
                }
                Ok((Outcome::Reject, why)) => {
                    self.counters.dropped_rejected.fetch_add(n, Relaxed);
                    tracing::error!(samples = n, response = %why, "remote-write batch rejected, dropped");
                }
                Ok((Outcome::Retry { .. }, _)) | Err(_) => {
                    if let Ok(mut q) = self.queue.lock() {
                        q.requeue(batch);
                    }
                    break;
                }
            }
        }
        let left = self.take_all();
        if left > 0 {
            self.counters.dropped_shutdown.fetch_add(left, Relaxed);
            tracing::warn!(
                samples = left,
                "collector stopping: remote-write samples not delivered, dropped"
            );
        }
    }

    fn take_all(&self) -> u64 {
        self.queue
            .lock()
            .map(|mut q| {
                let n = q.len();
                q.take(n).len() as u64
            })
            .unwrap_or(0)
    }

    /// Appends the remote-write counters in Prometheus text format.
    pub fn write_metrics(&self, o: &mut String) {
        let c = &self.counters;
        let mut m = |name: &str, kind: &str, help: &str, samples: &[(&str, u64)]| {
            let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (labels, v) in samples {
                let _ = writeln!(o, "{name}{labels} {v}");
            }
        };
        m(
            "collector_remote_write_samples_sent_total",
            "counter",
            "Samples the remote-write receiver accepted.",
            &[("", c.samples_sent.load(Relaxed))],
        );
        m(
            "collector_remote_write_requests_total",
            "counter",
            "Remote-write requests the receiver accepted.",
            &[("", c.requests_sent.load(Relaxed))],
        );
        m(
            "collector_remote_write_retries_total",
            "counter",
            "Remote-write attempts that failed with 5xx, 429, a timeout or a connection error and were retried.",
            &[("", c.requests_retried.load(Relaxed))],
        );
        m(
            "collector_remote_write_samples_dropped_total",
            "counter",
            "Samples never delivered, by reason.",
            &[
                (
                    "{reason=\"queue_full\"}",
                    c.dropped_queue_full.load(Relaxed),
                ),
                ("{reason=\"rejected\"}", c.dropped_rejected.load(Relaxed)),
                ("{reason=\"shutdown\"}", c.dropped_shutdown.load(Relaxed)),
            ],
        );
        m(
            "collector_remote_write_queue_samples",
            "gauge",
            "Samples waiting to be sent (not counting the batch in flight).",
            &[("", self.queue_len() as u64)],
        );
    }
}

#[cfg(test)]
mod tests;
