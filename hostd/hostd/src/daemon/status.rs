//! The daemon's LACP/LLDP status: what `Status()` returns, what the
//! `Diagnosis` property holds and what feeds the `LacpChanged` and
//! `LldpChanged` signals (docs/daemon.md, docs/status.md).
//!
//! [`HostStatusSource`] is a [`StatusSource`] backed by `hostd::status`:
//! bonds, members and NICs from netlink plus `/proc/net/bonding`, LLDP
//! neighbours from lldpd, the diagnosis with the intended cabling. It keeps
//! the last status; each [`StatusSource::refresh`] re-reads what it is told
//! may have changed and returns the differences ([`StatusChange`]), which
//! the daemon announces. What drives the refreshes (link events, lldpd's
//! watch stream, polls) is [`super::status_loop`].

use std::{
    collections::BTreeMap,
    sync::{Mutex, MutexGuard, PoisonError},
    time::{Duration, Instant},
};

use hostd_core::ovs::status::OvsBondStatus;
use hostd_core::status::{
    diagnose, diff, lldp::Parsed, BondStatus, Finding, HostStatus, Intent, LldpSource,
};
use serde_json::{json, Value};

use super::events::Event;
use crate::status::{apply_lldp, lldpd::Lldpcli, netlink::Indexes, Options, Reader};

/// A status change to announce.
#[derive(Debug, Clone, PartialEq)]
pub enum StatusChange {
    /// A bond's LACP state changed: `{"bond", "status" (null when it went
    /// away), "findings" (the bond's and its members')}`.
    Lacp(Value),
    /// A NIC's LLDP neighbours changed, or whether lldpd could be read:
    /// `{"nic" (null for the source alone), "neighbors", "source",
    /// "findings" (the NIC's)}`.
    Lldp(Value),
    /// The findings changed: the whole list (the `Diagnosis` property).
    Diagnosis(Value),
}

/// What a refresh re-reads.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Refresh {
    /// Everything netlink says (one full link dump): bonds, members, NICs.
    pub links: bool,
    /// Only the bonds and their members (dumps filtered by the kernel).
    pub bonds: bool,
    /// LLDP: read lldpd's neighbours, or record why it cannot be read.
    pub lldp: Option<LldpRead>,
}

impl Refresh {
    /// Nothing to read.
    pub fn is_empty(&self) -> bool {
        !self.links && !self.bonds && self.lldp.is_none()
    }
}

/// The LLDP part of a refresh.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LldpRead {
    /// Ask lldpd (`lldpcli -f json0 show neighbors details`).
    Read,
    /// lldpd cannot be asked (not running, its watch failed): why.
    Unavailable(String),
}

/// Where status comes from. Reads block (netlink, procfs, lldpcli): call
/// [`StatusSource::refresh`] on a blocking thread.
pub trait StatusSource: Send + Sync + 'static {
    /// Re-reads what `what` names and returns what changed since the last
    /// refresh (the first one announces every bond and neighbour).
    fn refresh(&self, what: &Refresh) -> Vec<StatusChange>;
    /// The intended cabling changed (from the document or the daemon's
    /// configuration): the diagnosis is made again.
    fn set_intent(&self, intent: Option<Intent>) -> Vec<StatusChange>;
    /// Whether an event of link `index` (named `name`) can change the
    /// status: the source only re-reads for those.
    fn concerns(&self, index: u32, name: Option<&str>) -> bool;
    /// The last status with its findings, intent and read counters (JSON).
    fn snapshot(&self) -> Value;
    /// The findings (JSON array).
    fn diagnosis(&self) -> Value;
    /// Records a fact about what drives the source (lldpd's watch, the
    /// announcement, latencies), shown in the snapshot under `loop`.
    fn record(&self, key: &str, value: Value);
}

