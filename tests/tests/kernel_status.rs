//! `hostd status` on a real kernel (the VM's 6.1 where this one lacks
//! bonding): LACP status equal to what the switch side says, LLDP
//! neighbours equal to the lab's cabling, hostd's own LLDP announcement
//! heard by the switches, and each diagnosis triggered by a real miscabling.
//! One rack, built once (one VM boot):
//!
//! - `srv1`: bond0 over eth0/eth1 to the pair leaf1 (sw1+sw2), LAG Po1 with
//!   VLANs (PVID 10, tagged 100 and 200): healthy;
//! - `srv2`: bond0 over eth0/eth1 to Po2 of the pair, then eth2 cabled to a
//!   plain port (no LAG) and eth3 to another LAG (Po3): `lacp-no-partner`,
//!   `lacp-aggregator-split`; its intent says eth3 goes to sw2, it goes to
//!   sw1: `lldp-wrong-neighbor`;
//! - `srv3`: bond0 to swA and swB, two switches that are not a pair:
//!   `lacp-partner-mismatch`; swB runs no LLDP: `lldp-no-neighbor`;
//! - `srv4`: bond0 to a static LAG on swA: `lacp-no-partner` on the bond;
//!   its intent has the two cables swapped: `lldp-wrong-neighbor` twice.
//!
//! Then the benchmark hook: what one status read costs, and the time from a
//! cable pull to the status reporting it.

use std::{
    collections::BTreeSet,
    path::PathBuf,
    time::{Duration, Instant},
};

use hostd::{
    netlink::Rtnl,
    status::{
        lldpd::{Announce, Lldpcli},
        Options, Reader,
    },
};
use hostd_core::{
    status::{
        diagnose, procfs, ExpectedPort, Finding, FindingCode, HostStatus, IdSubtype, Intent,
        LacpState, MiiStatus, PortRole,
    },
    types::{IfName, MacAddr},
};
use lab::{
    bonding,
    kernel::{self, Feature},
    lldp::LldpListener,
    spec::{
        derived_mac, LagMode, LagSpec, NicSpec, PairSpec, PortRef, ServerSpec, SwitchSpec,
        VlanMembership,
    },
    wait::{scaled, try_wait_until},
    NetNs, Rack, RackSpec,
};
use netlink_packet_route::{
    link::{LinkAttribute, LinkFlags, LinkMessage},
    RouteNetlinkMessage,
};

fn switch(name: &str, lldp: bool, lags: Vec<LagSpec>) -> SwitchSpec {
    SwitchSpec {
        name: name.into(),
        ports: vec![],
        lags,
        lldp,
    }
}

fn lag(name: &str, members: &[(&str, &str)], vlans: VlanMembership, mode: LagMode) -> LagSpec {
    LagSpec {
        name: name.into(),
        members: members.iter().map(|(s, p)| PortRef::new(s, p)).collect(),
        vlans,
        lacp_rate: "fast".into(),
        mode,
    }
}

