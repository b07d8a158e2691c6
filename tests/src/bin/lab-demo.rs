//! The product demo (`./run.sh demo`): a rack in the lab, and the real
//! `hostd` binary (from `HOSTD_BIN`) applying the three examples of
//! `hostd/examples/` to three servers.
//!
//! - A switch pair `leaf1` (sw1 + sw2, one LACP system, standing for MLAG)
//!   announcing itself over LLDP.
//! - `ovm1`: the Oracle VM layout (802.3ad bond over LAG Po1, VLANs 50, 51,
//!   100 each in its own bridge, management IP on vlan100).
//! - `kvm1`: the CloudStack KVM layout (two active-backup bonds across the
//!   pair, cloudbr0/cloudbr1/cloudbr100), and a cable pull on its active
//!   port with the measured loss.
//! - `kvm2`: the trunk layout (802.3ad over LAG Po2, MTU 9000, 1000 VLANs
//!   into one VLAN-aware bridge), with a VM port on VLAN 600.
//! - `kvm3`: the CloudStack layout on Open vSwitch (a private ovsdb-server
//!   and ovs-vswitchd with the kernel datapath): an OVS bond negotiating
//!   LACP with LAG Po3 of the pair, tagged internal ports reaching VLANs 200
//!   and 300 (and not the other one).
//!
//! For each: what hostd planned and applied, that a second apply changes
//! nothing, the state `hostd show` reads back, LACP negotiated with the
//! switch pair, LLDP neighbours, and traffic on each VLAN reaching its peer.
//! Exits non-zero if any of it fails.

use std::{
    path::{Path, PathBuf},
    process::Output,
    time::{Duration, Instant},
};

use anyhow::{bail, ensure, Context as _};
use lab::{
    bonding::wait_lacp,
    netns::run_checked,
    spec::{LagSpec, NicSpec, PairSpec, PortRef, PortSpec, ServerSpec, SwitchSpec, VlanMembership},
    traffic::{ping, reachable, Pinger},
    wait::scaled,
    NetNs, Rack, RackSpec,
};

const EXAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../hostd/examples");

/// The `hostd` binary and a private state directory per server (ownership
/// record and resolv.conf: the VM's root filesystem is read-only, and a
/// namespace shares the host's /etc).
struct Hostd {
    bin: PathBuf,
    dir: PathBuf,
    /// ovsdb-server's socket (`HOSTD_OVSDB_SOCKET`), for kvm3.
    ovsdb: Option<PathBuf>,
}

impl Hostd {
    fn run(&self, ns: &NetNs, args: &[&str]) -> anyhow::Result<Output> {
        let state = self.dir.join(format!("{}-owned.json", ns.role()));
        let resolv = self.dir.join(format!("{}-resolv.conf", ns.role()));
        let bin = self.bin.display().to_string();
        let mut cmd = ns.command(&bin);
        cmd.args(args)
            .env("HOSTD_STATE_FILE", state)
            .env("HOSTD_RESOLV_CONF", resolv);
        if let Some(sock) = &self.ovsdb {
            cmd.env("HOSTD_OVSDB_SOCKET", sock);
        }
        let out = cmd
            .output()
            .with_context(|| format!("running {bin} {args:?} in {}", ns.role()))?;
        Ok(out)
    }

    /// `hostd apply FILE`: prints the head and tail of its output; expects
    /// exit code 10 ("changed") the first time and 0 ("no change") after.
    fn apply(&self, ns: &NetNs, file: &Path) -> anyhow::Result<()> {
        let f = file.display().to_string();
        let t = Instant::now();
        let out = self.run(ns, &["apply", &f])?;
        let took = t.elapsed();
        let text = String::from_utf8_lossy(&out.stdout);
        print_excerpt(&text, 12, 4);
        let code = out.status.code().unwrap_or(-1);
        ensure!(
            code == 10,
            "hostd apply {f} in {}: exit code {code} (10 = changed expected)\n{}",
            ns.role(),
            String::from_utf8_lossy(&out.stderr)
        );
        println!(
            "  -> hostd apply: exit code 10 (changed), {:.2} s wall (under emulation)",
            took.as_secs_f64()
        );
        let again = self.run(ns, &["apply", &f])?;
        let code = again.status.code().unwrap_or(-1);
        ensure!(
            code == 0,
            "second hostd apply in {}: exit code {code} (0 = no change expected)\n{}{}",
            ns.role(),
            String::from_utf8_lossy(&again.stdout),
            String::from_utf8_lossy(&again.stderr)
        );
        println!("  -> second hostd apply: exit code 0 (no change)");
        Ok(())
    }

