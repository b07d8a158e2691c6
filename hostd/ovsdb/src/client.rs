//! The JSON-RPC connection: one reader task, one writer task, replies matched
//! to requests by id, server `echo` answered, `update` notifications applied
//! to an in-memory cache (RFC 7047 `monitor`) and handed to subscribers.

use std::{
    collections::{BTreeMap, HashMap},
    path::Path,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex, MutexGuard,
    },
    time::Duration,
};

use serde_json::{json, Map, Value};
use thiserror::Error;
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    sync::{mpsc, oneshot, watch},
    task::JoinHandle,
};
use tracing::{debug, info, warn};

use crate::{
    datum::{wire, Row, Uuid},
    framing::JsonSplitter,
    ops::{Condition, Mutation, Op, TxnResult},
};

/// The JSON id of the cache's monitor (`monitor` params[1]).
const CACHE_MONITOR: &str = "hostd-cache";

/// What can go wrong talking to OVSDB.
#[derive(Debug, Error)]
pub enum Error {
    #[error("connecting to {addr}: {source}")]
    Connect {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("OVSDB connection closed: {0}")]
    Closed(String),
    #[error("{method} failed: {error}")]
    Rpc { method: String, error: Value },
    #[error("transaction operation {index} ({op}) failed: {error}: {details}")]
    Op {
        index: usize,
        op: String,
        error: String,
        details: String,
    },
    #[error("transaction failed at commit: {error}: {details}")]
    Commit { error: String, details: String },
    #[error("timed out after {after:?} waiting for {what}")]
    Timeout { what: String, after: Duration },
    #[error("OVSDB protocol: {0}")]
    Protocol(String),
}

impl Error {
    /// Whether trying again (after reconnecting, for `Closed`) may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Closed(_) | Error::Timeout { .. } | Error::Connect { .. } => true,
            // A `wait` operation whose condition did not hold: the rows moved
            // under us; re-observe and re-plan.
            Error::Op { error, .. } => error == "timed out",
            _ => false,
        }
    }
}

/// The rows of the monitored tables, by UUID, as the server last reported.
#[derive(Debug, Default, Clone)]
pub struct Cache {
    tables: HashMap<String, BTreeMap<Uuid, Row>>,
    /// Updates applied since the monitor started.
    pub updates: u64,
}

impl Cache {
    /// All rows of `table` (empty if not monitored).
    pub fn rows(&self, table: &str) -> impl Iterator<Item = (&Uuid, &Row)> {
        self.tables.get(table).into_iter().flatten()
    }

    /// One row.
    pub fn row(&self, table: &str, uuid: &Uuid) -> Option<&Row> {
        self.tables.get(table)?.get(uuid)
    }

    /// The row whose `name` column is `name`.
    pub fn by_name(&self, table: &str, name: &str) -> Option<(&Uuid, &Row)> {
        self.rows(table)
            .find(|(_, r)| r.str("name").as_deref() == Some(name))
    }

    /// Number of rows in `table`.
    pub fn len(&self, table: &str) -> usize {
        self.tables.get(table).map_or(0, BTreeMap::len)
    }

    /// Whether `table` has no rows.
    pub fn is_empty(&self, table: &str) -> bool {
        self.len(table) == 0
    }

    /// Applies a `<table-updates>` object (RFC 7047 4.1.6). "new" is merged
    /// into the row, so partial rows are handled too.
    fn apply(&mut self, updates: &Value) -> Result<(), String> {
        let tables = updates
            .as_object()
            .ok_or_else(|| format!("table-updates is not an object: {updates}"))?;
        for (table, rows) in tables {
            let rows = rows
                .as_object()
                .ok_or_else(|| format!("table-update for {table} is not an object"))?;
            let t = self.tables.entry(table.clone()).or_default();
            for (uuid, update) in rows {
                let uuid = Uuid(uuid.clone());
                match update.get("new").and_then(Value::as_object) {
                    Some(new) => {
                        let row = t.entry(uuid).or_default();
                        for (k, v) in new {
                            row.0.insert(k.clone(), v.clone());
                        }
                    }
                    None => {
                        t.remove(&uuid);
                    }
                }
            }
        }
        self.updates += 1;
        Ok(())
    }
}

/// A failed interface after ovs-vswitchd applied a configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterfaceFailure {
    pub name: String,
    pub ofport: Option<i64>,
    pub error: Option<String>,
}