fn spec() -> RackSpec {
    let vlans = VlanMembership {
        access: Some(10),
        tagged: vec![100, 200],
    };
    RackSpec {
        switches: vec![
            switch(
                "sw1",
                true,
                vec![
                    lag(
                        "Po1",
                        &[("sw1", "Ethernet1"), ("sw2", "Ethernet1")],
                        vlans,
                        LagMode::Lacp,
                    ),
                    lag(
                        "Po2",
                        &[("sw1", "Ethernet2"), ("sw2", "Ethernet2")],
                        VlanMembership::default(),
                        LagMode::Lacp,
                    ),
                    lag(
                        "Po3",
                        &[("sw1", "Ethernet4")],
                        VlanMembership::default(),
                        LagMode::Lacp,
                    ),
                ],
            ),
            switch("sw2", true, vec![]),
            switch(
                "swA",
                true,
                vec![
                    lag(
                        "Po1",
                        &[("swA", "Ethernet1")],
                        VlanMembership::default(),
                        LagMode::Lacp,
                    ),
                    lag(
                        "Po2",
                        &[("swA", "Ethernet2"), ("swA", "Ethernet3")],
                        VlanMembership::default(),
                        LagMode::Static,
                    ),
                ],
            ),
            switch(
                "swB",
                false,
                vec![lag(
                    "Po1",
                    &[("swB", "Ethernet1")],
                    VlanMembership::default(),
                    LagMode::Lacp,
                )],
            ),
        ],
        pairs: vec![PairSpec {
            name: "leaf1".into(),
            members: ["sw1".into(), "sw2".into()],
            system_mac: None,
        }],
        servers: vec![
            ServerSpec::new(
                "srv1",
                vec![
                    NicSpec::cabled("eth0", "sw1", "Ethernet1"),
                    NicSpec::cabled("eth1", "sw2", "Ethernet1"),
                ],
            ),
            ServerSpec::new(
                "srv2",
                vec![
                    NicSpec::cabled("eth0", "sw1", "Ethernet2"),
                    NicSpec::cabled("eth1", "sw2", "Ethernet2"),
                    NicSpec::cabled("eth2", "sw1", "Ethernet3"),
                    NicSpec::cabled("eth3", "sw1", "Ethernet4"),
                ],
            ),
            ServerSpec::new(
                "srv3",
                vec![
                    NicSpec::cabled("eth0", "swA", "Ethernet1"),
                    NicSpec::cabled("eth1", "swB", "Ethernet1"),
                ],
            ),
            ServerSpec::new(
                "srv4",
                vec![
                    NicSpec::cabled("eth0", "swA", "Ethernet2"),
                    NicSpec::cabled("eth1", "swA", "Ethernet3"),
                ],
            ),
        ],
    }
}

/// bond0 (802.3ad, fast, miimon 100) over `nics`, with `ip`: hostd only
/// reads.
fn make_bond(ns: &NetNs, nics: &[&str]) {
    let mut b = vec!["link add bond0 type bond mode 802.3ad lacp_rate fast miimon 100".to_owned()];
    for n in nics {
        b.push(format!("link set {n} master bond0"));
    }
    b.push("link set bond0 up".into());
    for n in nics {
        b.push(format!("link set {n} up"));
    }
    ns.ip_batch(&b).expect("server bond");
}

/// The intent the rack's cabling gives for `server`.
fn intent_of(rack: &Rack, server: &str) -> Intent {
    let srv = rack
        .spec()
        .servers
        .iter()
        .find(|s| s.name == server)
        .expect("server");
    Intent {
        nics: srv
            .nics
            .iter()
            .map(|n| {
                (
                    n.name.clone(),
                    ExpectedPort::new(&n.cable.switch, &n.cable.port),
                )
            })
            .collect(),
    }
}

fn opts(socket: Option<&str>) -> Options {
    Options {
        lldp: socket.is_some(),
        lldpcli: Lldpcli {
            socket: socket.map(PathBuf::from),
            ..Lldpcli::default()
        },
        ..Options::default()
    }
}

/// Polls hostd's status in `ns` (one Reader, one netlink socket) until
/// `cond` holds; panics with the last status on timeout.
#[track_caller]
fn wait_status(
    ns: &NetNs,
    o: &Options,
    what: &str,
    timeout: Duration,
    cond: impl Fn(&HostStatus) -> bool + Sync,
) -> HostStatus {
    let (ok, last, took) = ns.enter(|| {
        let mut r = Reader::open(o.clone()).expect("status reader");
        let mut last = HostStatus::default();
        let res = try_wait_until(timeout, || {
            last = r.read().expect("status read");
            last.sort();
            cond(&last)
        });
        (res.is_ok(), last, res.unwrap_or_else(|e| e))
    });
    if !ok {
        panic!(
            "{}: timed out after {took:?} waiting for: {what}; last status:\n{}",
            ns.role(),
            hostd_core::status::render::text(&last, &diagnose(&last, None))
        );
    }
    println!("{}: {what}: after {took:.2?}", ns.role());
    last
}