    /// `hostd show` (YAML), printed in full or as an excerpt.
    fn show(&self, ns: &NetNs, head: usize) -> anyhow::Result<()> {
        let out = self.run(ns, &["show"])?;
        ensure!(
            out.status.success(),
            "hostd show in {}: {}",
            ns.role(),
            String::from_utf8_lossy(&out.stderr)
        );
        println!("  hostd show ({}):", ns.role());
        print_excerpt(&String::from_utf8_lossy(&out.stdout), head, 0);
        Ok(())
    }
}

fn print_excerpt(text: &str, head: usize, tail: usize) {
    let lines: Vec<&str> = text.lines().collect();
    if lines.len() <= head + tail + 1 {
        for l in &lines {
            println!("    {l}");
        }
        return;
    }
    for l in &lines[..head] {
        println!("    {l}");
    }
    println!("    ... ({} more lines)", lines.len() - head - tail);
    for l in &lines[lines.len() - tail..] {
        println!("    {l}");
    }
}

fn lag(name: &str, port: &str, vlans: VlanMembership) -> LagSpec {
    LagSpec {
        name: name.into(),
        members: vec![PortRef::new("sw1", port), PortRef::new("sw2", port)],
        vlans,
        lacp_rate: "fast".into(),
        mode: Default::default(),
    }
}

fn rack_spec() -> RackSpec {
    // CloudStack's bond0: management untagged (VLAN 10), storage VLAN 100.
    let mgmt_storage = VlanMembership {
        access: Some(10),
        tagged: vec![100],
    };
    RackSpec {
        switches: vec![
            SwitchSpec {
                name: "sw1".into(),
                ports: vec![
                    PortSpec::new("Ethernet3", mgmt_storage.clone()),
                    PortSpec::new("Ethernet4", VlanMembership::access(20)),
                    PortSpec::new("Ethernet7", VlanMembership::access(100)),
                    PortSpec::new("Ethernet8", VlanMembership::access(10)),
                    PortSpec::new("Ethernet9", VlanMembership::access(600)),
                    PortSpec::new("Ethernet10", VlanMembership::access(601)),
                    PortSpec::new("Ethernet14", VlanMembership::access(200)),
                    PortSpec::new("Ethernet15", VlanMembership::access(300)),
                ],
                lags: vec![
                    lag("Po1", "Ethernet1", VlanMembership::trunk([50, 51, 100])),
                    lag("Po2", "Ethernet2", VlanMembership::trunk(100..=1099)),
                    lag("Po3", "Ethernet11", VlanMembership::trunk([100, 200, 300])),
                ],
                lldp: true,
            },
            SwitchSpec {
                name: "sw2".into(),
                ports: vec![
                    PortSpec::new("Ethernet3", mgmt_storage),
                    PortSpec::new("Ethernet4", VlanMembership::access(20)),
                ],
                lags: vec![],
                lldp: true,
            },
        ],
        pairs: vec![PairSpec {
            name: "leaf1".into(),
            members: ["sw1".into(), "sw2".into()],
            system_mac: None,
        }],
        servers: vec![
            ServerSpec::new(
                "ovm1",
                vec![
                    NicSpec::cabled("eth0", "sw1", "Ethernet1"),
                    NicSpec::cabled("eth1", "sw2", "Ethernet1"),
                ],
            ),
            ServerSpec::new(
                "kvm1",
                vec![
                    NicSpec::cabled("eth0", "sw1", "Ethernet3"),
                    NicSpec::cabled("eth1", "sw2", "Ethernet3"),
                    NicSpec::cabled("eth2", "sw1", "Ethernet4"),
                    NicSpec::cabled("eth3", "sw2", "Ethernet4"),
                ],
            ),
            ServerSpec::new(
                "kvm2",
                vec![
                    NicSpec::cabled("eth0", "sw1", "Ethernet2"),
                    NicSpec::cabled("eth1", "sw2", "Ethernet2"),
                ],
            ),
            ServerSpec::new(
                "kvm3",
                vec![
                    NicSpec::cabled("eth0", "sw1", "Ethernet11"),
                    NicSpec::cabled("eth1", "sw2", "Ethernet11"),
                    NicSpec::cabled("eth2", "sw1", "Ethernet13"),
                    NicSpec::cabled("eth3", "sw2", "Ethernet13"),
                ],
            ),
            ServerSpec::new("p200", vec![NicSpec::cabled("eth0", "sw1", "Ethernet14")]),
            ServerSpec::new("p300", vec![NicSpec::cabled("eth0", "sw1", "Ethernet15")]),
            // Peers: the VLAN 100 gateway / storage target, the management
            // gateway, and two hosts behind the trunk's VLANs 600 and 601.
            ServerSpec::new("gw100", vec![NicSpec::cabled("eth0", "sw1", "Ethernet7")]),
            ServerSpec::new("gw10", vec![NicSpec::cabled("eth0", "sw1", "Ethernet8")]),
            ServerSpec::new("p600", vec![NicSpec::cabled("eth0", "sw1", "Ethernet9")]),
            ServerSpec::new("p601", vec![NicSpec::cabled("eth0", "sw1", "Ethernet10")]),
        ],
    }
}