impl std::fmt::Display for InterfaceFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "interface {}: ", self.name)?;
        match &self.error {
            Some(e) => write!(f, "{e}"),
            None => write!(f, "ofport {:?}", self.ofport),
        }
    }
}

enum Reply {
    Ok(Value),
    Err(Value),
}

struct Shared {
    pending: Mutex<HashMap<u64, oneshot::Sender<Reply>>>,
    next_id: AtomicU64,
    cache: Mutex<Cache>,
    /// Bumped on every cache change and when the connection closes.
    version: watch::Sender<u64>,
    closed: Mutex<Option<String>>,
    cache_monitor_id: Mutex<Option<u64>>,
    subscribers: Mutex<Vec<mpsc::UnboundedSender<Value>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these locks leaves consistent data
    // (plain inserts/removes), so poisoning is ignored.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Shared {
    fn bump(&self) {
        self.version.send_modify(|v| *v += 1);
    }

    fn close(&self, reason: String) {
        debug!(%reason, "ovsdb connection closed");
        *lock(&self.closed) = Some(reason);
        lock(&self.pending).clear();
        lock(&self.subscribers).clear();
        self.bump();
    }

    fn closed(&self) -> Option<String> {
        lock(&self.closed).clone()
    }

    fn dispatch(&self, msg: Value, out: &mpsc::UnboundedSender<Vec<u8>>) {
        if let Some(method) = msg.get("method").and_then(Value::as_str) {
            match method {
                "echo" => {
                    let reply = json!({"id": msg["id"], "result": msg["params"], "error": null});
                    let _ = out.send(reply.to_string().into_bytes());
                    return;
                }
                "update" => {
                    let params = msg["params"].as_array();
                    if let Some([id, updates]) = params.map(Vec::as_slice) {
                        if id == CACHE_MONITOR {
                            if let Err(e) = lock(&self.cache).apply(updates) {
                                warn!(error = %e, "ignoring a malformed monitor update");
                            }
                            self.bump();
                        }
                    }
                }
                _ => {}
            }
            lock(&self.subscribers).retain(|s| s.send(msg.clone()).is_ok());
            return;
        }
        let Some(id) = msg.get("id").and_then(Value::as_u64) else {
            warn!(%msg, "ignoring a message that is neither a request nor a reply to us");
            return;
        };
        let Some(tx) = lock(&self.pending).remove(&id) else {
            warn!(id, "ignoring a reply to no pending request");
            return;
        };
        let error = msg.get("error").cloned().unwrap_or(Value::Null);
        let reply = if error.is_null() {
            let result = msg.get("result").cloned().unwrap_or(Value::Null);
            if *lock(&self.cache_monitor_id) == Some(id) {
                // The monitor's initial contents, applied here (not by the
                // caller) so that no later update can be applied before it.
                let mut c = lock(&self.cache);
                *c = Cache::default();
                if let Err(e) = c.apply(&result) {
                    warn!(error = %e, "malformed initial monitor reply");
                }
                drop(c);
                self.bump();
            }
            Reply::Ok(result)
        } else {
            Reply::Err(error)
        };
        let _ = tx.send(reply);
    }
}

/// An OVSDB connection. Cheap to share behind an `Arc`; requests may be
/// issued concurrently.
pub struct Client {
    out: mpsc::UnboundedSender<Vec<u8>>,
    shared: Arc<Shared>,
    tasks: Vec<JoinHandle<()>>,
    addr: String,
    /// Bound on each request's reply.
    pub request_timeout: Duration,
}

impl Drop for Client {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Client {
    /// Connects to `ovsdb-server` on a unix socket (`punix:` remote), e.g.
    /// `/run/openvswitch/db.sock`.
    pub async fn connect_unix(path: impl AsRef<Path>) -> Result<Self, Error> {
        let addr = path.as_ref().display().to_string();
        let s = tokio::net::UnixStream::connect(path.as_ref())
            .await
            .map_err(|source| Error::Connect {
                addr: addr.clone(),
                source,
            })?;
        let (r, w) = s.into_split();
        Ok(Self::from_halves(r, w, addr))
    }

