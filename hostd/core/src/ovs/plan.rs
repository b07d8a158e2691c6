//! The pure OVS planner: desired state + observed rows -> ordered steps,
//! each one OVSDB transaction.
//!
//! The desired state is first rendered into the rows it means ([`render`]),
//! then a row diff produces the operations. The same diff, fed the
//! pre-apply observation restricted to the rows a plan touched, is the
//! rollback ([`plan_ovs_rollback`]).
//!
//! Rules: only rows tagged `external_ids:hostd-owner=hostd` are changed or
//! deleted; a desired row whose name is held by a row without the tag is an
//! error (hostd never takes over OpenStack's or libvirt's rows); rows
//! without the tag on hostd's bridges are left alone, and a bridge of
//! hostd's that holds one is not deleted.
//!
//! Order: one `remove` step first (ports leaving a bridge, then bridges),
//! then one step per bridge by name (the bridge, then its ports, fake
//! bridges and interfaces).

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt,
};

use serde::{Deserialize, Serialize};

use super::{
    model::{Col, OvsObserved, OvsRow, Table, OWNER_KEY, OWNER_VALUE},
    schema::{OvsEntryType, OvsPortConfig, OvsState, OvsValidationErrors},
};

/// One change; each belongs to a step (one transaction).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum OvsOp {
    /// Insert a Bridge row (its ports follow as `AddPort`).
    AddBridge { row: OvsRow },
    /// Update managed columns of a Bridge.
    SetBridge {
        name: String,
        set: BTreeMap<String, Col>,
        was: BTreeMap<String, Col>,
    },
    /// Remove a Bridge from `Open_vSwitch.bridges` (its rows go with it).
    DelBridge { name: String },
    /// Insert a Port with its Interfaces and add it to `bridge`.
    AddPort {
        bridge: String,
        row: OvsRow,
        interfaces: Vec<OvsRow>,
    },
    /// Update managed columns of a Port.
    SetPort {
        name: String,
        set: BTreeMap<String, Col>,
        was: BTreeMap<String, Col>,
    },
    /// Remove a Port (and its `interfaces`) from `bridge`.
    DelPort {
        bridge: String,
        name: String,
        interfaces: Vec<String>,
    },
    /// Insert an Interface and add it to `port` (a bond member).
    AddInterface { port: String, row: OvsRow },
    /// Update managed columns of an Interface.
    SetInterface {
        name: String,
        set: BTreeMap<String, Col>,
        was: BTreeMap<String, Col>,
    },
    /// Remove an Interface from `port`.
    DelInterface { port: String, name: String },
}

/// One transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OvsStep {
    /// `remove`, or `bridge NAME`.
    pub title: String,
    pub ops: Vec<OvsOp>,
}

/// The ordered steps.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OvsPlan {
    pub steps: Vec<OvsStep>,
}

/// Rows a plan touches, by table and name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Touched(pub BTreeSet<(Table, String)>);

impl Touched {
    /// Whether the row is touched.
    pub fn contains(&self, table: Table, name: &str) -> bool {
        self.0.contains(&(table, name.to_owned()))
    }

    fn add(&mut self, table: Table, name: &str) {
        self.0.insert((table, name.to_owned()));
    }
}

impl OvsPlan {
    /// No step.
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// Number of operations in all steps.
    pub fn op_count(&self) -> usize {
        self.steps.iter().map(|s| s.ops.len()).sum()
    }

    /// The rows all steps touch.
    pub fn touched(&self) -> Touched {
        self.touched_by(self.steps.len())
    }