/// Settings of the status part of the daemon.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusConfig {
    /// Read LLDP neighbours from lldpd (and watch it).
    pub lldp: bool,
    /// Configure lldpd to announce this host on the NICs the confirmed
    /// document manages.
    pub announce: bool,
    /// How to reach lldpd.
    pub lldpcli: Lldpcli,
    /// The system name to announce (`None`: the host name).
    pub system_name: Option<String>,
    /// The intended cabling when the document has no `daemon.cabling`.
    pub cabling: Option<Intent>,
    /// Coalescing of link events: quiet time after the last one.
    pub quiet: Duration,
    /// Coalescing of link events: longest delay after the first one.
    pub max_delay: Duration,
    /// Poll the bonds this often (not every LACP change makes a netlink
    /// event); `None`: never. After a change they are polled every second
    /// for a few seconds, whatever this says.
    pub poll: Option<Duration>,
    /// Where to ask ovs-vswitchd for its bonds (`None`: never).
    pub ovs: Option<OvsStatus>,
}

/// How the status source reaches ovs-vswitchd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OvsStatus {
    /// Its run directory (pid file, `ovs-vswitchd.PID.ctl`): bonds are
    /// read only while a pid file is there.
    pub rundir: std::path::PathBuf,
    /// Its control socket, when not the one in `rundir`.
    pub ctl: Option<std::path::PathBuf>,
}