/// Every member of `bond` in the active aggregator, negotiated both ways.
fn negotiated(s: &HostStatus, bond: &str, members: &[&str]) -> bool {
    let Some(b) = s.bond(bond) else { return false };
    let Some(agg) = b.active_aggregator_id() else {
        return false;
    };
    members.iter().all(|name| {
        b.member(name).is_some_and(|m| {
            m.aggregator_id == Some(agg)
                && m.actor
                    .as_ref()
                    .and_then(|a| a.state)
                    .is_some_and(LacpState::negotiated)
                && m.partner
                    .as_ref()
                    .and_then(|p| p.state)
                    .is_some_and(|p| p.has(LacpState::NEGOTIATED))
                && m.partner_system().is_some()
        })
    })
}

fn codes(f: &[Finding]) -> BTreeSet<(FindingCode, String)> {
    f.iter().map(|f| (f.code, f.object.clone())).collect()
}

fn want(list: &[(FindingCode, &str)]) -> BTreeSet<(FindingCode, String)> {
    list.iter().map(|(c, o)| (*c, (*o).to_owned())).collect()
}

fn mac(s: &str) -> MacAddr {
    s.parse().expect("MAC")
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[test]
fn status_matches_the_lab_and_diagnoses_its_miscabling() {
    kernel::require(&[
        Feature::Bonding,
        Feature::Bridge,
        Feature::BridgeVlanFiltering,
        Feature::Veth,
    ]);
    let started = Instant::now();
    let rack = Rack::build(spec()).expect("build rack");
    print!("{}", rack.describe());
    let (srv1, srv2, srv3, srv4) = (
        rack.server("srv1"),
        rack.server("srv2"),
        rack.server("srv3"),
        rack.server("srv4"),
    );
    make_bond(srv1, &["eth0", "eth1"]);
    make_bond(srv2, &["eth0", "eth1"]);
    make_bond(srv3, &["eth0", "eth1"]);
    make_bond(srv4, &["eth0", "eth1"]);
    let agents: Vec<LldpListener<'_>> = [
        (srv1, &["eth0", "eth1"][..]),
        (srv2, &["eth0", "eth1", "eth2", "eth3"][..]),
        (srv3, &["eth0", "eth1"][..]),
        (srv4, &["eth0", "eth1"][..]),
    ]
    .iter()
    .map(|(ns, nics)| {
        let a = LldpListener::start_agent(ns, nics).expect("lldpd on a server");
        ns.run(&[
            "lldpcli",
            "-u",
            a.socket(),
            "configure",
            "lldp",
            "tx-interval",
            "1",
        ]);
        a
    })
    .collect();
    let o1 = opts(Some(agents[0].socket()));
    let leaf = rack.switch("sw1");
    let switch_side = opts(None);

    // ---- srv1: LACP status equal to what the switch side says.
    // A switch's lldpd sends its first LLDPDUs before `configure system
    // hostname` and its bridge's VLANs take effect: wait for the whole
    // expected announcement, not for any neighbour.
    let i1 = intent_of(&rack, "srv1");
    let s1 = wait_status(
        srv1,
        &o1,
        "bond0 negotiated and both NICs hear their intended switch port",
        scaled(Duration::from_secs(60)),
        |s| {
            negotiated(s, "bond0", &["eth0", "eth1"])
                && ["eth0", "eth1"]
                    .iter()
                    .all(|n| s.nic(n).is_some_and(|n| !n.lldp.is_empty()))
                && diagnose(s, Some(&i1)).is_empty()
                && srv1_lldp_problems(s).is_empty()
        },
    );
    let sw = wait_status(
        leaf,
        &switch_side,
        "Po1 negotiated on both switches of the pair",
        scaled(Duration::from_secs(60)),
        |s| negotiated(s, "Po1", &["sw1-Ethernet1", "sw2-Ethernet1"]),
    );
    print!(
        "srv1:\n{}",
        hostd_core::status::render::text(&s1, &diagnose(&s1, None))
    );
    let b = s1.bond("bond0").expect("bond0");
    let po1 = sw.bond("Po1").expect("Po1");
    let pair_mac = mac(&rack.switch_system_mac("sw1"));
    let l = b.lacp.as_ref().expect("802.3ad details");
    let pl = po1.lacp.as_ref().expect("802.3ad details on the switch");
    let agg = l.active_aggregator.as_ref().expect("active aggregator");
    let pagg = pl.active_aggregator.as_ref().expect("switch aggregator");
    assert_eq!(agg.ports, 2);
    assert_eq!(pagg.ports, 2);
    assert_eq!(
        agg.partner_mac, pair_mac,
        "partner MAC = the pair's system MAC"
    );
    assert_eq!(pl.system_mac, Some(pair_mac));
    assert_eq!(
        Some(pagg.partner_mac),
        l.system_mac,
        "the switch's partner is us"
    );
    assert_eq!(agg.partner_key, pagg.actor_key);
    assert_eq!(agg.actor_key, pagg.partner_key);
    assert_eq!(agg.partner_priority, pl.system_priority);
    assert_eq!(pagg.partner_priority, l.system_priority);
    for (nic, port) in [("eth0", "sw1-Ethernet1"), ("eth1", "sw2-Ethernet1")] {
        let m = b.member(nic).expect("member");
        let pm = po1.member(port).expect("switch member");
        assert_eq!(m.aggregator_id, Some(agg.id), "{nic}: aggregator ids");
        assert_eq!(pm.aggregator_id, Some(pagg.id), "{port}: aggregator ids");
        assert_eq!(m.mii_status, Some(MiiStatus::Up));
        assert_eq!(m.role, Some(PortRole::Active));
        assert_eq!(m.link_failure_count, Some(0));
        assert_eq!(m.permanent_mac, Some(mac(&derived_mac(&["srv1", nic]))));
        let (actor, partner) = (
            m.actor.as_ref().expect("actor"),
            m.partner.as_ref().expect("partner"),
        );
        // activity, short timeout, aggregation, sync, collecting,
        // distributing; neither defaulted nor expired.
        assert_eq!(actor.state, Some(LacpState(0x3f)), "{nic} actor");
        assert_eq!(partner.state, Some(LacpState(0x3f)), "{nic} partner");
        // Our view of the partner is the switch's view of itself, and back.
        let sw_actor = pm.actor.as_ref().expect("switch actor");
        let sw_partner = pm.partner.as_ref().expect("switch partner");
        for (ours, theirs, what) in [
            (partner, sw_actor, "partner vs switch actor"),
            (actor, sw_partner, "actor vs switch partner"),
        ] {
            assert_eq!(ours.system_mac, theirs.system_mac, "{nic}: {what}: system");
            assert_eq!(
                ours.system_priority, theirs.system_priority,
                "{nic}: {what}: priority"
            );
            assert_eq!(ours.key, theirs.key, "{nic}: {what}: key");
            assert_eq!(ours.port_number, theirs.port_number, "{nic}: {what}: port");
            assert_eq!(
                ours.port_priority, theirs.port_priority,
                "{nic}: {what}: port priority"
            );
            assert_eq!(ours.state, theirs.state, "{nic}: {what}: state");
        }
        assert_ne!(m.actor_churn, Some(hostd_core::status::ChurnState::Churned));
    }

    // The same bond through the lab's own /proc reader, and hostd's netlink
    // values against the kernel's procfs text (a differential check of the
    // netlink decoder).
    let lab_view = bonding::BondStatus::read(srv1, "bond0").expect("lab bond reader");
    assert_eq!(lab_view.active_aggregator, Some(u32::from(agg.id)));
    assert_eq!(lab_view.partner_mac, Some(agg.partner_mac.to_string()));
    for p in &lab_view.ports {
        let m = b.member(&p.name).expect("member");
        assert_eq!(p.aggregator_id, m.aggregator_id.map(u32::from));
        assert_eq!(p.partner_mac, m.partner_system().map(|m| m.to_string()));
    }
    let text = srv1.run(&["cat", "/proc/net/bonding/bond0"]);
    let from_proc = procfs::parse("bond0", &text).expect("procfs").bond;
    assert_eq!(
        from_proc
            .lacp
            .as_ref()
            .and_then(|l| l.active_aggregator.clone())
            .map(|a| (a.id, a.ports, a.actor_key, a.partner_key, a.partner_mac)),
        Some((
            agg.id,
            agg.ports,
            agg.actor_key,
            agg.partner_key,
            agg.partner_mac
        ))
    );
    for pm in &from_proc.members {
        let m = b.member(&pm.name).expect("member");
        assert_eq!(pm.aggregator_id, m.aggregator_id, "{}", pm.name);
        assert_eq!(pm.mii_status, m.mii_status, "{}", pm.name);
        assert_eq!(pm.link_failure_count, m.link_failure_count, "{}", pm.name);
        assert_eq!(pm.permanent_mac, m.permanent_mac, "{}", pm.name);
        assert_eq!(
            pm.actor.as_ref().and_then(|a| a.state),
            m.actor.as_ref().and_then(|a| a.state),
            "{}",
            pm.name
        );
        assert_eq!(
            pm.partner.as_ref().and_then(|a| a.state),
            m.partner.as_ref().and_then(|a| a.state),
            "{}",
            pm.name
        );
    }

    // LLDP: each NIC hears its own switch and port, with the LAG's VLANs.
    assert_eq!(srv1_lldp_problems(&s1), Vec::<String>::new());
    assert_eq!(diagnose(&s1, Some(&i1)), vec![], "srv1 is healthy");

    // hostd announces srv1 through its lldpd; the switches hear it.
    let announce = Announce::managed(
        "srv1",
        &[
            (IfName::new("eth0").expect("name"), Some("bond0".into())),
            (IfName::new("eth1").expect("name"), Some("bond0".into())),
        ],
    );
    srv1.enter(|| Lldpcli::with_socket(agents[0].socket()).announce(&announce))
        .expect("announce");
    for (sw, port, nic) in [
        ("sw1", "sw1-Ethernet1", "eth0"),
        ("sw2", "sw2-Ethernet1", "eth1"),
    ] {
        let cli = Lldpcli::with_socket(rack.switch_lldp_socket(sw));
        let mut last = None;
        let r = try_wait_until(scaled(Duration::from_secs(30)), || {
            let n = leaf.enter(|| cli.neighbors()).expect("switch lldpcli");
            let heard = n.on(port).into_iter().next().cloned();
            let ok = heard.as_ref().is_some_and(|h| {
                h.system_name.as_deref() == Some("srv1")
                    && h.port_id.subtype == IdSubtype::Ifname
                    && h.port_id.value == nic
                    && h.port_description.as_deref() == Some(format!("srv1 {nic} (bond0)").as_str())
            });
            last = heard;
            ok
        });
        assert!(
            r.is_ok(),
            "{sw} did not hear srv1's announcement on {port}: last {last:?}"
        );
    }

    // ---- srv2: one member on a plain port, one in another LAG of the pair.
    let o2 = opts(Some(agents[1].socket()));
    wait_status(
        srv2,
        &o2,
        "bond0 negotiated over eth0 and eth1",
        scaled(Duration::from_secs(60)),
        |s| negotiated(s, "bond0", &["eth0", "eth1"]),
    );
    srv2.ip_batch(&[
        "link set eth2 master bond0".into(),
        "link set eth3 master bond0".into(),
        "link set eth2 up".into(),
        "link set eth3 up".into(),
    ])
    .expect("add eth2 and eth3");
    let mut i2 = intent_of(&rack, "srv2");
    i2.nics
        .insert("eth3".into(), ExpectedPort::new("sw2", "Ethernet4"));
    let want2 = want(&[
        (FindingCode::LacpNoPartner, "bond0/eth2"),
        (FindingCode::LacpAggregatorSplit, "bond0/eth3"),
        (FindingCode::LldpWrongNeighbor, "eth3"),
    ]);
    let s2 = wait_status(
        srv2,
        &o2,
        "the diagnosis of eth2 and eth3",
        scaled(Duration::from_secs(60)),
        |s| codes(&diagnose(s, Some(&i2))) == want2,
    );
    let f2 = diagnose(&s2, Some(&i2));
    print!("srv2:\n{}", hostd_core::status::render::text(&s2, &f2));
    let msg = |f: &[Finding], code| {
        f.iter()
            .find(|x| x.code == code)
            .map(|x| x.message.clone())
            .unwrap_or_default()
    };
    assert!(
        msg(&f2, FindingCode::LacpNoPartner).contains("no LACPDU received"),
        "{f2:#?}"
    );
    assert!(
        msg(&f2, FindingCode::LacpAggregatorSplit).contains("another LAG"),
        "{f2:#?}"
    );
    assert!(
        msg(&f2, FindingCode::LldpWrongNeighbor).contains("cabled to sw1 port Ethernet4"),
        "{f2:#?}"
    );
    let b2 = s2.bond("bond0").expect("bond0");
    let eth3 = b2.member("eth3").expect("eth3");
    assert_eq!(
        eth3.partner_system(),
        Some(pair_mac),
        "eth3's partner is the same pair"
    );
    assert_ne!(eth3.aggregator_id, b2.active_aggregator_id());

    // The same through the CLI, with the intent as a file.
    let hostd_bin = std::env::var_os("HOSTD_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let exe = std::env::current_exe().expect("current_exe");
            exe.parent()
                .and_then(|d| d.parent())
                .expect("target dir")
                .join("hostd")
        });
    assert!(
        hostd_bin.exists(),
        "{} missing: build hostd (cargo xtask test does)",
        hostd_bin.display()
    );
    let intent_file =
        std::env::temp_dir().join(format!("kernel-status-{}.yaml", std::process::id()));
    std::fs::write(&intent_file, serde_norway::to_string(&i2).expect("yaml")).expect("intent file");
    let bin = hostd_bin.to_string_lossy().into_owned();
    let intent_path = intent_file.to_string_lossy().into_owned();
    let json = srv2.run(&[
        &bin,
        "-o",
        "json",
        "status",
        "--intent",
        &intent_path,
        "--lldpd-socket",
        agents[1].socket(),
        "--timing",
    ]);
    let _ = std::fs::remove_file(&intent_file);
    let report: hostd_core::status::render::Report =
        serde_json::from_str(&json).expect("hostd status json");
    assert_eq!(codes(&report.findings), want2, "{json}");

    // ---- srv3: members on two switches that are not a pair.
    let o3 = opts(Some(agents[2].socket()));
    let i3 = intent_of(&rack, "srv3");
    let want3 = want(&[
        (FindingCode::LacpPartnerMismatch, "bond0"),
        (FindingCode::LldpNoNeighbor, "eth1"),
    ]);
    let s3 = wait_status(
        srv3,
        &o3,
        "two partners seen",
        scaled(Duration::from_secs(60)),
        |s| {
            s.bond("bond0")
                .is_some_and(|b| b.members.iter().all(|m| m.partner_system().is_some()))
                && s.nic("eth0").is_some_and(|n| !n.lldp.is_empty())
                && codes(&diagnose(s, Some(&i3))) == want3
        },
    );
    let f3 = diagnose(&s3, Some(&i3));
    print!("srv3:\n{}", hostd_core::status::render::text(&s3, &f3));
    let m3 = msg(&f3, FindingCode::LacpPartnerMismatch);
    for sw in ["swA", "swB"] {
        assert!(
            m3.contains(&rack.switch_system_mac(sw)),
            "{sw}'s system MAC in {m3}"
        );
    }

    // ---- srv4: a static LAG on the switch; the intent has the cables swapped.
    let o4 = opts(Some(agents[3].socket()));
    let mut i4 = intent_of(&rack, "srv4");
    i4.nics
        .insert("eth0".into(), ExpectedPort::new("swA", "Ethernet3"));
    i4.nics
        .insert("eth1".into(), ExpectedPort::new("swA", "Ethernet2"));
    let want4 = want(&[
        (FindingCode::LacpNoPartner, "bond0"),
        (FindingCode::LldpWrongNeighbor, "eth0"),
        (FindingCode::LldpWrongNeighbor, "eth1"),
    ]);
    let s4 = wait_status(
        srv4,
        &o4,
        "the static LAG diagnosed",
        scaled(Duration::from_secs(60)),
        |s| codes(&diagnose(s, Some(&i4))) == want4,
    );
    let f4 = diagnose(&s4, Some(&i4));
    print!("srv4:\n{}", hostd_core::status::render::text(&s4, &f4));
    assert!(
        msg(&f4, FindingCode::LacpNoPartner).contains("not configured for LACP"),
        "{f4:#?}"
    );
    for m in &s4.bond("bond0").expect("bond0").members {
        let st = m.actor.as_ref().and_then(|a| a.state).expect("actor state");
        assert!(st.has(LacpState::DEFAULTED), "{}: {st}", m.name);
        assert_eq!(m.partner_system(), None);
    }

    // ---- Benchmark hook: one read, and a cable pull seen by the status.
    let mut port = switch_port_socket(&rack, "srv1", "eth1");
    let (reads, full, pull, restore) = srv1.enter(|| {
        let mut r = Reader::open(o1.clone()).expect("reader");
        let mut reads = Vec::new();
        for _ in 0..20 {
            let t = Instant::now();
            r.read_bonds().expect("read");
            reads.push(t.elapsed());
        }
        let mut full = Vec::new();
        for _ in 0..5 {
            let t = Instant::now();
            r.read().expect("read");
            full.push(t.elapsed());
        }
        let pull = cable_pull_to_status(&mut port, &mut r, "eth1", scaled(Duration::from_secs(20)));
        let restore =
            restore_to_negotiated(&mut port, &mut r, "eth1", scaled(Duration::from_secs(60)));
        (reads, full, pull, restore)
    });
    let f = diagnose(&pull.status, None);
    assert!(
        codes(&f).contains(&(FindingCode::MemberDown, "bond0/eth1".to_owned())),
        "{f:#?}"
    );
    println!(
        "timing (kernel {}): status read without LLDP median {:.2?} (min {:.2?}, max {:.2?}, n=20); with lldpcli median {:.2?} (n=5)",
        kernel::release(),
        median(reads.clone()),
        reads.iter().min().copied().unwrap_or_default(),
        reads.iter().max().copied().unwrap_or_default(),
        median(full),
    );
    println!(
        "timing: cable pull (switch port down over netlink, acked in {:.2?}) -> status shows eth1 down: {:.2?}, {} reads; cable back -> eth1 negotiated again: {:.2?}",
        pull.command, pull.seen, pull.reads, restore
    );
    println!("whole test: {:.1?}", started.elapsed());
}

