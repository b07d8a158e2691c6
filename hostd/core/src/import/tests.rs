//! Importer tests: the seeds' layouts in each format, and odd inputs.

use super::*;
use crate::schema::{IfState, PortVlanMode};

fn eni(files: &[(&str, &str)]) -> Result<Import, ImportErrors> {
    eni::import(
        "/etc/network/interfaces",
        &MemFiles::new(files.iter().copied()),
    )
}

fn iface<'a>(s: &'a NetworkState, n: &str) -> &'a Interface {
    s.interface(n).unwrap_or_else(|| panic!("no {n} in {s:#?}"))
}

fn err_text(r: Result<Import, ImportErrors>) -> String {
    match r {
        Ok(i) => panic!("imported: {:#?}", i.state),
        Err(e) => e.to_string(),
    }
}

/// The document survives YAML and `NetworkState::parse` (what `hostd plan`
/// reads) unchanged, and validates.
fn round_trips(s: &NetworkState) {
    let y = serde_norway::to_string(s).unwrap();
    let back = NetworkState::parse(&y).unwrap();
    assert_eq!(&back, s, "{y}");
    crate::validate::validate(&back).unwrap();
}

const CLOUDSTACK_ENI: &str = "\
# CloudStack KVM host
auto lo
iface lo inet loopback

auto eth0
iface eth0 inet manual
    bond-master bond0

auto eth1
iface eth1 inet manual
    bond-master bond0

auto bond0
iface bond0 inet manual
    bond-slaves none
    bond-mode active-backup
    bond-miimon 100
    bond-primary eth0

auto bond0.100
iface bond0.100 inet manual
    vlan-raw-device bond0

auto cloudbr0
iface cloudbr0 inet static
    address 192.0.2.10
    netmask 255.255.255.0
    gateway 192.0.2.1
    dns-nameservers 192.0.2.53
    dns-search cloud.example
    bridge_ports bond0
    bridge_fd 5
    bridge_stp off
    bridge_maxwait 1

auto cloudbr1
iface cloudbr1 inet manual
    bridge_ports bond0.200
    bridge_stp off
    bridge_fd 0

auto cloudbr100
iface cloudbr100 inet static
    address 198.51.100.10/24
    bridge-ports bond0.100
    bridge-stp off
";

#[test]
fn eni_cloudstack_bond_vlan_bridges() {
    let i = eni(&[("/etc/network/interfaces", CLOUDSTACK_ENI)]).unwrap();
    let s = &i.state;
    round_trips(s);
    let bond = iface(s, "bond0").link_aggregation.as_ref().unwrap();
    assert_eq!(bond.mode, crate::bond::BondMode::ActiveBackup);
    assert_eq!(
        bond.port.iter().map(|p| p.as_str()).collect::<Vec<_>>(),
        ["eth0", "eth1"]
    );
    assert_eq!(bond.options.miimon, Some(100));
    assert_eq!(
        bond.options.primary.as_ref().map(|p| p.as_str()),
        Some("eth0")
    );
    let v = iface(s, "bond0.100").vlan.as_ref().unwrap();
    assert_eq!((v.base_iface.as_str(), v.id.get()), ("bond0", 100));
    // bond0.200 has no stanza: a VLAN from its name, as ifupdown2 does.
    let v = iface(s, "bond0.200").vlan.as_ref().unwrap();
    assert_eq!((v.base_iface.as_str(), v.id.get()), ("bond0", 200));
    let br = iface(s, "cloudbr0");
    assert_eq!(br.kind, InterfaceType::LinuxBridge);
    let stp = br.bridge.as_ref().unwrap().options.stp.as_ref().unwrap();
    assert!(!stp.enabled);
    assert_eq!(stp.forward_delay, Some(5));
    assert_eq!(
        br.ipv4.as_ref().unwrap().address,
        [IpAddress {
            ip: "192.0.2.10".parse().unwrap(),
            prefix_length: 24
        }]
    );
    assert_eq!(s.routes.config.len(), 1);
    assert_eq!(
        s.routes.config[0]
            .next_hop_interface
            .as_ref()
            .unwrap()
            .as_str(),
        "cloudbr0"
    );
    let dns = &s.dns_resolver.as_ref().unwrap().config;
    assert_eq!(dns.search, ["cloud.example"]);
    assert!(s.interface("lo").is_none());
    // bridge_maxwait is boot-time waiting: a note, not dropped silently.
    assert!(
        i.notes
            .iter()
            .any(|n| n.contains("bridge-maxwait") && n.contains("line 34")),
        "{:?}",
        i.notes
    );
    assert_eq!(s.interfaces.len(), 8);
}