    /// The rows the first `n` steps touch (a bridge whose port set changes
    /// counts, and so does a port whose interface set changes).
    pub fn touched_by(&self, n: usize) -> Touched {
        let mut t = Touched::default();
        for op in self.steps.iter().take(n).flat_map(|s| &s.ops) {
            match op {
                OvsOp::AddBridge { row } => t.add(Table::Bridge, &row.name),
                OvsOp::SetBridge { name, .. } | OvsOp::DelBridge { name } => {
                    t.add(Table::Bridge, name)
                }
                OvsOp::AddPort {
                    bridge,
                    row,
                    interfaces,
                } => {
                    t.add(Table::Bridge, bridge);
                    t.add(Table::Port, &row.name);
                    for i in interfaces {
                        t.add(Table::Interface, &i.name);
                    }
                }
                OvsOp::SetPort { name, .. } => t.add(Table::Port, name),
                OvsOp::DelPort {
                    bridge,
                    name,
                    interfaces,
                } => {
                    t.add(Table::Bridge, bridge);
                    t.add(Table::Port, name);
                    for i in interfaces {
                        t.add(Table::Interface, i);
                    }
                }
                OvsOp::AddInterface { port, row } => {
                    t.add(Table::Port, port);
                    t.add(Table::Interface, &row.name);
                }
                OvsOp::SetInterface { name, .. } => t.add(Table::Interface, name),
                OvsOp::DelInterface { port, name } => {
                    t.add(Table::Port, port);
                    t.add(Table::Interface, name);
                }
            }
        }
        t
    }
}

/// Why no plan.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OvsPlanError {
    #[error(transparent)]
    Invalid(#[from] OvsValidationErrors),
    #[error("{table} {name} exists in OVSDB without hostd's tag (external_ids:{OWNER_KEY}={OWNER_VALUE}): hostd does not take over OVS objects it did not create")]
    NotOwned { table: Table, name: String },
    #[error(
        "bridge {bridge} is hostd's but holds port {port}, which is not: not deleting the bridge"
    )]
    ForeignPortOnBridge { bridge: String, port: String },
}

fn tag() -> BTreeMap<String, String> {
    BTreeMap::from([(OWNER_KEY.to_owned(), OWNER_VALUE.to_owned())])
}

fn row(name: &str, cols: Vec<(&str, Col)>, refs: Vec<String>) -> OvsRow {
    OvsRow {
        name: name.to_owned(),
        external_ids: tag(),
        columns: cols.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
        refs,
        status: BTreeMap::new(),
    }
}

fn port_defaults() -> Vec<(&'static str, Col)> {
    Table::Port
        .managed()
        .iter()
        .map(|(c, d)| (*c, d.value()))
        .collect()
}

fn set_col(cols: &mut [(&str, Col)], name: &str, v: Col) {
    if let Some(c) = cols.iter_mut().find(|(k, _)| *k == name) {
        c.1 = v;
    }
}