/// How srv1's NICs differ from what the lab's cabling and switch config
/// make them hear (empty: as cabled). Each NIC hears its own switch and
/// port (id subtype local, the lab's port name, also the description), the
/// switch's description, TTL 4 s (tx-interval 1 s x tx-hold 4), the LAG's
/// VLANs (PVID 10, tagged 100 and 200) and the aggregation TLV.
fn srv1_lldp_problems(s: &HostStatus) -> Vec<String> {
    let mut p = Vec::new();
    for (nic, sw) in [("eth0", "sw1"), ("eth1", "sw2")] {
        let Some(n) = s.nic(nic) else {
            p.push(format!("{nic}: missing"));
            continue;
        };
        if n.bond.as_deref() != Some("bond0") || n.mtu != Some(1500) {
            p.push(format!("{nic}: bond {:?} mtu {:?}", n.bond, n.mtu));
        }
        let [x] = n.lldp.as_slice() else {
            p.push(format!("{nic}: {} neighbours", n.lldp.len()));
            continue;
        };
        let descr = format!("lab switch {sw}");
        let ids: BTreeSet<u16> = x.vlans.iter().map(|v| v.id).collect();
        let checks = [
            (x.system_name.as_deref() == Some(sw), "system name"),
            (
                x.system_description.as_deref() == Some(descr.as_str()),
                "system description",
            ),
            (
                x.port_id.subtype == IdSubtype::Local && x.port_id.value == "Ethernet1",
                "port id",
            ),
            (
                x.port_description.as_deref() == Some("Ethernet1"),
                "port description",
            ),
            (x.chassis_id.subtype == IdSubtype::Mac, "chassis id subtype"),
            (x.ttl == Some(4), "ttl"),
            (x.pvid() == Some(10), "pvid"),
            (ids == BTreeSet::from([10, 100, 200]), "vlans"),
            (x.aggregation_port_id.is_some(), "aggregation"),
            (
                x.max_frame_size.is_none(),
                "max frame size (lldpd 1.0.16 sends none)",
            ),
        ];
        for (ok, what) in checks {
            if !ok {
                p.push(format!("{nic}: {what}: {x:?}"));
            }
        }
    }
    p
}