const ORACLEVM_ENI: &str = "\
source /etc/network/interfaces.d/*

auto bond0
iface bond0
    bond-slaves eth0 eth1
    bond-mode 802.3ad
    bond-miimon 100
    bond-lacp-rate 1
    bond-xmit-hash-policy layer3+4
    mtu 9000
";

#[test]
fn eni_oraclevm_trunk_bonds_with_sources() {
    let bridges = "\
auto vlan50
iface vlan50 inet manual
    bridge-ports bond0.50

auto vlan100
iface vlan100 inet static
    address 10.100.0.10/24
    gateway 10.100.0.1
    bridge-ports bond0.100
";
    let trunk = "\
auto bond1
iface bond1
    bond-slaves eth2 eth3
    bond-mode 4
    bond-min-links 1
auto bond1.300
iface bond1.300 inet static
    address 10.30.0.2/24
";
    let i = eni(&[
        ("/etc/network/interfaces", ORACLEVM_ENI),
        ("/etc/network/interfaces.d/bridges", bridges),
        ("/etc/network/interfaces.d/trunk", trunk),
        (
            "/etc/network/interfaces.d/.hidden",
            "garbage that must not be read",
        ),
    ])
    .unwrap();
    let s = &i.state;
    round_trips(s);
    let bond = iface(s, "bond0");
    assert_eq!(bond.mtu.map(|m| m.get()), Some(9000));
    let la = bond.link_aggregation.as_ref().unwrap();
    assert_eq!(la.mode, crate::bond::BondMode::Lacp);
    assert_eq!(la.options.lacp_rate, Some(crate::bond::LacpRate::Fast));
    assert_eq!(
        la.options.xmit_hash_policy,
        Some(crate::bond::XmitHashPolicy::Layer34)
    );
    assert_eq!(
        iface(s, "bond1")
            .link_aggregation
            .as_ref()
            .unwrap()
            .options
            .min_links,
        Some(1)
    );
    for (n, base, id) in [
        ("bond0.50", "bond0", 50),
        ("bond0.100", "bond0", 100),
        ("bond1.300", "bond1", 300),
    ] {
        let v = iface(s, n).vlan.as_ref().unwrap();
        assert_eq!((v.base_iface.as_str(), v.id.get()), (base, id));
    }
    assert_eq!(iface(s, "eth3").kind, InterfaceType::Ethernet);
    assert!(iface(s, "vlan100").ipv4.is_some());
}

#[test]
fn eni_vlan_aware_bridge_and_source_directory() {
    let main = "source-directory interfaces.d\n";
    let d = "\
auto br0
iface br0
    bridge-vlan-aware yes
    bridge-ports bond0 eth2
    bridge-vids 100 200-299
    bridge-pvid 10
auto bond0
iface bond0
    bond-slaves eth0 eth1
    bond-mode 802.3ad
iface eth2
    bridge-access 30
";
    let i = eni(&[
        ("/etc/network/interfaces", main),
        ("/etc/network/interfaces.d/br0", d),
        (
            "/etc/network/interfaces.d/skip.cfg",
            "this name is not run-parts style\n",
        ),
    ])
    .unwrap();
    let s = &i.state;
    round_trips(s);
    let br = iface(s, "br0").bridge.as_ref().unwrap();
    assert_eq!(br.options.vlan_filtering, Some(true));
    let bond = br.port.iter().find(|p| p.name.as_str() == "bond0").unwrap();
    let v = bond.vlan.as_ref().unwrap();
    assert_eq!(v.mode, PortVlanMode::Trunk);
    assert_eq!(v.tag.map(|t| t.get()), Some(10));
    assert_eq!(v.trunk_tags.len(), 2);
    let eth2 = br.port.iter().find(|p| p.name.as_str() == "eth2").unwrap();
    assert_eq!(eth2.vlan.as_ref().unwrap().mode, PortVlanMode::Access);
}