    /// Connects over TCP (`ptcp:` remote), e.g. `127.0.0.1:6640`.
    pub async fn connect_tcp(addr: &str) -> Result<Self, Error> {
        let s = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|source| Error::Connect {
                addr: addr.to_owned(),
                source,
            })?;
        let _ = s.set_nodelay(true);
        let (r, w) = s.into_split();
        Ok(Self::from_halves(r, w, addr.to_owned()))
    }

    /// Runs the protocol over any byte stream halves (tests use a duplex pipe).
    pub fn from_halves<R, W>(reader: R, writer: W, addr: String) -> Self
    where
        R: AsyncRead + Unpin + Send + 'static,
        W: AsyncWrite + Unpin + Send + 'static,
    {
        let (version, _) = watch::channel(0);
        let shared = Arc::new(Shared {
            pending: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            cache: Mutex::new(Cache::default()),
            version,
            closed: Mutex::new(None),
            cache_monitor_id: Mutex::new(None),
            subscribers: Mutex::new(Vec::new()),
        });
        let (out, rx) = mpsc::unbounded_channel::<Vec<u8>>();
        let writer_task = tokio::spawn(write_loop(writer, rx, shared.clone()));
        let reader_task = tokio::spawn(read_loop(reader, shared.clone(), out.clone()));
        Self {
            out,
            shared,
            tasks: vec![reader_task, writer_task],
            addr,
            request_timeout: Duration::from_secs(60),
        }
    }

    /// Where this client is connected.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Why the connection closed, if it did.
    pub fn closed(&self) -> Option<String> {
        self.shared.closed()
    }

    /// Every server-initiated message except `echo` (notifications such as
    /// `update`, `update2`, `locked`), from now on.
    pub fn subscribe(&self) -> mpsc::UnboundedReceiver<Value> {
        let (tx, rx) = mpsc::unbounded_channel();
        lock(&self.shared.subscribers).push(tx);
        rx
    }

    /// Sends a request and waits for its reply.
    pub async fn request(&self, method: &str, params: Value) -> Result<Value, Error> {
        self.request_inner(method, params, false).await
    }

    async fn request_inner(
        &self,
        method: &str,
        params: Value,
        cache_monitor: bool,
    ) -> Result<Value, Error> {
        if let Some(r) = self.shared.closed() {
            return Err(Error::Closed(r));
        }
        let id = self.shared.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        lock(&self.shared.pending).insert(id, tx);
        if cache_monitor {
            *lock(&self.shared.cache_monitor_id) = Some(id);
        }
        let msg = json!({"id": id, "method": method, "params": params});
        if self.out.send(msg.to_string().into_bytes()).is_err() {
            lock(&self.shared.pending).remove(&id);
            return Err(Error::Closed("writer stopped".into()));
        }
        let reply = match tokio::time::timeout(self.request_timeout, rx).await {
            Err(_) => {
                lock(&self.shared.pending).remove(&id);
                return Err(Error::Timeout {
                    what: format!("the reply to {method}"),
                    after: self.request_timeout,
                });
            }
            Ok(Err(_)) => {
                return Err(Error::Closed(
                    self.shared
                        .closed()
                        .unwrap_or_else(|| "reply dropped".into()),
                ))
            }
            Ok(Ok(r)) => r,
        };
        match reply {
            Reply::Ok(v) => Ok(v),
            Reply::Err(error) => Err(Error::Rpc {
                method: method.to_owned(),
                error,
            }),
        }
    }

    /// `echo`: a round trip.
    pub async fn echo(&self, payload: Value) -> Result<Value, Error> {
        self.request("echo", payload).await
    }

    /// `list_dbs`.
    pub async fn list_dbs(&self) -> Result<Vec<String>, Error> {
        let v = self.request("list_dbs", json!([])).await?;
        serde_json::from_value(v).map_err(|e| Error::Protocol(format!("list_dbs reply: {e}")))
    }