/// The rows `desired` means (every managed column given), owner-tagged.
/// Assumes `desired` is valid.
pub fn render(desired: &OvsState) -> OvsObserved {
    let mut out = OvsObserved::default();
    let iface = |name: &str| -> OvsRow {
        let (ty, options, mtu) = match desired.entry(name) {
            Some(e) if e.kind == OvsEntryType::OvsInterface => match &e.patch {
                Some(p) => (
                    "patch",
                    BTreeMap::from([("peer".to_owned(), p.peer.to_string())]),
                    None,
                ),
                None => ("internal", BTreeMap::new(), e.mtu),
            },
            Some(e) => ("internal", BTreeMap::new(), e.mtu),
            None => ("", BTreeMap::new(), None),
        };
        row(
            name,
            vec![
                ("type", Col::str(ty)),
                ("options", Col::Map(options)),
                (
                    "mtu_request",
                    mtu.map_or(Col::Null, |m| Col::Int(i64::from(m.get()))),
                ),
            ],
            vec![],
        )
    };
    let port_rows = |p: &OvsPortConfig, fake_tag: Option<u16>, out: &mut OvsObserved| {
        let mut cols = port_defaults();
        if let Some(v) = &p.vlan {
            set_col(
                &mut cols,
                "tag",
                v.tag.map_or(Col::Null, |t| Col::Int(i64::from(t.get()))),
            );
            set_col(
                &mut cols,
                "trunks",
                Col::Ints(v.trunk_ids().into_iter().map(i64::from).collect()),
            );
            set_col(&mut cols, "vlan_mode", Col::str(v.mode.as_str()));
        }
        if let Some(t) = fake_tag {
            set_col(&mut cols, "tag", Col::Int(i64::from(t)));
        }
        let members: Vec<String> = match &p.link_aggregation {
            Some(b) => {
                set_col(&mut cols, "bond_mode", Col::str(b.mode.as_str()));
                set_col(
                    &mut cols,
                    "lacp",
                    b.lacp.map_or(Col::Null, |l| Col::str(l.as_str())),
                );
                set_col(
                    &mut cols,
                    "bond_updelay",
                    Col::Int(i64::from(b.bond_updelay.unwrap_or(0))),
                );
                set_col(
                    &mut cols,
                    "bond_downdelay",
                    Col::Int(i64::from(b.bond_downdelay.unwrap_or(0))),
                );
                let mut oc = BTreeMap::new();
                if let Some(t) = b.lacp_time {
                    oc.insert("lacp-time".to_owned(), t.as_str().to_owned());
                }
                set_col(&mut cols, "other_config", Col::Map(oc));
                b.port.iter().map(|m| m.name.to_string()).collect()
            }
            None => vec![p.name.to_string()],
        };
        for m in &members {
            out.interfaces.push(iface(m));
        }
        out.ports.push(row(p.name.as_str(), cols, members));
    };
    for e in &desired.interfaces {
        if e.kind != OvsEntryType::OvsBridge {
            continue;
        }
        let b = e.bridge.clone().unwrap_or_default();
        if b.parent.is_some() {
            continue;
        }
        let name = e.name.as_str();
        let o = b.options.clone().unwrap_or_default();
        let mut refs = vec![name.to_owned()];
        // The local internal port.
        out.ports
            .push(row(name, port_defaults(), vec![name.to_owned()]));
        out.interfaces.push(iface(name));
        for p in &b.port {
            refs.push(p.name.to_string());
            port_rows(p, None, &mut out);
        }
        // Fake bridges on this one, and their ports.
        for f in &desired.interfaces {
            let Some(fb) = &f.bridge else { continue };
            if fb.parent.as_ref().map(|p| p.as_str()) != Some(name) {
                continue;
            }
            let t = fb.tag.map_or(0, |t| t.get());
            let mut cols = port_defaults();
            set_col(&mut cols, "fake_bridge", Col::Bool(true));
            set_col(&mut cols, "tag", Col::Int(i64::from(t)));
            refs.push(f.name.to_string());
            out.ports
                .push(row(f.name.as_str(), cols, vec![f.name.to_string()]));
            out.interfaces.push(iface(f.name.as_str()));
            for p in &fb.port {
                refs.push(p.name.to_string());
                port_rows(p, Some(t), &mut out);
            }
        }
        out.bridges.push(row(
            name,
            vec![
                (
                    "datapath_type",
                    Col::str(o.datapath.map_or("", |d| d.as_db())),
                ),
                (
                    "fail_mode",
                    o.fail_mode.map_or(Col::Null, |f| Col::str(f.as_str())),
                ),
                ("stp_enable", Col::Bool(o.stp.unwrap_or(false))),
                ("rstp_enable", Col::Bool(o.rstp.unwrap_or(false))),
                (
                    "mcast_snooping_enable",
                    Col::Bool(o.mcast_snooping_enable.unwrap_or(false)),
                ),
            ],
            refs,
        ));
    }
    out.normalize();
    out
}

/// Plans `desired` against `observed`: validation first, nothing planned
/// on an invalid state.
pub fn plan_ovs(desired: &OvsState, observed: &OvsObserved) -> Result<OvsPlan, OvsPlanError> {
    desired.validate()?;
    let want = render(desired);
    diff(&want, observed, &|_, r: &OvsRow| r.owned(), true)
}

/// Removes every row hostd created (a bridge of hostd's holding a foreign
/// port is refused).
pub fn plan_ovs_teardown(observed: &OvsObserved) -> Result<OvsPlan, OvsPlanError> {
    diff(
        &OvsObserved::default(),
        observed,
        &|_, r: &OvsRow| r.owned(),
        true,
    )
}