#[test]
fn eni_refuses_what_it_cannot_express_naming_file_line_and_value() {
    let t = err_text(eni(&[(
        "/etc/network/interfaces",
        "auto eth0\niface eth0 inet dhcp\nauto eth1\niface eth1 inet static\n  address 10.0.0.2/24\n  post-up ip route add 10.9.0.0/16 via 10.0.0.1\n  hwaddress ether 02:00:00:00:00:01\n",
    )]));
    assert!(
        t.contains("/etc/network/interfaces:line 2: iface \"dhcp\": DHCP"),
        "{t}"
    );
    assert!(
        t.contains("line 6: post-up \"ip route add 10.9.0.0/16 via 10.0.0.1\": commands"),
        "{t}"
    );
    assert!(t.contains("line 7: hwaddress"), "{t}");
    let t = err_text(eni(&[(
        "/etc/network/interfaces",
        "auto e0\niface e0 inet static\n address 10.0.0.2\n",
    )]));
    assert!(t.contains("without a prefix length or netmask"), "{t}");
    let t = err_text(eni(&[(
        "/etc/network/interfaces",
        "auto bond0\niface bond0\n bond-slaves eth0\n bond-frobnicate 3\n",
    )]));
    assert!(
        t.contains("line 4: bond-frobnicate \"3\": hostd has no bond option frobnicate"),
        "{t}"
    );
    let t = err_text(eni(&[(
        "/etc/network/interfaces",
        "auto br0\niface br0\n bridge-ports eth0\n bridge-vids 10\niface eth0\n bridge-access 20\n",
    )]));
    assert!(
        t.contains("line 4: bridge-vids \"10\": port VLANs on a bridge without"),
        "{t}"
    );
    assert!(
        t.contains("line 6: bridge-access \"20\": on a ethernet interface"),
        "{t}"
    );
    let t = err_text(eni(&[(
        "/etc/network/interfaces",
        "source /etc/network/missing\n",
    )]));
    assert!(
        t.contains("/etc/network/missing") && t.contains("cannot be read"),
        "{t}"
    );
    // A mode dependency the kernel refuses is caught by hostd's validation.
    let t = err_text(eni(&[("/etc/network/interfaces", "auto bond0\niface bond0\n bond-slaves eth0\n bond-mode active-backup\n bond-lacp-rate fast\n")]));
    assert!(t.contains("validation"), "{t}");
}

#[test]
fn eni_odd_inputs() {
    // Continuation lines, comments, tabs, multiple stanzas merged, a stanza
    // not brought up at boot (a note), and allow-hotplug.
    let i = eni(&[(
        "/etc/network/interfaces",
        "# header\n\tallow-hotplug eth0\niface eth0 inet static\n\taddress 10.0.0.2/24 \\\n  10.0.0.3/24\niface eth0 inet6 static\n  address 2001:db8::2/64\n  gateway 2001:db8::1\niface eth9 inet manual\n",
    )])
    .unwrap();
    let e = iface(&i.state, "eth0");
    assert_eq!(e.ipv4.as_ref().unwrap().address.len(), 2);
    assert_eq!(e.ipv6.as_ref().unwrap().address.len(), 1);
    assert!(i.state.interface("eth9").is_none());
    assert!(
        i.notes
            .iter()
            .any(|n| n.contains("eth9") && n.contains("not brought up")),
        "{:?}",
        i.notes
    );
    assert_eq!(i.state.routes.config[0].destination.to_string(), "::/0");
    round_trips(&i.state);
    // Nothing but loopback: an error, not an empty document.
    let t = err_text(eni(&[(
        "/etc/network/interfaces",
        "auto lo\niface lo inet loopback\n",
    )]));
    assert!(t.contains("no interface"), "{t}");
    // A source loop ends.
    let t = err_text(eni(&[(
        "/etc/network/interfaces",
        "source /etc/network/interfaces\n",
    )]));
    assert!(t.contains("nested"), "{t}");
}