impl Default for StatusConfig {
    fn default() -> Self {
        Self {
            lldp: true,
            announce: true,
            lldpcli: Lldpcli::default(),
            system_name: None,
            cabling: None,
            quiet: Duration::from_millis(10),
            max_delay: Duration::from_millis(250),
            poll: Some(Duration::from_secs(30)),
            ovs: Some(OvsStatus {
                rundir: "/run/openvswitch".into(),
                ctl: None,
            }),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Counters of the reads, for `Status()`.
#[derive(Debug, Default, Clone)]
struct Reads {
    full: u64,
    poll: u64,
    lldp: u64,
    errors: u64,
    last_error: Option<String>,
    last_full: Duration,
    last_poll: Duration,
    last_lldp: Duration,
    changes: u64,
}

#[derive(Debug, Default)]
struct Current {
    /// The last status (LLDP on the NICs as last read).
    status: HostStatus,
    /// The last LLDP read: `None` before the first one (or when LLDP is
    /// off), `Err(why)` when lldpd could not be asked.
    lldp: Option<Result<Parsed, String>>,
    /// Notes of the last link read and of the last LLDP read.
    link_notes: Vec<String>,
    /// Why the last read of ovs-vswitchd's bonds failed.
    ovs_note: Option<String>,
    intent: Option<Intent>,
    findings: Vec<Finding>,
    /// Whether the first refresh happened (the baseline).
    read_once: bool,
    reads: Reads,
    facts: BTreeMap<String, Value>,
}

/// The status source backed by `hostd::status`.
pub struct HostStatusSource {
    lldp_enabled: bool,
    ovs: Option<OvsStatus>,
    lldpcli: Lldpcli,
    /// Netlink socket and procfs reader; held through a link refresh (read
    /// and compose), so two refreshes cannot overwrite a newer read with an
    /// older one.
    reader: Mutex<Option<Reader>>,
    indexes: Mutex<Option<Indexes>>,
    current: Mutex<Current>,
}

impl HostStatusSource {
    /// A source as `cfg` says (nothing is read before the first refresh).
    pub fn new(cfg: &StatusConfig) -> Self {
        Self {
            lldp_enabled: cfg.lldp,
            ovs: cfg.ovs.clone(),
            lldpcli: cfg.lldpcli.clone(),
            reader: Mutex::new(None),
            indexes: Mutex::new(None),
            current: Mutex::new(Current {
                intent: cfg.cabling.clone(),
                ..Current::default()
            }),
        }
    }

    fn read_netlink(
        &self,
        reader: &mut Option<Reader>,
        what: &Refresh,
    ) -> Result<NetlinkRead, String> {
        if reader.is_none() {
            let opts = Options {
                lldp: false,
                ..Options::default()
            };
            *reader = Some(Reader::open(opts).map_err(|e| e.to_string())?);
        }
        let Some(r) = reader.as_mut() else {
            return Err("no reader".into());
        };
        let t = Instant::now();
        if what.links {
            let (s, idx) = r.read_links().map_err(|e| e.to_string())?;
            *lock(&self.indexes) = Some(idx);
            Ok(NetlinkRead::Full(s, t.elapsed()))
        } else {
            let (bonds, notes) = r.poll_bonds().map_err(|e| e.to_string())?;
            Ok(NetlinkRead::Bonds(bonds, notes, t.elapsed()))
        }
    }

    /// ovs-vswitchd's bonds: `None` when not asked for, `Ok(empty)` when
    /// it does not run (no pid file), `Err` when it runs but does not
    /// answer.
    fn read_ovs(&self) -> Option<Result<Vec<OvsBondStatus>, String>> {
        let o = self.ovs.as_ref()?;
        Some(
            crate::status::cli::read_ovs_bonds(o.ctl.as_deref(), &o.rundir)
                .map(Option::unwrap_or_default),
        )
    }

    fn read_lldp(&self, what: &LldpRead) -> (Result<Parsed, String>, Duration) {
        let t = Instant::now();
        let r = match what {
            LldpRead::Read => self.lldpcli.neighbors().map_err(|e| e.to_string()),
            LldpRead::Unavailable(why) => Err(why.clone()),
        };
        (r, t.elapsed())
    }

    /// Composes the new status under the lock and returns the changes.
    fn compose(
        &self,
        netlink: Option<Result<NetlinkRead, String>>,
        ovs: Option<Result<Vec<OvsBondStatus>, String>>,
        lldp: Option<(Result<Parsed, String>, Duration, bool)>,
    ) -> Vec<StatusChange> {
        let mut cur = lock(&self.current);
        let old = cur.status.clone();
        let mut new = old.clone();
        match netlink {
            Some(Ok(NetlinkRead::Full(s, took))) => {
                new.bonds = s.bonds;
                new.nics = s.nics;
                cur.link_notes = s.notes;
                cur.reads.full += 1;
                cur.reads.last_full = took;
            }
            Some(Ok(NetlinkRead::Bonds(bonds, notes, took))) => {
                new.bonds = bonds;
                cur.link_notes = notes;
                cur.reads.poll += 1;
                cur.reads.last_poll = took;
            }
            Some(Err(e)) => {
                // The previous link state stands; the next event or poll
                // reads again.
                tracing::warn!(error = %e, "status: reading links");
                cur.reads.errors += 1;
                cur.reads.last_error = Some(e);
            }
            None => {}
        }
        match ovs {
            Some(Ok(bonds)) => {
                new.ovs_bonds = bonds;
                cur.ovs_note = None;
            }
            Some(Err(e)) => {
                // The previous OVS bonds stand, with a note.
                tracing::warn!(error = %e, "status: reading Open vSwitch bonds");
                cur.ovs_note = Some(format!("Open vSwitch bonds not read: {e}"));
            }
            None => {}
        }
        if let Some((r, took, asked)) = lldp {
            if asked {
                cur.reads.lldp += 1;
                cur.reads.last_lldp = took;
            }
            if let Err(e) = &r {
                tracing::debug!(error = %e, "status: LLDP unavailable");
            }
            cur.lldp = Some(r);
        }
        match (&cur.lldp, self.lldp_enabled) {
            (Some(r), true) => apply_lldp(&mut new, r),
            _ => {
                for n in &mut new.nics {
                    n.lldp.clear();
                }
                new.lldp = LldpSource::NotRead;
            }
        }
        new.notes.clone_from(&cur.link_notes);
        new.notes.extend(cur.ovs_note.clone());
        if let Some(Ok(p)) = &cur.lldp {
            new.notes
                .extend(p.problems.iter().map(|x| format!("lldpcli: {x}")));
        }
        new.sort();
        let first = !cur.read_once;
        cur.read_once = true;
        let findings = diagnose(&new, cur.intent.as_ref());
        let out = announce(&old, &new, &cur.findings, &findings, first);
        if !out.is_empty() {
            cur.reads.changes += 1;
        }
        cur.status = new;
        cur.findings = findings;
        out
    }
}

enum NetlinkRead {
    Full(HostStatus, Duration),
    Bonds(Vec<BondStatus>, Vec<String>, Duration),
}

fn findings_of<'a>(f: &'a [Finding], object: &str) -> Vec<&'a Finding> {
    let prefix = format!("{object}/");
    f.iter()
        .filter(|x| x.object == object || x.object.starts_with(&prefix))
        .collect()
}

/// The changes to announce from `old` to `new` (`first`: the first read,
/// which announces every bond and every NIC with neighbours).
fn announce(
    old: &HostStatus,
    new: &HostStatus,
    old_findings: &[Finding],
    findings: &[Finding],
    first: bool,
) -> Vec<StatusChange> {
    let c = diff::changes(old, new);
    let mut out = Vec::new();
    for name in &c.bonds {
        out.push(StatusChange::Lacp(json!({
            "bond": name,
            "status": new.bond(name),
            "findings": findings_of(findings, name),
        })));
    }
    for name in &c.bonds_gone {
        out.push(StatusChange::Lacp(json!({
            "bond": name,
            "status": Value::Null,
            "findings": [],
        })));
    }
    // Open vSwitch bonds: the same signal, with `"kind": "ovs"`.
    for name in &c.ovs_bonds {
        out.push(StatusChange::Lacp(json!({
            "bond": name,
            "kind": "ovs",
            "status": new.ovs_bond(name),
            "findings": findings_of(findings, &format!("ovs:{name}")),
        })));
    }
    for name in &c.ovs_bonds_gone {
        out.push(StatusChange::Lacp(json!({
            "bond": name,
            "kind": "ovs",
            "status": Value::Null,
            "findings": [],
        })));
    }
    let lldp_event = |nic: Option<&str>| {
        let neighbors = nic
            .and_then(|n| new.nic(n))
            .map(|n| n.lldp.clone())
            .unwrap_or_default();
        StatusChange::Lldp(json!({
            "nic": nic,
            "neighbors": neighbors,
            "source": new.lldp,
            "findings": nic.map(|n| findings_of(findings, n)).unwrap_or_default(),
        }))
    };
    if c.lldp_source && (c.lldp.is_empty() || !first) {
        out.push(lldp_event(None));
    }
    for nic in &c.lldp {
        out.push(lldp_event(Some(nic)));
    }
    if old_findings != findings || first {
        out.push(StatusChange::Diagnosis(json!(findings)));
    }
    out
}

impl StatusSource for HostStatusSource {
    fn refresh(&self, what: &Refresh) -> Vec<StatusChange> {
        if what.is_empty() {
            return Vec::new();
        }
        let lldp = what.lldp.as_ref().filter(|_| self.lldp_enabled).map(|w| {
            let (r, took) = self.read_lldp(w);
            (r, took, *w == LldpRead::Read)
        });
        if what.links || what.bonds {
            let mut reader = lock(&self.reader);
            let nl = self.read_netlink(&mut reader, what);
            let ovs = self.read_ovs();
            self.compose(Some(nl), ovs, lldp)
        } else {
            self.compose(None, None, lldp)
        }
    }