/// Restores the rows in `touched` (from a plan's [`OvsPlan::touched_by`])
/// to what `before` (the pre-apply observation) held; `now` is the current
/// observation. Rows not touched are not looked at.
pub fn plan_ovs_rollback(
    before: &OvsObserved,
    now: &OvsObserved,
    touched: &Touched,
) -> Result<OvsPlan, OvsPlanError> {
    // A touched row's parents (in either observation) come along, so that
    // the diff knows where it belongs; their untouched children do not.
    let mut touched = touched.clone();
    for o in [before, now] {
        for (t, up) in [
            (Table::Interface, Table::Port),
            (Table::Port, Table::Bridge),
        ] {
            for r in o.rows(t) {
                if touched.contains(t, &r.name) {
                    if let Some(p) = o.parent(t, &r.name) {
                        touched.add(up, p);
                    }
                }
            }
        }
    }
    let touched = &touched;
    let mut want = OvsObserved::default();
    for t in [Table::Bridge, Table::Port, Table::Interface] {
        for r in before.rows(t) {
            if !touched.contains(t, &r.name) {
                continue;
            }
            let mut r = r.clone();
            r.status.clear();
            if let Some(child) = t.child() {
                r.refs.retain(|c| touched.contains(child, c));
            }
            want.rows_mut(t).push(r);
        }
    }
    want.normalize();
    diff(
        &want,
        now,
        &|t, r: &OvsRow| touched.contains(t, &r.name),
        false,
    )
}

fn changes(table: Table, want: &OvsRow, have: &OvsRow) -> Option<OvsOp> {
    let mut set = BTreeMap::new();
    let mut was = BTreeMap::new();
    for (c, _) in table.managed() {
        let (w, h) = (want.col(table, c), have.col(table, c));
        if w != h {
            set.insert((*c).to_owned(), w);
            was.insert((*c).to_owned(), h);
        }
    }
    if set.is_empty() {
        return None;
    }
    let name = want.name.clone();
    Some(match table {
        Table::Bridge => OvsOp::SetBridge { name, set, was },
        Table::Port => OvsOp::SetPort { name, set, was },
        Table::Interface => OvsOp::SetInterface { name, set, was },
    })
}

fn bare(r: &OvsRow) -> OvsRow {
    let mut r = r.clone();
    r.refs.clear();
    r.status.clear();
    r
}

