//! The D-Bus API: `org.hostnet.Hostd1` at `/org/hostnet/Hostd1`.
//!
//! Methods (documents are YAML or JSON text; results are JSON text):
//! `Plan(s doc) -> s`, `Apply(s doc, u confirm_timeout_s) -> s`,
//! `ApplyWithProbes(s doc, u confirm_timeout_s, as probes, u probe_timeout_s) -> s`,
//! `Confirm() -> s`, `Rollback() -> s`, `Show() -> s`, `Status() -> s`.
//! Properties: `ConfirmedId` (s), `PendingDeadline` (t, Unix seconds, 0 when
//! none), `Health` (s), `Diagnosis` (s, the status findings as a JSON
//! array). Signals: `Drift(s id, s json)`, `Repaired(s id, s json)`,
//! `FightDetected(s id, s json)`, `LacpChanged(s json)`, `LldpChanged(s
//! json)`.
//!
//! Reads (Plan, Show, Status, properties) are for everyone. Changes (Apply,
//! ApplyWithProbes, Confirm, Rollback) only for uid 0 or members of the
//! configured admin group, checked here from the caller's credentials as
//! the bus daemon reports them (`GetConnectionCredentials`: UnixUserID,
//! UnixGroupIDs), not only by the bus policy
//! (packaging/dbus/org.hostnet.Hostd1.conf).

use std::time::Duration;

use zbus::{connection::Builder, message::Header, object_server::SignalEmitter, Connection};

use super::{probe::Probe, Bus, Daemon, DaemonError, Note};

/// Well-known name.
pub const NAME: &str = "org.hostnet.Hostd1";
/// Object path.
pub const PATH: &str = "/org/hostnet/Hostd1";
/// Interface.
pub const INTERFACE: &str = "org.hostnet.Hostd1";

/// D-Bus errors (`org.hostnet.Hostd1.Error.*`); the CLI maps each to an
/// exit code.
#[derive(Debug, zbus::DBusError)]
#[zbus(prefix = "org.hostnet.Hostd1.Error")]
pub enum HostdError {
    /// A bus error.
    #[zbus(error)]
    ZBus(zbus::Error),
    /// The document does not parse or is invalid.
    Invalid(String),
    /// The document cannot be applied to this host.
    Conflict(String),
    /// Applying failed; rolled back.
    RolledBack(String),
    /// Applying and the rollback failed.
    RollbackFailed(String),
    /// The host could not be observed.
    Host(String),
    /// A record could not be read or written.
    Store(String),
    /// The firewall could not be read.
    Firewall(String),
    /// Nothing is pending.
    NoPending(String),
    /// Refused in the current state.
    Busy(String),
    /// The caller may not change hostd's state.
    AccessDenied(String),
    /// Anything else.
    Internal(String),
}

impl From<DaemonError> for HostdError {
    fn from(e: DaemonError) -> Self {
        match e {
            DaemonError::Invalid(m) => Self::Invalid(m),
            DaemonError::Conflict(m) => Self::Conflict(m),
            DaemonError::RolledBack(m) => Self::RolledBack(m),
            DaemonError::RollbackFailed(m) => Self::RollbackFailed(m),
            DaemonError::Host(m) => Self::Host(m),
            DaemonError::Store(m) => Self::Store(m),
            DaemonError::Firewall(m) => Self::Firewall(m),
            DaemonError::NoPending(m) => Self::NoPending(m),
            DaemonError::Busy(m) => Self::Busy(m),
            DaemonError::Denied(m) => Self::AccessDenied(m),
            DaemonError::Internal(m) => Self::Internal(m),
        }
    }
}

type Result<T> = std::result::Result<T, HostdError>;

/// The served object.
pub struct Api {
    d: Daemon,
    admin_gid: Option<u32>,
}

fn text(v: &serde_json::Value) -> String {
    v.to_string()
}