/// What [`cable_pull_to_status`] measured.
struct PullTiming {
    /// The netlink request that set the switch port down (sent, acked).
    command: Duration,
    /// From just before that request to the first status read that shows
    /// the member down.
    seen: Duration,
    /// Status reads it took.
    reads: u32,
    /// That status.
    status: HostStatus,
}

/// A netlink socket in a switch's namespace, opened there and used from
/// any thread (a socket keeps the namespace it was created in), and the
/// index of the switch port `server`'s `nic` is cabled to.
fn switch_port_socket(rack: &Rack, server: &str, nic: &str) -> (Rtnl, u32) {
    let (port, ifname) = rack.cable_of(server, nic);
    rack.switch(&port.switch).enter(|| {
        let mut nl = Rtnl::open().expect("netlink in the switch");
        let links = nl
            .dump(RouteNetlinkMessage::GetLink(LinkMessage::default()))
            .expect("link dump");
        let index = links
            .iter()
            .find_map(|m| match m {
                RouteNetlinkMessage::NewLink(l)
                    if l.attributes
                        .contains(&LinkAttribute::IfName(ifname.clone())) =>
                {
                    Some(l.header.index)
                }
                _ => None,
            })
            .unwrap_or_else(|| panic!("no {ifname} on {}", port.switch));
        (nl, index)
    })
}