/// The row diff. `managed` says which observed rows may be changed or
/// deleted; `check_owner` refuses desired names held by unmanaged rows.
fn diff(
    want: &OvsObserved,
    have: &OvsObserved,
    managed: &dyn Fn(Table, &OvsRow) -> bool,
    check_owner: bool,
) -> Result<OvsPlan, OvsPlanError> {
    let is_managed = |t: Table, name: &str| have.get(t, name).is_some_and(|r| managed(t, r));
    let claim = |t: Table, name: &str| -> Result<(), OvsPlanError> {
        match have.get(t, name) {
            Some(r) if check_owner && !managed(t, r) => Err(OvsPlanError::NotOwned {
                table: t,
                name: name.to_owned(),
            }),
            _ => Ok(()),
        }
    };
    let mut steps = Vec::new();

    // Removals: ports leaving their bridge (or going away), then bridges.
    let mut remove = Vec::new();
    let mut gone_bridges = BTreeSet::new();
    for hb in &have.bridges {
        if managed(Table::Bridge, hb) && want.get(Table::Bridge, &hb.name).is_none() {
            if let Some(p) = hb
                .refs
                .iter()
                .find(|p| !is_managed(Table::Port, p) && have.get(Table::Port, p).is_some())
            {
                if check_owner {
                    return Err(OvsPlanError::ForeignPortOnBridge {
                        bridge: hb.name.clone(),
                        port: p.clone(),
                    });
                }
            }
            gone_bridges.insert(hb.name.clone());
        }
    }
    for hp in &have.ports {
        if !managed(Table::Port, hp) {
            continue;
        }
        let Some(hbr) = have.parent(Table::Port, &hp.name) else {
            continue;
        };
        let wbr = want.parent(Table::Port, &hp.name);
        if wbr != Some(hbr) || gone_bridges.contains(hbr) {
            remove.push(OvsOp::DelPort {
                bridge: hbr.to_owned(),
                name: hp.name.clone(),
                interfaces: hp.refs.clone(),
            });
        }
    }
    for b in &gone_bridges {
        remove.push(OvsOp::DelBridge { name: b.clone() });
    }
    if !remove.is_empty() {
        steps.push(OvsStep {
            title: "remove".into(),
            ops: remove,
        });
    }

    // One step per bridge.
    for wb in &want.bridges {
        let mut ops = Vec::new();
        claim(Table::Bridge, &wb.name)?;
        match have.get(Table::Bridge, &wb.name) {
            None => ops.push(OvsOp::AddBridge { row: bare(wb) }),
            Some(hb) => ops.extend(changes(Table::Bridge, wb, hb)),
        }
        let mut adds = Vec::new();
        for pname in &wb.refs {
            let Some(wp) = want.get(Table::Port, pname) else {
                continue;
            };
            claim(Table::Port, pname)?;
            let hp = have.get(Table::Port, pname);
            let same_bridge = have.parent(Table::Port, pname) == Some(wb.name.as_str());
            let wifaces: Vec<&OvsRow> = wp
                .refs
                .iter()
                .filter_map(|i| want.get(Table::Interface, i))
                .collect();
            match hp {
                Some(hp) if same_bridge => {
                    ops.extend(changes(Table::Port, wp, hp));
                    for hi in &hp.refs {
                        if !wp.refs.contains(hi) && is_managed(Table::Interface, hi) {
                            ops.push(OvsOp::DelInterface {
                                port: pname.clone(),
                                name: hi.clone(),
                            });
                        }
                    }
                    for wi in &wifaces {
                        claim(Table::Interface, &wi.name)?;
                        match have.get(Table::Interface, &wi.name) {
                            Some(hi) if hp.refs.contains(&wi.name) => {
                                ops.extend(changes(Table::Interface, wi, hi))
                            }
                            _ => ops.push(OvsOp::AddInterface {
                                port: pname.clone(),
                                row: bare(wi),
                            }),
                        }
                    }
                }
                _ => {
                    for wi in &wifaces {
                        claim(Table::Interface, &wi.name)?;
                    }
                    adds.push(OvsOp::AddPort {
                        bridge: wb.name.clone(),
                        row: bare(wp),
                        interfaces: wifaces.iter().map(|r| bare(r)).collect(),
                    });
                }
            }
        }
        ops.extend(adds);
        if !ops.is_empty() {
            steps.push(OvsStep {
                title: format!("bridge {}", wb.name),
                ops,
            });
        }
    }
    Ok(OvsPlan { steps })
}

fn cols_text(table: Table, r: &OvsRow) -> String {
    r.columns
        .iter()
        .filter(|(c, v)| !v.is_default(table, c))
        .map(|(c, v)| format!(" {c}={v}"))
        .collect()
}

fn set_text(set: &BTreeMap<String, Col>, was: &BTreeMap<String, Col>) -> String {
    set.iter()
        .map(|(c, v)| match was.get(c) {
            Some(w) => format!(" {c}={v} (was {w})"),
            None => format!(" {c}={v}"),
        })
        .collect()
}

impl fmt::Display for OvsOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OvsOp::AddBridge { row } => {
                write!(
                    f,
                    "create bridge {}{}",
                    row.name,
                    cols_text(Table::Bridge, row)
                )
            }
            OvsOp::SetBridge { name, set, was } => {
                write!(f, "set bridge {name}{}", set_text(set, was))
            }
            OvsOp::DelBridge { name } => write!(f, "delete bridge {name}"),
            OvsOp::AddPort {
                bridge,
                row,
                interfaces,
            } => {
                let kind = if row.refs.len() > 1 { "bond" } else { "port" };
                let ifs: Vec<String> = interfaces
                    .iter()
                    .map(|i| format!("{}{}", i.name, cols_text(Table::Interface, i)))
                    .collect();
                write!(
                    f,
                    "create {kind} {} on {bridge}{} [{}]",
                    row.name,
                    cols_text(Table::Port, row),
                    ifs.join(", ")
                )
            }
            OvsOp::SetPort { name, set, was } => write!(f, "set port {name}{}", set_text(set, was)),
            OvsOp::DelPort {
                bridge,
                name,
                interfaces,
            } => write!(
                f,
                "delete port {name} from {bridge} [{}]",
                interfaces.join(", ")
            ),
            OvsOp::AddInterface { port, row } => write!(
                f,
                "create interface {} in {port}{}",
                row.name,
                cols_text(Table::Interface, row)
            ),
            OvsOp::SetInterface { name, set, was } => {
                write!(f, "set interface {name}{}", set_text(set, was))
            }
            OvsOp::DelInterface { port, name } => write!(f, "delete interface {name} from {port}"),
        }
    }
}