/// Pings until `dst` answers (bounded), then counts 10 echoes; all must come
/// back.
fn traffic(ns: &NetNs, what: &str, dst: &str) -> anyhow::Result<()> {
    lab::wait_until(what, scaled(Duration::from_secs(30)), || reachable(ns, dst));
    let s = ping(ns, dst, 10, Duration::from_millis(50), None)?;
    println!("  {what}: {}/{} echoes answered", s.received, s.transmitted);
    ensure!(s.received == s.transmitted, "loss on {what}: {s:?}");
    Ok(())
}

/// Pings that must all go unanswered (another VLAN).
fn isolated(ns: &NetNs, what: &str, dst: &str) -> anyhow::Result<()> {
    let s = ping(ns, dst, 3, Duration::from_millis(200), None)?;
    println!(
        "  {what}: {}/{} echoes answered (isolated, as it must be)",
        s.received, s.transmitted
    );
    ensure!(s.received == 0, "{what} must be isolated: {s:?}");
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let bin = std::env::var_os("HOSTD_BIN")
        .map(PathBuf::from)
        .context("HOSTD_BIN must name the hostd binary (cargo xtask demo sets it)")?;
    if !bin.exists() {
        bail!("HOSTD_BIN={}: no such file", bin.display());
    }
    let dir = std::env::temp_dir().join(format!("hostd-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let hostd = Hostd {
        bin,
        dir,
        ovsdb: None,
    };
    let examples = Path::new(EXAMPLES);

    println!("kernel: {}", lab::kernel::release());
    let t = Instant::now();
    let rack = Rack::build(rack_spec()).context("building the demo rack")?;
    println!(
        "rack built in {:.1} s:\n{}",
        t.elapsed().as_secs_f64(),
        rack.describe()
    );
    for (s, addrs) in [
        ("gw100", &["10.100.0.1/24", "198.51.100.20/24"][..]),
        ("gw10", &["192.0.2.1/24"][..]),
        ("p600", &["10.6.0.2/24"][..]),
        ("p601", &["10.6.0.3/24"][..]),
        // VLAN 200 and 300 peers of kvm3; each also holds an address of
        // the other's subnet, which kvm3 must not reach across VLANs.
        ("p200", &["10.200.0.2/24", "10.30.0.2/24"][..]),
        ("p300", &["10.30.0.3/24", "10.200.0.3/24"][..]),
    ] {
        let mut lines = vec!["link set eth0 up".to_owned()];
        lines.extend(addrs.iter().map(|a| format!("addr add {a} dev eth0")));
        rack.server(s).ip_batch(&lines)?;
    }
    let partner = rack.switch_system_mac("sw1");

    println!("\n== ovm1: Oracle VM (hostd/examples/oraclevm.yaml)");
    let ovm = rack.server("ovm1");
    hostd.apply(ovm, &examples.join("oraclevm.yaml"))?;
    hostd.show(ovm, 60)?;
    let st = wait_lacp(ovm, "bond0", &partner, scaled(Duration::from_secs(60)));
    println!("  bond0 LACP negotiated with leaf1: {}", st.summary());
    traffic(
        ovm,
        "ovm1 vlan100 -> gateway 10.100.0.1 (VLAN 100)",
        "10.100.0.1",
    )?;

    println!("\n== kvm1: CloudStack KVM (hostd/examples/cloudstack.yaml)");
    let kvm1 = rack.server("kvm1");
    hostd.apply(kvm1, &examples.join("cloudstack.yaml"))?;
    hostd.show(kvm1, 30)?;
    traffic(
        kvm1,
        "kvm1 cloudbr0 -> management gateway 192.0.2.1 (VLAN 10)",
        "192.0.2.1",
    )?;
    traffic(
        kvm1,
        "kvm1 cloudbr100 -> storage 198.51.100.20 (VLAN 100)",
        "198.51.100.20",
    )?;
    // Active-backup failover: pull the cable of bond0's active port (eth0,
    // to sw1) while pinging the management gateway every 20 ms.
    let pinger = Pinger::start(kvm1, "192.0.2.1", Duration::from_millis(20))?;
    std::thread::sleep(scaled(Duration::from_millis(300)));
    rack.pull_cable("kvm1", "eth0");
    std::thread::sleep(scaled(Duration::from_secs(1)));
    let (stats, outage) = pinger.stop()?;
    println!(
        "  cable eth0 <-> sw1:Ethernet3 pulled while pinging 192.0.2.1 every 20 ms: {} of {} echoes lost (outage about {:.2} s), then answered over eth1",
        stats.lost(),
        stats.transmitted,
        outage.as_secs_f64()
    );
    ensure!(stats.received > 0, "no traffic after the pull: {stats:?}");
    traffic(kvm1, "kvm1 over the backup port -> 192.0.2.1", "192.0.2.1")?;
    rack.restore_cable("kvm1", "eth0");

    println!("\n== kvm2: trunk, 1000 VLANs (hostd/examples/trunk.yaml)");
    let kvm2 = rack.server("kvm2");
    hostd.apply(kvm2, &examples.join("trunk.yaml"))?;
    hostd.show(kvm2, 20)?;
    let st = wait_lacp(kvm2, "bond0", &partner, scaled(Duration::from_secs(60)));
    println!("  bond0 LACP negotiated with leaf1: {}", st.summary());
    // A VM's port, added by the hypervisor (not by hostd), on VLAN 600.
    let vm = NetNs::new("vm")?;
    kvm2.ip_batch(&[
        format!(
            "link add vnet0 mtu 9000 type veth peer name eth0 netns {}",
            vm.name()
        ),
        "link set vnet0 master br0".into(),
        "link set vnet0 up".into(),
    ])?;
    kvm2.bridge_batch(&[
        "vlan del dev vnet0 vid 1".into(),
        "vlan add dev vnet0 vid 600 pvid untagged".into(),
    ])?;
    vm.ip_batch(&[
        "link set eth0 up".into(),
        "addr add 10.6.0.1/24 dev eth0".into(),
    ])?;
    traffic(
        &vm,
        "VM on kvm2 br0 -> 10.6.0.2 (VLAN 600 over the trunk)",
        "10.6.0.2",
    )?;
    isolated(&vm, "VM on kvm2 br0 -> 10.6.0.3 (VLAN 601)", "10.6.0.3")?;

    println!("\n== kvm3: CloudStack KVM on Open vSwitch (hostd/examples/cloudstack-ovs.yaml)");
    let kvm3 = rack.server("kvm3");
    let t = Instant::now();
    let ovs = hostd_ovsdb::sandbox::Sandbox::start_system(kvm3.name())
        .map_err(|e| anyhow::anyhow!("starting ovsdb-server + ovs-vswitchd: {e}"))?;
    println!(
        "  private ovsdb-server + ovs-vswitchd (kernel datapath) in kvm3, started in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let hostd_ovs = Hostd {
        bin: hostd.bin.clone(),
        dir: hostd.dir.clone(),
        ovsdb: Some(ovs.db_socket()),
    };
    hostd_ovs.apply(kvm3, &examples.join("cloudstack-ovs.yaml"))?;
    hostd_ovs.show(kvm3, 45)?;
    let mut sys_id = None;
    lab::wait_until(
        "kvm3 bond0 (OVS) LACP negotiated",
        scaled(Duration::from_secs(60)),
        || {
            let text = |c: &str| ovs.appctl(&[c]).unwrap_or_default();
            let st = hostd_core::ovs::status::merge(
                &text("bond/show"),
                &text("lacp/show"),
                &text("lacp/show-stats"),
            );
            sys_id = st
                .iter()
                .find(|b| b.name == "bond0" && b.lacp_status.as_deref() == Some("negotiated"))
                .and_then(|b| b.lacp.as_ref())
                .and_then(|l| l.sys_id.clone());
            sys_id.is_some()
        },
    );
    let sys_id = sys_id.context("OVS LACP system id")?;
    println!("  OVS bond0 LACP negotiated (OVS system id {sys_id})");
    for sw in ["sw1", "sw2"] {
        let st = wait_lacp(
            rack.switch(sw),
            "Po3",
            &sys_id,
            scaled(Duration::from_secs(60)),
        );
        println!("  {sw} Po3 sees OVS as its LACP partner: {}", st.summary());
    }
    traffic(
        kvm3,
        "kvm3 mgmt0 (OVS internal, VLAN 200) -> 10.200.0.2",
        "10.200.0.2",
    )?;
    traffic(
        kvm3,
        "kvm3 trunk0.300 (kernel VLAN on an OVS internal port) -> 10.30.0.3",
        "10.30.0.3",
    )?;
    isolated(kvm3, "kvm3 mgmt0 -> 10.200.0.3 (on VLAN 300)", "10.200.0.3")?;
    isolated(
        kvm3,
        "kvm3 trunk0.300 -> 10.30.0.2 (on VLAN 200)",
        "10.30.0.2",
    )?;

    println!("\n== LLDP: what the servers hear from the switch pair");
    for srv in ["ovm1", "kvm2"] {
        let lldp = lab::lldp::LldpListener::start(rack.server(srv), &["eth0", "eth1"])?;
        for n in lldp.wait_for(&["eth0", "eth1"], scaled(Duration::from_secs(30)))? {
            println!(
                "  {srv} {} LLDP neighbour: {} port {}",
                n.local_interface, n.system_name, n.port_id
            );
        }
    }

    println!("\n== teardown (server back to the pool): ovm1");
    let out = hostd.run(ovm, &["teardown"])?;
    let code = out.status.code().unwrap_or(-1);
    ensure!(
        code == 10,
        "hostd teardown: exit code {code}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let links = run_checked(std::process::Command::new("ip").args([
        "-n",
        ovm.name(),
        "-br",
        "link",
        "show",
    ]))?;
    print_excerpt(&String::from_utf8_lossy(&links.stdout), 10, 0);

    let _ = std::fs::remove_dir_all(&hostd.dir);
    println!("\ndemo OK");
    Ok(())
}