    fn set_intent(&self, intent: Option<Intent>) -> Vec<StatusChange> {
        let mut cur = lock(&self.current);
        if cur.intent == intent {
            return Vec::new();
        }
        cur.intent = intent;
        let findings = diagnose(&cur.status, cur.intent.as_ref());
        if !cur.read_once || findings == cur.findings {
            cur.findings = findings;
            return Vec::new();
        }
        cur.findings = findings;
        vec![StatusChange::Diagnosis(json!(cur.findings))]
    }

    fn concerns(&self, index: u32, name: Option<&str>) -> bool {
        lock(&self.indexes)
            .as_ref()
            .is_none_or(|i| i.concerns(index, name))
    }

    fn snapshot(&self) -> Value {
        let cur = lock(&self.current);
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        let r = &cur.reads;
        json!({
            "status": cur.status,
            "findings": cur.findings,
            "intent": cur.intent,
            "reads": {
                "full": r.full,
                "poll": r.poll,
                "lldp": r.lldp,
                "errors": r.errors,
                "last_error": r.last_error,
                "last_full_ms": ms(r.last_full),
                "last_poll_ms": ms(r.last_poll),
                "last_lldp_ms": ms(r.last_lldp),
                "changes": r.changes,
            },
            "loop": cur.facts,
        })
    }

    fn diagnosis(&self) -> Value {
        json!(lock(&self.current).findings)
    }