impl fmt::Display for OvsPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.steps.is_empty() {
            return writeln!(f, "nothing to do");
        }
        for (i, s) in self.steps.iter().enumerate() {
            writeln!(f, "step {}: {}", i + 1, s.title)?;
            for op in &s.ops {
                writeln!(f, "  {op}")?;
            }
        }
        Ok(())
    }
}

/// Applies a plan to an observation as OVSDB would (pure; for tests and
/// for checking that a plan converges): the rows after the plan.
pub fn simulate(observed: &OvsObserved, plan: &OvsPlan) -> OvsObserved {
    let mut o = observed.clone();
    fn put(o: &mut OvsObserved, t: Table, r: OvsRow) {
        let rows = o.rows_mut(t);
        rows.retain(|x| x.name != r.name);
        rows.push(r);
    }
    fn set(o: &mut OvsObserved, t: Table, name: &str, set: &BTreeMap<String, Col>) {
        if let Some(r) = o.rows_mut(t).iter_mut().find(|r| r.name == name) {
            for (k, v) in set {
                r.columns.insert(k.clone(), v.clone());
            }
        }
    }
    fn unref(o: &mut OvsObserved, t: Table, parent: &str, child: &str) {
        if let Some(r) = o.rows_mut(t).iter_mut().find(|r| r.name == parent) {
            r.refs.retain(|c| c != child);
        }
    }
    fn addref(o: &mut OvsObserved, t: Table, parent: &str, child: &str) {
        if let Some(r) = o.rows_mut(t).iter_mut().find(|r| r.name == parent) {
            r.refs.push(child.to_owned());
        }
    }
    for op in plan.steps.iter().flat_map(|s| &s.ops) {
        match op {
            OvsOp::AddBridge { row } => put(&mut o, Table::Bridge, row.clone()),
            OvsOp::SetBridge { name, set: s, .. } => set(&mut o, Table::Bridge, name, s),
            OvsOp::DelBridge { name } => o.bridges.retain(|b| &b.name != name),
            OvsOp::AddPort {
                bridge,
                row,
                interfaces,
            } => {
                for i in interfaces {
                    put(&mut o, Table::Interface, i.clone());
                }
                let mut p = row.clone();
                p.refs = interfaces.iter().map(|i| i.name.clone()).collect();
                put(&mut o, Table::Port, p);
                addref(&mut o, Table::Bridge, bridge, &row.name);
            }
            OvsOp::SetPort { name, set: s, .. } => set(&mut o, Table::Port, name, s),
            OvsOp::DelPort {
                bridge,
                name,
                interfaces,
            } => {
                unref(&mut o, Table::Bridge, bridge, name);
                o.ports.retain(|p| &p.name != name);
                o.interfaces.retain(|i| !interfaces.contains(&i.name));
            }
            OvsOp::AddInterface { port, row } => {
                put(&mut o, Table::Interface, row.clone());
                addref(&mut o, Table::Port, port, &row.name);
            }
            OvsOp::SetInterface { name, set: s, .. } => set(&mut o, Table::Interface, name, s),
            OvsOp::DelInterface { port, name } => {
                unref(&mut o, Table::Port, port, name);
                o.interfaces.retain(|i| &i.name != name);
            }
        }
    }
    // Rows of deleted bridges are garbage-collected, as in OVSDB.
    let live_ports: BTreeSet<String> = o.bridges.iter().flat_map(|b| b.refs.clone()).collect();
    o.ports.retain(|p| live_ports.contains(&p.name));
    let live_ifaces: BTreeSet<String> = o.ports.iter().flat_map(|p| p.refs.clone()).collect();
    o.interfaces.retain(|i| live_ifaces.contains(&i.name));
    o.normalize();
    o
}