fn ifcfg(files: &[(&str, &str)]) -> Result<Import, ImportErrors> {
    let mut all: Vec<(&str, &str)> = files.to_vec();
    all.push(("/etc/sysconfig/network-scripts/ifup-eth", "#!/bin/bash\n"));
    ifcfg::import("/etc/sysconfig/network-scripts", &MemFiles::new(all))
}

#[test]
fn ifcfg_metalsoft_lacp_bond_with_vlan_subinterfaces() {
    let d = "/etc/sysconfig/network-scripts";
    let files = [
        (format!("{d}/ifcfg-bond0"), "DEVICE=bond0\nTYPE=Bond\nBONDING_MASTER=yes\nBONDING_OPTS=\"mode=802.3ad miimon=100 lacp_rate=fast xmit_hash_policy=layer3+4\"\nBOOTPROTO=none\nONBOOT=yes\nMTU=9000\nNM_CONTROLLED=no\n"),
        (format!("{d}/ifcfg-ens1f0"), "DEVICE=ens1f0\nTYPE=Ethernet\nHWADDR=52:54:00:aa:bb:01\nMASTER=bond0\nSLAVE=yes\nONBOOT=yes\nBOOTPROTO=none\n"),
        (format!("{d}/ifcfg-ens1f1"), "DEVICE='ens1f1'\nMASTER=bond0\nSLAVE=yes\nONBOOT=yes\n"),
        (format!("{d}/ifcfg-bond0.100"), "DEVICE=bond0.100\nVLAN=yes\nONBOOT=yes\nBOOTPROTO=none\nIPADDR=10.1.0.10\nPREFIX=24\nGATEWAY=10.1.0.1\nDNS1=10.1.0.53\nDNS2=10.1.0.54\nDOMAIN=\"metal.example\"\n"),
        (format!("{d}/ifcfg-vlan200"), "DEVICE=vlan200\nTYPE=Vlan\nPHYSDEV=bond0\nVLAN_ID=200\nIPADDR0=10.2.0.10\nNETMASK0=255.255.0.0\nIPADDR1=10.2.1.10\nPREFIX1=16\nIPV6INIT=yes\nIPV6ADDR=2001:db8:200::10/64\n"),
        (format!("{d}/route-bond0.100"), "10.50.0.0/16 via 10.1.0.254 metric 10\n"),
        (format!("{d}/ifcfg-bond0.bak"), "garbage\n"),
        (format!("{d}/ifcfg-lo"), "DEVICE=lo\nIPADDR=127.0.0.1\n"),
    ];
    let f: Vec<(&str, &str)> = files.iter().map(|(a, b)| (a.as_str(), *b)).collect();
    let i = ifcfg(&f).unwrap();
    let s = &i.state;
    round_trips(s);
    let la = iface(s, "bond0").link_aggregation.as_ref().unwrap();
    assert_eq!(la.mode, crate::bond::BondMode::Lacp);
    assert_eq!(
        la.port.iter().map(|p| p.as_str()).collect::<Vec<_>>(),
        ["ens1f0", "ens1f1"]
    );
    assert_eq!(la.options.lacp_rate, Some(crate::bond::LacpRate::Fast));
    assert_eq!(iface(s, "bond0").mtu.map(|m| m.get()), Some(9000));
    assert_eq!(
        iface(s, "ens1f0")
            .mac_address
            .map(|m| m.to_string())
            .as_deref(),
        Some("52:54:00:aa:bb:01")
    );
    let v = iface(s, "bond0.100").vlan.as_ref().unwrap();
    assert_eq!((v.base_iface.as_str(), v.id.get()), ("bond0", 100));
    let v2 = iface(s, "vlan200");
    assert_eq!(v2.vlan.as_ref().unwrap().id.get(), 200);
    assert_eq!(v2.ipv4.as_ref().unwrap().address.len(), 2);
    assert_eq!(v2.ipv6.as_ref().unwrap().address.len(), 1);
    assert_eq!(s.routes.config.len(), 2);
    assert!(s
        .routes
        .config
        .iter()
        .any(|r| r.destination.to_string() == "10.50.0.0/16" && r.metric == Some(10)));
    assert_eq!(s.dns_resolver.as_ref().unwrap().config.server.len(), 2);
    assert!(
        i.notes.iter().any(|n| n.contains("ifcfg-bond0.bak")),
        "{:?}",
        i.notes
    );
    assert!(
        i.notes.iter().any(|n| n.contains("NM_CONTROLLED")),
        "{:?}",
        i.notes
    );
    assert!(s.interface("lo").is_none());
}