impl Api {
    /// Allows uid 0 and members of the admin group.
    async fn authorize(&self, conn: &Connection, hdr: &Header<'_>, what: &str) -> Result<()> {
        let sender = hdr
            .sender()
            .ok_or_else(|| HostdError::AccessDenied("a call without a sender".into()))?;
        let dbus = zbus::fdo::DBusProxy::new(conn).await?;
        let creds = dbus
            .get_connection_credentials(sender.clone().into())
            .await
            .map_err(|e| {
                HostdError::AccessDenied(format!("cannot read the caller's credentials: {e}"))
            })?;
        let uid = creds.unix_user_id().ok_or_else(|| {
            HostdError::AccessDenied("the bus did not report the caller's uid".into())
        })?;
        if uid == 0 {
            return Ok(());
        }
        if let Some(gid) = self.admin_gid {
            let member = match creds.unix_group_ids() {
                Some(g) => g.contains(&gid),
                None => groups_of(uid).contains(&gid),
            };
            if member {
                return Ok(());
            }
        }
        tracing::warn!(uid, sender = %sender, method = what, "refused: not authorised");
        Err(HostdError::AccessDenied(format!(
            "{what}: uid {uid} may not change hostd's state (root{} only)",
            self.d
                .config()
                .admin_group
                .as_ref()
                .map(|g| format!(" or group {g}"))
                .unwrap_or_default()
        )))
    }
}

/// Groups of a user from the group database (when the bus does not report
/// UnixGroupIDs).
fn groups_of(uid: u32) -> Vec<u32> {
    use nix::unistd::{getgrouplist, Uid, User};
    let Ok(Some(user)) = User::from_uid(Uid::from_raw(uid)) else {
        return Vec::new();
    };
    let Ok(name) = std::ffi::CString::new(user.name) else {
        return Vec::new();
    };
    getgrouplist(&name, user.gid)
        .map(|g| g.into_iter().map(|g| g.as_raw()).collect())
        .unwrap_or_default()
}

#[zbus::interface(name = "org.hostnet.Hostd1")]
impl Api {
    /// The plan for `doc` against the host (nothing is changed).
    async fn plan(&self, doc: &str) -> Result<String> {
        Ok(text(&self.d.plan(doc).await?))
    }

    /// Applies `doc`; with `confirm_timeout_s` > 0, reverts unless
    /// confirmed in time.
    async fn apply(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
        doc: &str,
        confirm_timeout_s: u32,
    ) -> Result<String> {
        self.authorize(conn, &hdr, "Apply").await?;
        Ok(text(
            &self
                .d
                .apply(doc, confirm_timeout_s, Vec::new(), None)
                .await?,
        ))
    }

    /// As `Apply`, confirming automatically when every probe
    /// (`tcp:HOST:PORT`, `ping:ADDR`) answers within `probe_timeout_s`
    /// (0: the document's or 30 s); reverting at once when one does not.
    async fn apply_with_probes(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
        doc: &str,
        confirm_timeout_s: u32,
        probes: Vec<String>,
        probe_timeout_s: u32,
    ) -> Result<String> {
        self.authorize(conn, &hdr, "ApplyWithProbes").await?;
        let probes = probes
            .iter()
            .enumerate()
            .map(|(i, p)| {
                p.parse::<Probe>()
                    .map_err(|e| HostdError::Invalid(format!("probes[{i}]: {e} (value: {p:?})")))
            })
            .collect::<Result<Vec<_>>>()?;
        let limit = (probe_timeout_s > 0).then(|| Duration::from_secs(u64::from(probe_timeout_s)));
        Ok(text(
            &self.d.apply(doc, confirm_timeout_s, probes, limit).await?,
        ))
    }