/// `ip link set dev INDEX up|down`, as one netlink request.
fn set_link(nl: &mut Rtnl, index: u32, up: bool) {
    let mut m = LinkMessage::default();
    m.header.index = index;
    m.header.change_mask = LinkFlags::Up;
    if up {
        m.header.flags = LinkFlags::Up;
    }
    let acks = nl
        .batch(&[(RouteNetlinkMessage::SetLink(m), 0)])
        .expect("netlink");
    for a in acks {
        a.expect("set link");
    }
}

/// The benchmark hook: pulls `nic`'s cable (the switch port goes down, by
/// one netlink request from a socket opened beforehand, so no process
/// start is timed) and polls `reader` with no pause until the member's MII
/// status is down. Bounded by the bond's miimon (100 ms in the lab) plus
/// one read; the daemon's D-Bus signal will add its own latency.
fn cable_pull_to_status(
    switch_port: &mut (Rtnl, u32),
    reader: &mut Reader,
    nic: &str,
    timeout: Duration,
) -> PullTiming {
    let t = Instant::now();
    set_link(&mut switch_port.0, switch_port.1, false);
    let command = t.elapsed();
    let mut reads = 0;
    loop {
        let s = reader.read_bonds().expect("status read");
        reads += 1;
        let down = s
            .bonds
            .iter()
            .flat_map(|b| &b.members)
            .any(|m| m.name == nic && !m.is_up());
        if down {
            return PullTiming {
                command,
                seen: t.elapsed(),
                reads,
                status: s,
            };
        }
        assert!(
            t.elapsed() < timeout,
            "{nic} not seen down within {timeout:?}"
        );
    }
}

/// Plugs the cable back and polls until the member is negotiated again;
/// returns how long that took.
fn restore_to_negotiated(
    switch_port: &mut (Rtnl, u32),
    reader: &mut Reader,
    nic: &str,
    timeout: Duration,
) -> Duration {
    let t = Instant::now();
    set_link(&mut switch_port.0, switch_port.1, true);
    let r = try_wait_until(timeout, || {
        let s = reader.read_bonds().expect("status read");
        negotiated(&s, "bond0", &["eth0", nic])
    });
    assert!(r.is_ok(), "{nic} not negotiated again within {timeout:?}");
    t.elapsed()
}