#[test]
fn ifcfg_cloudstack_bridges() {
    let d = "/etc/sysconfig/network-scripts";
    let files = [
        (format!("{d}/ifcfg-eth0"), "DEVICE=eth0\nONBOOT=yes\nMASTER=bond0\nSLAVE=yes\n"),
        (format!("{d}/ifcfg-eth1"), "DEVICE=eth1\nONBOOT=yes\nMASTER=bond0\nSLAVE=yes\n"),
        (format!("{d}/ifcfg-bond0"), "DEVICE=bond0\nTYPE=Bond\nBONDING_OPTS='mode=1 miimon=100 primary=eth0'\nBRIDGE=cloudbr0\n"),
        (format!("{d}/ifcfg-bond0.100"), "DEVICE=bond0.100\nVLAN=yes\nBRIDGE=cloudbr100\n"),
        (format!("{d}/ifcfg-cloudbr0"), "DEVICE=cloudbr0\nTYPE=Bridge\nBOOTPROTO=static\nIPADDR=192.0.2.10\nNETMASK=255.255.255.0\nGATEWAY=192.0.2.1\nSTP=no\nDELAY=0\n"),
        (format!("{d}/ifcfg-cloudbr100"), "DEVICE=cloudbr100\nTYPE=Bridge\nSTP=off\nBRIDGING_OPTS=\"priority=4096 hello_time=200\"\n"),
    ];
    let f: Vec<(&str, &str)> = files.iter().map(|(a, b)| (a.as_str(), *b)).collect();
    let i = ifcfg(&f).unwrap();
    let s = &i.state;
    round_trips(s);
    let la = iface(s, "bond0").link_aggregation.as_ref().unwrap();
    assert_eq!(la.mode, crate::bond::BondMode::ActiveBackup);
    let br = iface(s, "cloudbr0").bridge.as_ref().unwrap();
    assert_eq!(br.port[0].name.as_str(), "bond0");
    let br100 = iface(s, "cloudbr100").bridge.as_ref().unwrap();
    assert_eq!(br100.port[0].name.as_str(), "bond0.100");
    let stp = br100.options.stp.as_ref().unwrap();
    assert_eq!(
        (stp.enabled, stp.priority, stp.hello_time),
        (false, Some(4096), Some(2))
    );
}

#[test]
fn ifcfg_refuses_and_odd_inputs() {
    let d = "/etc/sysconfig/network-scripts";
    let t = err_text(ifcfg(&[(
        &format!("{d}/ifcfg-eth0"),
        "DEVICE=eth0\nBOOTPROTO=dhcp\nETHTOOL_OPTS=\"-K eth0 gro off\"\nFOO=bar\nIPADDR=$ADDR\n",
    )]));
    assert!(
        t.contains("ifcfg-eth0:line 2: BOOTPROTO \"dhcp\": DHCP"),
        "{t}"
    );
    assert!(
        t.contains("line 3: ETHTOOL_OPTS \"-K eth0 gro off\""),
        "{t}"
    );
    assert!(t.contains("line 4: FOO \"bar\""), "{t}");
    assert!(
        t.contains("line 5: IPADDR \"$ADDR\": shell expansions"),
        "{t}"
    );
    let t = err_text(ifcfg(&[(
        &format!("{d}/ifcfg-bond0"),
        "TYPE=Bond\nBONDING_OPTS=\"mode=4 lacp_rate=fast bogus=1\"\n",
    )]));
    assert!(
        t.contains("BONDING_OPTS \"bogus=1\": hostd has no bond option bogus"),
        "{t}"
    );
    let t = err_text(ifcfg(&[(&format!("{d}/ifcfg-x"), "TYPE=OVSBridge\n")]));
    assert!(t.contains("TYPE \"ovsbridge\""), "{t}");
    // ONBOOT=no: left out with a note; the file name gives DEVICE.
    let i = ifcfg(&[
        (&format!("{d}/ifcfg-eth0"), "IPADDR=10.0.0.2\nPREFIX=24\n"),
        (&format!("{d}/ifcfg-eth1"), "ONBOOT=no\n"),
    ])
    .unwrap();
    assert!(i.state.interface("eth1").is_none());
    assert!(iface(&i.state, "eth0").ipv4.is_some());
    assert!(
        i.notes.iter().any(|n| n.contains("ifcfg-eth1")),
        "{:?}",
        i.notes
    );
    // One file given: its route file next to it is read too.
    let files = MemFiles::new([
        ("/n/ifcfg-eth0", "IPADDR=10.0.0.2\nPREFIX=24\n"),
        (
            "/n/route-eth0",
            "ADDRESS0=10.9.0.0\nNETMASK0=255.255.0.0\nGATEWAY0=10.0.0.1\n",
        ),
    ]);
    let i = ifcfg::import("/n/ifcfg-eth0", &files).unwrap();
    assert_eq!(
        i.state.routes.config[0].destination.to_string(),
        "10.9.0.0/16"
    );
}