    /// Confirms the pending apply.
    async fn confirm(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<String> {
        self.authorize(conn, &hdr, "Confirm").await?;
        Ok(text(&self.d.confirm().await?))
    }

    /// Reverts the pending apply now.
    async fn rollback(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<String> {
        self.authorize(conn, &hdr, "Rollback").await?;
        Ok(text(&self.d.rollback().await?))
    }

    /// The host's network state in the desired-state schema (JSON).
    async fn show(&self) -> Result<String> {
        Ok(text(&self.d.show().await?))
    }

    /// Status (bonds, NICs, LLDP neighbours, findings, the daemon's own
    /// state), JSON.
    async fn status(&self) -> Result<String> {
        Ok(text(&self.d.status().await?))
    }

    /// Id of the confirmed document ("" when none).
    #[zbus(property)]
    async fn confirmed_id(&self) -> String {
        self.d.confirmed_id()
    }

    /// Deadline of the pending apply (Unix seconds; 0 when none).
    #[zbus(property)]
    async fn pending_deadline(&self) -> u64 {
        self.d.pending_deadline()
    }

    /// `ok`, `drift: ...`, `fight: ...`, `error: ...`, `starting`.
    #[zbus(property)]
    async fn health(&self) -> String {
        self.d.health()
    }

    /// The LACP/LLDP findings (JSON array: severity, code, object,
    /// message); `[]` when nothing is wrong.
    #[zbus(property)]
    async fn diagnosis(&self) -> String {
        self.d.diagnosis()
    }

    /// A managed object differs from the document.
    #[zbus(signal)]
    async fn drift(e: &SignalEmitter<'_>, id: &str, details: &str) -> zbus::Result<()>;

    /// A drift was repaired (or the repair failed: see `ok` in details).
    #[zbus(signal)]
    async fn repaired(e: &SignalEmitter<'_>, id: &str, details: &str) -> zbus::Result<()>;

    /// Another manager keeps undoing repairs; repairs are suspended.
    #[zbus(signal)]
    async fn fight_detected(e: &SignalEmitter<'_>, id: &str, details: &str) -> zbus::Result<()>;

    /// A bond's LACP state changed.
    #[zbus(signal)]
    async fn lacp_changed(e: &SignalEmitter<'_>, details: &str) -> zbus::Result<()>;

    /// A NIC's LLDP neighbour changed.
    #[zbus(signal)]
    async fn lldp_changed(e: &SignalEmitter<'_>, details: &str) -> zbus::Result<()>;
}

fn bus_err(e: zbus::Error) -> DaemonError {
    DaemonError::Internal(format!("D-Bus: {e}"))
}

/// Serves the interface on `bus` and forwards the daemon's announcements
/// as signals. The connection lives as long as the returned value.
pub async fn serve(d: &Daemon, bus: &Bus) -> std::result::Result<Connection, DaemonError> {
    let admin_gid = match &d.config().admin_group {
        Some(g) => Some(
            nix::unistd::Group::from_name(g)
                .ok()
                .flatten()
                .map(|g| g.gid.as_raw())
                .ok_or_else(|| {
                    DaemonError::Invalid(format!("--admin-group: no group named {g:?}"))
                })?,
        ),
        None => None,
    };
    let builder = match bus {
        Bus::System => Builder::system(),
        Bus::Address(a) => Builder::address(a.as_str()),
        Bus::Disabled => return Err(DaemonError::Internal("D-Bus disabled".into())),
    }
    .map_err(bus_err)?;
    let conn = builder
        .name(NAME)
        .map_err(bus_err)?
        .serve_at(
            PATH,
            Api {
                d: d.clone(),
                admin_gid,
            },
        )
        .map_err(bus_err)?
        .build()
        .await
        .map_err(|e| DaemonError::Internal(format!("D-Bus: serving {NAME}: {e}")))?;
    tracing::info!(name = NAME, "serving on D-Bus");
    let iface = conn
        .object_server()
        .interface::<_, Api>(PATH)
        .await
        .map_err(bus_err)?;
    let mut notes = d.subscribe();
    tokio::spawn(async move {
        let e = iface.signal_emitter();
        loop {
            let note = match notes.recv().await {
                Ok(n) => n,
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(lost = n, "D-Bus signal queue lagged");
                    continue;
                }
                Err(_) => return,
            };
            let r = match &note {
                Note::Drift { id, details } => Api::drift(e, id, &details.to_string()).await,
                Note::Repaired { id, details } => Api::repaired(e, id, &details.to_string()).await,
                Note::Fight { id, details } => {
                    Api::fight_detected(e, id, &details.to_string()).await
                }
                Note::Lacp(v) => Api::lacp_changed(e, &v.to_string()).await,
                Note::Lldp(v) => Api::lldp_changed(e, &v.to_string()).await,
                Note::Diagnosis => iface.get().await.diagnosis_changed(e).await,
                Note::Properties => {
                    let api = iface.get().await;
                    let a = api.confirmed_id_changed(e).await;
                    let b = api.pending_deadline_changed(e).await;
                    let c = api.health_changed(e).await;
                    a.and(b).and(c)
                }
            };
            if let Err(err) = r {
                tracing::warn!(error = %err, "emitting a D-Bus signal");
            }
        }
    });
    Ok(conn)
}