    /// `transact`: runs `ops` atomically. An operation's error inside a
    /// successful JSON-RPC reply (and a commit error, reported as an extra
    /// element) is returned as [`Error::Op`] / [`Error::Commit`].
    pub async fn transact(&self, db: &str, ops: &[Op]) -> Result<TxnResult, Error> {
        let mut params = vec![json!(db)];
        params.extend(ops.iter().map(Op::to_json));
        let reply = self.request("transact", Value::Array(params)).await?;
        let results = match reply {
            Value::Array(a) => a,
            other => {
                return Err(Error::Protocol(format!(
                    "transact reply is not an array: {other}"
                )))
            }
        };
        for (index, r) in results.iter().enumerate() {
            if let Some(error) = r.get("error").filter(|e| !e.is_null()) {
                let error = error
                    .as_str()
                    .map_or_else(|| error.to_string(), str::to_owned);
                let details = r
                    .get("details")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned();
                return Err(match ops.get(index) {
                    Some(op) => Error::Op {
                        index,
                        op: op.summary(),
                        error,
                        details,
                    },
                    None => Error::Commit { error, details },
                });
            }
        }
        if results.len() < ops.len() {
            return Err(Error::Protocol(format!(
                "transact returned {} results for {} operations",
                results.len(),
                ops.len()
            )));
        }
        Ok(TxnResult(results))
    }

    /// Starts the cache: a `monitor` of `tables` (table, columns; empty
    /// columns = all). Returns once the initial contents are in the cache.
    pub async fn monitor_cache(&self, db: &str, tables: &[(&str, &[&str])]) -> Result<(), Error> {
        let mut reqs = Map::new();
        for (t, cols) in tables {
            let mut r = json!({"select": {"initial": true, "insert": true, "delete": true, "modify": true}});
            if !cols.is_empty() {
                r["columns"] = json!(cols);
            }
            reqs.insert((*t).to_owned(), r);
        }
        self.request_inner("monitor", json!([db, CACHE_MONITOR, reqs]), true)
            .await?;
        Ok(())
    }

    /// Reads the cache.
    pub fn with_cache<T>(&self, f: impl FnOnce(&Cache) -> T) -> T {
        f(&lock(&self.shared.cache))
    }

    /// Waits until `pred` holds on the cache (checked after every update).
    pub async fn wait_until(
        &self,
        what: &str,
        timeout: Duration,
        mut pred: impl FnMut(&Cache) -> bool,
    ) -> Result<(), Error> {
        let mut rx = self.shared.version.subscribe();
        let fut = async {
            loop {
                if self.with_cache(&mut pred) {
                    return Ok(());
                }
                if let Some(r) = self.shared.closed() {
                    return Err(Error::Closed(r));
                }
                if rx.changed().await.is_err() {
                    return Err(Error::Closed("client dropped".into()));
                }
            }
        };
        match tokio::time::timeout(timeout, fut).await {
            Ok(r) => r,
            Err(_) => Err(Error::Timeout {
                what: what.to_owned(),
                after: timeout,
            }),
        }
    }

    /// `Open_vSwitch`'s only row, if any.
    pub fn root(&self) -> Option<(Uuid, Row)> {
        self.with_cache(|c| {
            c.rows("Open_vSwitch")
                .next()
                .map(|(u, r)| (u.clone(), r.clone()))
        })
    }

    /// Inserts the `Open_vSwitch` row if the database has none (what
    /// `ovs-vsctl init` does on a freshly created database).
    pub async fn ensure_root_row(&self) -> Result<(), Error> {
        let sel = Op::Select {
            table: "Open_vSwitch".into(),
            conditions: vec![],
            columns: Some(vec!["_uuid".into()]),
        };
        let r = self.transact("Open_vSwitch", &[sel]).await?;
        if r.rows(0).is_empty() {
            info!("creating the Open_vSwitch root row");
            let wait_empty = Op::Wait {
                table: "Open_vSwitch".into(),
                conditions: vec![],
                columns: vec!["_uuid".into()],
                until: crate::ops::Until::Equal,
                rows: vec![],
                timeout_ms: Some(0),
            };
            let ins = Op::Insert {
                table: "Open_vSwitch".into(),
                row: Map::new(),
                uuid_name: None,
            };
            match self.transact("Open_vSwitch", &[wait_empty, ins]).await {
                // Someone else created it in between.
                Err(Error::Op { index: 0, .. }) => {}
                r => {
                    r?;
                }
            }
        }
        Ok(())
    }