fn netplan(files: &[(&str, &str)]) -> Result<Import, ImportErrors> {
    netplan::import("/", &MemFiles::new(files.iter().copied()))
}

#[test]
fn netplan_oraclevm_and_merge_order() {
    let base = "\
network:
  version: 2
  renderer: networkd
  ethernets:
    eno1:
      match: { macaddress: \"52:54:00:00:00:01\" }
      set-name: eno1
    eno2: {}
  bonds:
    bond0:
      interfaces: [eno1, eno2]
      mtu: 9000
      parameters:
        mode: 802.3ad
        lacp-rate: fast
        mii-monitor-interval: 100ms
        transmit-hash-policy: layer3+4
  vlans:
    bond0.50: { id: 50, link: bond0 }
    vlan100: { id: 100, link: bond0 }
  bridges:
    br50:
      interfaces: [bond0.50]
      parameters: { stp: false, forward-delay: 0 }
    br100:
      interfaces: [vlan100]
      addresses: [10.100.0.10/24]
      routes:
        - { to: default, via: 10.100.0.1 }
        - { to: 10.200.0.0/16, via: 10.100.0.254, metric: 50 }
      nameservers: { addresses: [10.100.0.53], search: [ovm.example] }
";
    // etc/ overrides lib/ for the same name; a later name merges keys in;
    // run/ shadows etc/ entirely for its name.
    let i = netplan(&[
        (
            "/lib/netplan/00-base.yaml",
            "network: {version: 2, ethernets: {eno9: {}}}\n",
        ),
        ("/etc/netplan/00-base.yaml", base),
        (
            "/etc/netplan/50-mtu.yaml",
            "network:\n  bonds:\n    bond0:\n      parameters: { lacp-rate: slow }\n",
        ),
        (
            "/etc/netplan/60-x.yaml",
            "network: {bridges: {br50: {parameters: {stp: true}}}}\n",
        ),
        (
            "/run/netplan/60-x.yaml",
            "network: {bridges: {br50: {mtu: 9000}}}\n",
        ),
        ("/etc/netplan/README", "not yaml: ["),
    ])
    .unwrap();
    let s = &i.state;
    round_trips(s);
    assert!(
        s.interface("eno9").is_none(),
        "lib/00-base.yaml is shadowed by etc/00-base.yaml"
    );
    let eno1 = iface(s, "eno1");
    assert_eq!(
        eno1.mac_address.map(|m| m.to_string()).as_deref(),
        Some("52:54:00:00:00:01")
    );
    let bond = iface(s, "bond0");
    let la = bond.link_aggregation.as_ref().unwrap();
    assert_eq!(la.mode, crate::bond::BondMode::Lacp);
    assert_eq!(la.options.miimon, Some(100));
    assert_eq!(
        la.options.lacp_rate,
        Some(crate::bond::LacpRate::Slow),
        "50-mtu.yaml overrides"
    );
    assert_eq!(bond.mtu.map(|m| m.get()), Some(9000));
    let br50 = iface(s, "br50");
    assert_eq!(br50.mtu.map(|m| m.get()), Some(9000), "run/60-x.yaml");
    assert!(
        !br50
            .bridge
            .as_ref()
            .unwrap()
            .options
            .stp
            .as_ref()
            .unwrap()
            .enabled,
        "etc/60-x.yaml is shadowed"
    );
    assert_eq!(iface(s, "vlan100").vlan.as_ref().unwrap().id.get(), 100);
    assert_eq!(s.routes.config.len(), 2);
    assert!(i.notes.iter().any(|n| n.contains("renderer")));
}

#[test]
fn netplan_refuses_naming_file_and_key() {
    let t = err_text(netplan(&[(
        "/etc/netplan/01.yaml",
        "network:\n  version: 2\n  ethernets:\n    eth0:\n      dhcp4: true\n      macaddress: 02:00:00:00:00:09\n  wifis: {}\n",
    )]));
    assert!(
        t.contains("/etc/netplan/01.yaml:network.ethernets.eth0.dhcp4 \"true\": DHCP"),
        "{t}"
    );
    assert!(t.contains("network.ethernets.eth0.macaddress"), "{t}");
    assert!(t.contains("network.wifis"), "{t}");
    // A list given differently by two files.
    let t = err_text(netplan(&[
        (
            "/etc/netplan/01.yaml",
            "network: {ethernets: {eth0: {addresses: [10.0.0.2/24]}}}\n",
        ),
        (
            "/etc/netplan/02.yaml",
            "network: {ethernets: {eth0: {addresses: [10.0.0.3/24]}}}\n",
        ),
    ]));
    assert!(
        t.contains("02.yaml:network.ethernets.eth0.addresses") && t.contains("01.yaml"),
        "{t}"
    );
    // A reference to an undefined interface.
    let t = err_text(netplan(&[(
        "/etc/netplan/01.yaml",
        "network: {bonds: {bond0: {interfaces: [eth7]}}}\n",
    )]));
    assert!(
        t.contains("network.bonds.bond0.interfaces \"eth7\": not an interface defined"),
        "{t}"
    );
    let t = err_text(netplan(&[(
        "/etc/netplan/01.yaml",
        "network: {ethernets: {e: {match: {name: \"en*\"}}}}\n",
    )]));
    assert!(t.contains("glob"), "{t}");
}

#[test]
fn netplan_single_file_and_defaults() {
    let files = MemFiles::new([(
        "/tmp/x.yaml",
        "network:\n  ethernets:\n    eth0:\n      addresses: [\"2001:db8::5/64\"]\n      routes: [{to: default, via: \"2001:db8::1\"}]\n  bridges:\n    br0: {interfaces: []}\n",
    )]);
    let i = netplan::import("/tmp/x.yaml", &files).unwrap();
    round_trips(&i.state);
    assert_eq!(i.state.routes.config[0].destination.to_string(), "::/0");
    // networkd's bridges run STP unless told otherwise.
    assert!(
        iface(&i.state, "br0")
            .bridge
            .as_ref()
            .unwrap()
            .options
            .stp
            .as_ref()
            .unwrap()
            .enabled
    );
    assert_eq!(iface(&i.state, "br0").state, IfState::Up);
}

#[test]
fn glob_and_helpers() {
    assert!(glob_match("*", "a"));
    assert!(!glob_match("*", ".a"));
    assert!(glob_match("*.cfg", "x.cfg"));
    assert!(!glob_match("*.cfg", "x.cfgx"));
    assert!(glob_match("[a-c]?", "b1"));
    assert!(!glob_match("[!a-c]?", "b1"));
    assert_eq!(parse_netmask("255.255.240.0", false), Ok(20));
    assert!(parse_netmask("255.0.255.0", false).is_err());
    let mut o = BondOptions::default();
    set_bond_option(&mut o, "xmit_hash_policy", "1").unwrap();
    set_bond_option(&mut o, "use_carrier", "yes").unwrap();
    set_bond_option(&mut o, "arp_ip_target", "10.0.0.1,10.0.0.2").unwrap();
    assert_eq!(
        o.xmit_hash_policy,
        Some(crate::bond::XmitHashPolicy::Layer34)
    );
    assert_eq!(o.use_carrier, Some(true));
    assert_eq!(o.arp_ip_target.as_ref().map(Vec::len), Some(2));
    assert!(set_bond_option(&mut o, "miimon", "soon").is_err());
}