    fn record(&self, key: &str, value: Value) {
        lock(&self.current).facts.insert(key.to_owned(), value);
    }
}

/// Link events waiting for the status loop: filled by the daemon's event
/// pump, drained by the loop. Bounded: past [`Inbox::CAP`] events (or on a
/// netlink overrun) it keeps only "re-read everything".
#[derive(Debug, Default)]
pub struct Inbox {
    q: Mutex<InboxQueue>,
    notify: tokio::sync::Notify,
}

#[derive(Debug, Default)]
struct InboxQueue {
    links: Vec<(u32, Option<String>)>,
    overflow: bool,
    ovs: bool,
    first: Option<tokio::time::Instant>,
}

/// What the inbox held.
#[derive(Debug, Default)]
pub struct InboxBatch {
    /// (ifindex, name) of the link events.
    pub links: Vec<(u32, Option<String>)>,
    /// Events were dropped (the cap, or a netlink overrun): re-read.
    pub overflow: bool,
    /// OVSDB's configuration changed (bonds may have come or gone).
    pub ovs: bool,
    /// When the first of them arrived.
    pub first: Option<tokio::time::Instant>,
}

impl Inbox {
    /// Most link events kept between two drains.
    pub const CAP: usize = 4096;

    /// Takes the link events (and overruns) of a batch.
    pub fn push(&self, batch: &[Event]) {
        let mut any = false;
        {
            let mut q = lock(&self.q);
            for ev in batch {
                match ev {
                    Event::Link { index, name } | Event::LinkGone { index, name } => {
                        any = true;
                        if q.overflow {
                            continue;
                        }
                        if q.links.len() >= Self::CAP {
                            q.overflow = true;
                            q.links.clear();
                        } else {
                            q.links.push((*index, name.clone()));
                        }
                    }
                    Event::Overrun => {
                        any = true;
                        q.overflow = true;
                        q.links.clear();
                    }
                    Event::Ovs => {
                        any = true;
                        q.ovs = true;
                    }
                    _ => {}
                }
            }
            if any {
                q.first.get_or_insert_with(tokio::time::Instant::now);
            }
        }
        if any {
            self.notify.notify_one();
        }
    }