    /// Runs `ops` in one transaction that also increments
    /// `Open_vSwitch.next_cfg`, then waits until ovs-vswitchd reports
    /// `cur_cfg` at least that value: it has applied the change (what
    /// `ovs-vsctl` does without `--no-wait`). Needs [`Client::monitor_cache`]
    /// on `Open_vSwitch` with `cur_cfg`. Returns the operations' results
    /// (without the two added ones) and the awaited `next_cfg`.
    pub async fn transact_applied(
        &self,
        ops: &[Op],
        timeout: Duration,
    ) -> Result<(TxnResult, i64), Error> {
        let mut all = ops.to_vec();
        all.push(Op::Mutate {
            table: "Open_vSwitch".into(),
            conditions: vec![],
            mutations: vec![Mutation::add("next_cfg", 1)],
        });
        all.push(Op::Select {
            table: "Open_vSwitch".into(),
            conditions: vec![],
            columns: Some(vec!["next_cfg".into()]),
        });
        let mut r = self.transact("Open_vSwitch", &all).await?;
        let next = r
            .rows(ops.len() + 1)
            .first()
            .and_then(|row| row.int("next_cfg"))
            .ok_or_else(|| {
                Error::Protocol("no Open_vSwitch row: the database is not initialised".into())
            })?;
        r.0.truncate(ops.len());
        self.wait_cur_cfg(next, timeout).await?;
        Ok((r, next))
    }

    /// Waits until `Open_vSwitch.cur_cfg >= next_cfg`.
    pub async fn wait_cur_cfg(&self, next_cfg: i64, timeout: Duration) -> Result<(), Error> {
        self.wait_until(
            &format!("ovs-vswitchd to apply next_cfg {next_cfg} (cur_cfg)"),
            timeout,
            |c| {
                c.rows("Open_vSwitch")
                    .any(|(_, r)| r.int("cur_cfg").unwrap_or(0) >= next_cfg)
            },
        )
        .await
    }

    /// The named interfaces ovs-vswitchd could not add: `error` set or
    /// `ofport` -1 (from the cache; monitor `Interface` with `name`,
    /// `ofport`, `error`). Names not in the cache are reported as missing.
    pub fn interface_failures<'a>(
        &self,
        names: impl IntoIterator<Item = &'a str>,
    ) -> Vec<InterfaceFailure> {
        self.with_cache(|c| {
            names
                .into_iter()
                .filter_map(|n| match c.by_name("Interface", n) {
                    None => Some(InterfaceFailure {
                        name: n.to_owned(),
                        ofport: None,
                        error: Some("no such Interface row".into()),
                    }),
                    Some((_, r)) => {
                        let ofport = r.int("ofport");
                        let error = r.str("error");
                        (error.is_some() || ofport == Some(-1)).then(|| InterfaceFailure {
                            name: n.to_owned(),
                            ofport,
                            error,
                        })
                    }
                })
                .collect()
        })
    }
}

/// `where _uuid == u`, a convenience for callers.
pub fn by_uuid(u: &Uuid) -> Vec<Condition> {
    vec![Condition::uuid(u)]
}

/// A set of references, a convenience for callers.
pub fn uuid_set<'a>(u: impl IntoIterator<Item = &'a Uuid>) -> Value {
    wire::set(u.into_iter().map(|u| crate::Atom::Uuid(u.clone())))
}

async fn write_loop<W: AsyncWrite + Unpin>(
    mut w: W,
    mut rx: mpsc::UnboundedReceiver<Vec<u8>>,
    shared: Arc<Shared>,
) {
    while let Some(msg) = rx.recv().await {
        let r = async {
            w.write_all(&msg).await?;
            // Send everything queued meanwhile before flushing.
            while let Ok(more) = rx.try_recv() {
                w.write_all(&more).await?;
            }
            w.flush().await
        }
        .await;
        if let Err(e) = r {
            shared.close(format!("write: {e}"));
            return;
        }
    }
}

async fn read_loop<R: AsyncRead + Unpin>(
    mut r: R,
    shared: Arc<Shared>,
    out: mpsc::UnboundedSender<Vec<u8>>,
) {
    let mut split = JsonSplitter::default();
    let mut buf = vec![0u8; 64 * 1024];
    let reason = 'outer: loop {
        let n = match r.read(&mut buf).await {
            Ok(0) => break "closed by the server".to_owned(),
            Ok(n) => n,
            Err(e) => break format!("read: {e}"),
        };
        split.push(&buf[..n]);
        loop {
            match split.next_value() {
                Ok(Some(v)) => shared.dispatch(v, &out),
                Ok(None) => break,
                Err(e) => break 'outer e.to_string(),
            }
        }
    };
    shared.close(reason);
}