    /// Waits for events and takes them.
    pub async fn next(&self) -> InboxBatch {
        loop {
            {
                let mut q = lock(&self.q);
                if q.overflow || q.ovs || !q.links.is_empty() {
                    return InboxBatch {
                        links: std::mem::take(&mut q.links),
                        overflow: std::mem::take(&mut q.overflow),
                        ovs: std::mem::take(&mut q.ovs),
                        first: q.first.take(),
                    };
                }
            }
            self.notify.notified().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hostd_core::status::{ExpectedPort, MemberStatus, NicStatus};

    fn fixture(name: &str) -> String {
        std::fs::read_to_string(format!(
            "{}/../core/tests/fixtures-status/{name}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .expect("fixture")
    }

    fn host() -> HostStatus {
        let mut b =
            hostd_core::status::procfs::parse("bond0", &fixture("proc-8023ad-negotiated.txt"))
                .expect("procfs")
                .bond;
        b.name = "bond0".into();
        let p = hostd_core::status::lldp::parse(&fixture("json0-lab-switch.json")).expect("json0");
        HostStatus {
            ovs_bonds: Vec::new(),
            bonds: vec![b],
            nics: ["eth0", "eth1"]
                .iter()
                .map(|n| NicStatus {
                    carrier: Some(true),
                    bond: Some("bond0".into()),
                    lldp: p.on(n).into_iter().cloned().collect(),
                    ..NicStatus::new(n)
                })
                .collect(),
            lldp: LldpSource::Read,
            notes: Vec::new(),
        }
    }

    fn kinds(c: &[StatusChange]) -> Vec<String> {
        c.iter()
            .map(|x| match x {
                StatusChange::Lacp(v) => format!("lacp {}", v["bond"].as_str().unwrap_or("")),
                StatusChange::Lldp(v) => format!("lldp {}", v["nic"].as_str().unwrap_or("-")),
                StatusChange::Diagnosis(v) => {
                    format!("diagnosis {}", v.as_array().map_or(0, Vec::len))
                }
            })
            .collect()
    }

    #[test]
    fn first_read_announces_everything_then_only_changes() {
        let h = host();
        let first = announce(&HostStatus::default(), &h, &[], &[], true);
        assert_eq!(
            kinds(&first),
            ["lacp bond0", "lldp eth0", "lldp eth1", "diagnosis 0"]
        );
        assert!(announce(&h, &h, &[], &[], false).is_empty());
        // A cable pull: the member loses carrier; the bond changes and the
        // diagnosis says so.
        let mut pulled = h.clone();
        pulled.bonds[0].members[1] = MemberStatus {
            carrier: Some(false),
            ..pulled.bonds[0].members[1].clone()
        };
        let f = diagnose(&pulled, None);
        let c = announce(&h, &pulled, &[], &f, false);
        assert_eq!(kinds(&c), ["lacp bond0", "diagnosis 1"]);
        let StatusChange::Lacp(v) = &c[0] else {
            panic!("{c:?}")
        };
        assert_eq!(v["status"]["members"][1]["carrier"], false);
        assert_eq!(v["findings"][0]["code"], "member-down");
        assert_eq!(v["findings"][0]["object"], "bond0/eth1");
    }

    #[test]
    fn lldpd_going_away_is_one_source_change_and_the_nics() {
        let h = host();
        let mut gone = h.clone();
        apply_lldp(&mut gone, &Err("lldpd is not running".into()));
        let c = announce(&h, &gone, &[], &[], false);
        assert_eq!(kinds(&c), ["lldp -", "lldp eth0", "lldp eth1"]);
        let StatusChange::Lldp(v) = &c[0] else {
            panic!("{c:?}")
        };
        assert_eq!(v["source"]["state"], "unavailable");
        assert_eq!(v["source"]["reason"], "lldpd is not running");
    }

    #[test]
    fn intent_changes_rediagnose_without_a_read() {
        let src = HostStatusSource::new(&StatusConfig {
            lldp: false,
            ..StatusConfig::default()
        });
        // Before the first read an intent changes nothing visible.
        let wrong = Intent {
            nics: [("eth0".to_owned(), ExpectedPort::new("sw9", "Ethernet9"))]
                .into_iter()
                .collect(),
        };
        assert!(src.set_intent(Some(wrong.clone())).is_empty());
        {
            let mut cur = lock(&src.current);
            cur.status = host();
            cur.read_once = true;
            cur.findings = diagnose(&cur.status, cur.intent.as_ref());
            assert_eq!(cur.findings[0].code.as_str(), "lldp-wrong-neighbor");
        }
        let c = src.set_intent(None);
        assert_eq!(kinds(&c), ["diagnosis 0"]);
        assert!(src.set_intent(None).is_empty());
        assert_eq!(src.diagnosis(), json!([]));
        let c = src.set_intent(Some(wrong));
        assert_eq!(kinds(&c), ["diagnosis 1"]);
        src.record("watch", json!("running"));
        let snap = src.snapshot();
        assert_eq!(snap["loop"]["watch"], "running");
        assert_eq!(snap["intent"]["nics"]["eth0"]["switch"], "sw9");
    }

    #[tokio::test(start_paused = true)]
    async fn inbox_keeps_link_events_and_collapses_past_its_cap() {
        let inbox = Inbox::default();
        inbox.push(&[
            Event::Address,
            Event::Link {
                index: 3,
                name: Some("eth0".into()),
            },
            Event::LinkGone {
                index: 4,
                name: None,
            },
        ]);
        let p = inbox.next().await;
        assert_eq!(p.links, [(3, Some("eth0".into())), (4, None)]);
        assert!(!p.overflow && p.first.is_some());
        // Addresses and routes do not wake it.
        inbox.push(&[Event::Address, Event::Route]);
        assert!(
            tokio::time::timeout(Duration::from_millis(10), inbox.next())
                .await
                .is_err()
        );
        let many: Vec<Event> = (0..Inbox::CAP as u32 + 5)
            .map(|i| Event::Link {
                index: i,
                name: None,
            })
            .collect();
        inbox.push(&many);
        let p = inbox.next().await;
        assert!(p.overflow && p.links.is_empty());
        inbox.push(&[Event::Overrun]);
        assert!(inbox.next().await.overflow);
    }
}
