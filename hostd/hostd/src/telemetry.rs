//! `hostd telemetry run|show`: the daemon side of the eBPF telemetry.
//!
//! `run` reads the `telemetry` section of a desired state, loads the TC
//! programs ([`hostd_telemetry::Telemetry`]), programs sampling and subnets,
//! attaches to the interfaces and runs the sFlow agent
//! ([`hostd_telemetry::Agent`]) in the foreground, as hsflowd does, until the
//! stop flag is set (SIGINT/SIGTERM in the binary); then it detaches
//! everything. `show` reads the counters from the maps a running (or
//! stopped) agent pinned.
//!
//! Everything happens in the network namespace of the calling thread.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::atomic::{AtomicBool, Ordering},
    time::Duration,
};

use hostd_core::telemetry::TelemetrySpec;
use hostd_telemetry::{
    Agent, AgentConfig, AgentError, AttachMode, IfVlanCounters, IpNet, LoadOptions, SubnetCounters,
    Telemetry, TelemetryError, DEFAULT_PIN_DIR, NO_VLAN,
};
use serde_json::json;

/// `hostd telemetry ...`
#[derive(Debug, Clone, clap::Subcommand)]
pub enum TelemetryCmd {
    /// Run the eBPF counters and the sFlow agent in the foreground for the
    /// `telemetry` section of FILE, until SIGINT or SIGTERM; then detach.
    Run {
        /// Desired state, YAML or JSON (its `telemetry` section is used; the
        /// whole document is validated).
        file: PathBuf,
        /// Pin the counter maps here (on a bpffs mount), so counters survive
        /// a restart and `hostd telemetry show` can read them.
        #[arg(long, default_value = DEFAULT_PIN_DIR)]
        pin_dir: PathBuf,
        /// Do not pin: counters start from zero and `show` cannot read them.
        #[arg(long)]
        no_pin: bool,
    },
    /// Print the counters (per interface and VLAN, per subnet) from the
    /// pinned maps.
    Show {
        /// Where `hostd telemetry run` pinned its maps.
        #[arg(long, default_value = DEFAULT_PIN_DIR)]
        pin_dir: PathBuf,
    },
}

/// Why the telemetry agent could not start, run or be read.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The programs could not be loaded or configured.
    #[error("telemetry: {0}")]
    Telemetry(#[from] TelemetryError),
    /// Attaching to an interface failed (what was attached is detached).
    #[error("telemetry.interfaces[{index}] ({interface}): attaching failed: {source}")]
    Attach {
        /// Index in `telemetry.interfaces`.
        index: usize,
        /// The interface.
        interface: String,
        /// The loader's error.
        #[source]
        source: TelemetryError,
    },
    /// The sFlow agent could not start or failed.
    #[error("sFlow agent: {0}")]
    Agent(#[from] AgentError),
    /// `show`: nothing is pinned there.
    #[error("no pinned telemetry maps in {}: is `hostd telemetry run` running (without --no-pin, with the same --pin-dir)?", .0.display())]
    NotPinned(PathBuf),
    /// The pin directory is not on a BPF filesystem and one could not be
    /// mounted for it.
    #[error("--pin-dir {}: {reason}", .dir.display())]
    PinDir {
        /// The pin directory.
        dir: PathBuf,
        /// Why it cannot be used.
        reason: String,
    },
    /// Detaching at the end failed: programs may be left attached.
    #[error("detaching failed, programs may be left attached: {0}")]
    Detach(#[source] TelemetryError),
}

/// What [`run`] attached and how.
#[derive(Debug, Clone)]
pub struct Started {
    /// TCX or clsact.
    pub mode: AttachMode,
    /// Interfaces and their ifindex.
    pub attached: Vec<(String, u32)>,
    /// Collectors datagrams go to.
    pub collectors: Vec<SocketAddr>,
}

fn load_options(spec: &TelemetrySpec, pin_dir: Option<&Path>) -> LoadOptions {
    let defaults = LoadOptions::default();
    LoadOptions {
        pin_dir: pin_dir.map(Path::to_path_buf),
        max_subnets: defaults
            .max_subnets
            .max(u32::try_from(spec.subnets.len()).unwrap_or(u32::MAX)),
        ..defaults
    }
}

/// Loads, configures and attaches per `spec` (validated by the caller), then
/// exports sFlow until `stop` is set; detaches everything before returning.
/// `started` is called once everything is attached.
#[tracing::instrument(skip_all, fields(interfaces = spec.interfaces.len()))]
pub fn run(
    spec: &TelemetrySpec,
    pin_dir: Option<&Path>,
    stop: &AtomicBool,
    started: impl FnOnce(&Started),
) -> Result<(), Error> {
    if let Some(dir) = pin_dir {
        ensure_bpffs(dir)?;
    }
    let mut t = Telemetry::load_with(&load_options(spec, pin_dir))?;
    t.set_subnets(&spec.subnets)?;
    t.set_sampling(spec.sampling_rate, spec.header_bytes)?;
    for (index, name) in spec.interfaces.iter().enumerate() {
        // On error `t` is dropped, which detaches what was attached.
        t.attach(name.as_str()).map_err(|source| Error::Attach {
            index,
            interface: name.as_str().to_owned(),
            source,
        })?;
        tracing::info!(interface = %name, "telemetry attached");
    }
    let collectors = spec.collector_addrs();
    let mut agent = if collectors.is_empty() {
        None
    } else {
        Some(Agent::new(
            &mut t,
            AgentConfig {
                collectors: collectors.clone(),
                agent_address: spec.agent_address,
                sub_agent_id: spec.sub_agent_id,
                sampling_rate: spec.sampling_rate,
                counter_interval: Duration::from_secs(u64::from(spec.counter_interval)),
                ..AgentConfig::default()
            },
        )?)
    };
    started(&Started {
        mode: t.mode(),
        attached: t.attached().map(|(n, i)| (n.to_owned(), i)).collect(),
        collectors,
    });
    let result = match agent.as_mut() {
        Some(a) => a.run(&t, stop).map_err(Error::from),
        None => {
            // Counting only: nothing to export.
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(100));
            }
            Ok(())
        }
    };
    let detached = t.detach_all().map_err(Error::Detach);
    tracing::info!("telemetry detached");
    result.and(detached)
}

/// Where the BPF filesystem is mounted by convention (systemd mounts it
/// there; minimal images and containers often do not).
const BPFFS: &str = "/sys/fs/bpf";

/// Makes sure `dir` exists on a BPF filesystem: pinning anywhere else fails
/// with EPERM. When `dir` is under /sys/fs/bpf and nothing is mounted there,
/// mounts a bpffs there first, as systemd would have (mode 0700).
fn ensure_bpffs(dir: &Path) -> Result<(), Error> {
    use nix::sys::statfs::{statfs, BPF_FS_MAGIC};
    let fail = |reason: String| Error::PinDir {
        dir: dir.to_path_buf(),
        reason,
    };
    let on_bpffs = |p: &Path| statfs(p).map(|s| s.filesystem_type() == BPF_FS_MAGIC);
    let root = Path::new(BPFFS);
    if dir.starts_with(root) && root.is_dir() && !on_bpffs(root).unwrap_or(false) {
        nix::mount::mount(
            Some("bpf"),
            root,
            Some("bpf"),
            nix::mount::MsFlags::MS_NOSUID
                | nix::mount::MsFlags::MS_NODEV
                | nix::mount::MsFlags::MS_NOEXEC,
            Some("mode=0700"),
        )
        .map_err(|e| fail(format!("mounting a bpffs on {BPFFS}: {e}")))?;
        tracing::info!("mounted a bpffs on {BPFFS}");
    }
    std::fs::create_dir_all(dir).map_err(|e| fail(format!("creating it: {e}")))?;
    match on_bpffs(dir) {
        Ok(true) => Ok(()),
        Ok(false) => Err(fail(format!(
            "not on a BPF filesystem (mount one, e.g. `mount -t bpf bpf {BPFFS}`, or pass --no-pin)"
        ))),
        Err(e) => Err(fail(format!("statfs: {e}"))),
    }
}

/// Counters read by [`show`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters {
    /// Per (ifindex, VLAN) (VLAN [`NO_VLAN`] = untagged).
    pub interfaces: BTreeMap<(u32, u32), IfVlanCounters>,
    /// Per ifindex: packets counted without their VLAN because the
    /// (interface, VLAN) map was full.
    pub unattributed: BTreeMap<u32, IfVlanCounters>,
    /// Packets counted for no interface (both maps full).
    pub lost: IfVlanCounters,
    /// Per configured subnet, in slot order.
    pub subnets: Vec<(IpNet, SubnetCounters)>,
}

/// Reads the counters from the maps pinned in `pin_dir` (loads the programs
/// to open them, attaches nothing).
pub fn show(pin_dir: &Path) -> Result<Counters, Error> {
    if !pin_dir.join(telemetry_common::maps::IF_COUNTERS).exists() {
        return Err(Error::NotPinned(pin_dir.to_path_buf()));
    }
    let t = Telemetry::load_with(&LoadOptions {
        pin_dir: Some(pin_dir.to_path_buf()),
        ..LoadOptions::default()
    })?;
    Ok(Counters {
        interfaces: t
            .interface_vlan_counters()?
            .into_iter()
            .map(|(k, c)| ((k.ifindex, k.vlan), c))
            .collect(),
        unattributed: t.unattributed_counters()?,
        lost: t.lost_counters()?,
        subnets: t.subnet_counters()?,
    })
}

fn vlan_text(v: u32) -> String {
    if v == NO_VLAN {
        "-".into()
    } else {
        v.to_string()
    }
}

/// `hostd telemetry show` as a table; `names` maps ifindex to name.
pub fn show_text(c: &Counters, names: &BTreeMap<u32, String>) -> String {
    let name = |i: u32| names.get(&i).cloned().unwrap_or_else(|| format!("if{i}"));
    let mut s = format!(
        "{:<16} {:>5} {:>12} {:>14} {:>12} {:>14} {:>10} {:>10}\n",
        "INTERFACE",
        "VLAN",
        "RX_PACKETS",
        "RX_BYTES",
        "TX_PACKETS",
        "TX_BYTES",
        "RX_MCAST",
        "TX_MCAST"
    );
    for ((ifindex, vlan), v) in &c.interfaces {
        s.push_str(&format!(
            "{:<16} {:>5} {:>12} {:>14} {:>12} {:>14} {:>10} {:>10}\n",
            name(*ifindex),
            vlan_text(*vlan),
            v.rx.packets,
            v.rx.bytes,
            v.tx.packets,
            v.tx.bytes,
            v.rx.multicast,
            v.tx.multicast
        ));
    }
    // Packets the (interface, VLAN) map had no room for: counted per
    // interface, VLAN unknown ("?"); and those counted for no interface.
    let full: Vec<(String, &IfVlanCounters)> = c
        .unattributed
        .iter()
        .map(|(i, v)| (name(*i), v))
        .chain((c.lost != IfVlanCounters::default()).then(|| ("(none)".to_owned(), &c.lost)))
        .collect();
    for (n, v) in &full {
        s.push_str(&format!(
            "{:<16} {:>5} {:>12} {:>14} {:>12} {:>14} {:>10} {:>10}\n",
            n,
            "?",
            v.rx.packets,
            v.rx.bytes,
            v.tx.packets,
            v.tx.bytes,
            v.rx.multicast,
            v.tx.multicast
        ));
    }
    if !full.is_empty() {
        s.push_str("VLAN ?: the per-VLAN counter map is full; these packets are counted without their VLAN\n");
    }
    if !c.subnets.is_empty() {
        s.push_str(&format!(
            "{:<43} {:>12} {:>14} {:>12} {:>14}\n",
            "SUBNET", "TO_PACKETS", "TO_BYTES", "FROM_PACKETS", "FROM_BYTES"
        ));
        for (net, v) in &c.subnets {
            s.push_str(&format!(
                "{:<43} {:>12} {:>14} {:>12} {:>14}\n",
                net.to_string(),
                v.to_packets,
                v.to_bytes,
                v.from_packets,
                v.from_bytes
            ));
        }
    }
    s
}

/// `hostd telemetry show -o json`.
pub fn show_json(c: &Counters, names: &BTreeMap<u32, String>) -> serde_json::Value {
    let dir = |d: &hostd_telemetry::DirCounters| {
        json!({
            "packets": d.packets,
            "bytes": d.bytes,
            "multicast": d.multicast,
            "broadcast": d.broadcast,
            "samples": d.samples,
            "sample-drops": d.sample_drops,
        })
    };
    json!({
        "interfaces": c.interfaces.iter().map(|((ifindex, vlan), v)| json!({
            "interface": names.get(ifindex),
            "ifindex": ifindex,
            "vlan": if *vlan == NO_VLAN { None } else { Some(*vlan) },
            "rx": dir(&v.rx),
            "tx": dir(&v.tx),
        })).collect::<Vec<_>>(),
        // Packets counted without their VLAN: the (interface, VLAN) map was
        // full. They are part of the interface's totals.
        "unattributed": c.unattributed.iter().map(|(ifindex, v)| json!({
            "interface": names.get(ifindex),
            "ifindex": ifindex,
            "rx": dir(&v.rx),
            "tx": dir(&v.tx),
        })).collect::<Vec<_>>(),
        // Packets counted for no interface (the overflow map was full too).
        "lost": json!({ "rx": dir(&c.lost.rx), "tx": dir(&c.lost.tx) }),
        "subnets": c.subnets.iter().map(|(net, v)| json!({
            "subnet": net.to_string(),
            "to-packets": v.to_packets,
            "to-bytes": v.to_bytes,
            "from-packets": v.from_packets,
            "from-bytes": v.from_bytes,
        })).collect::<Vec<_>>(),
    })
}

/// Interface names by ifindex in the calling thread's namespace.
pub fn interface_names() -> BTreeMap<u32, String> {
    nix::net::if_::if_nameindex()
        .map(|l| {
            l.iter()
                .map(|i| (i.index(), i.name().to_string_lossy().into_owned()))
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use hostd_telemetry::DirCounters;

    use super::*;

    fn counters() -> Counters {
        let d = |packets, bytes| DirCounters {
            packets,
            bytes,
            ..DirCounters::default()
        };
        Counters {
            interfaces: [
                (
                    (2, NO_VLAN),
                    IfVlanCounters {
                        rx: d(30, 2940),
                        tx: d(5, 490),
                    },
                ),
                (
                    (2, 100),
                    IfVlanCounters {
                        rx: d(3, 300),
                        tx: d(0, 0),
                    },
                ),
            ]
            .into_iter()
            .collect(),
            unattributed: BTreeMap::new(),
            lost: IfVlanCounters::default(),
            subnets: vec![(
                "10.0.0.0/24".parse().expect("net"),
                SubnetCounters {
                    to_packets: 5,
                    to_bytes: 490,
                    from_packets: 5,
                    from_bytes: 490,
                },
            )],
        }
    }

    #[test]
    fn text_rows_per_interface_vlan_and_subnet() {
        let names = [(2, "eth0".to_owned())].into_iter().collect();
        let t = show_text(&counters(), &names);
        let rows: Vec<Vec<&str>> = t.lines().map(|l| l.split_whitespace().collect()).collect();
        assert_eq!(rows[0][0], "INTERFACE");
        // By ifindex, then VLAN (untagged, 0xffff, last).
        assert_eq!(rows[1], ["eth0", "100", "3", "300", "0", "0", "0", "0"]);
        assert_eq!(rows[2], ["eth0", "-", "30", "2940", "5", "490", "0", "0"]);
        assert_eq!(rows[3][0], "SUBNET");
        assert_eq!(rows[4], ["10.0.0.0/24", "5", "490", "5", "490"]);
        // Unknown ifindex: shown by number.
        assert!(show_text(&counters(), &BTreeMap::new()).contains("\nif2 "));
    }

    #[test]
    fn a_full_counter_map_shows_the_unattributed_packets() {
        let names = [(2, "eth0".to_owned())].into_iter().collect();
        let mut c = counters();
        assert!(!show_text(&c, &names).contains(" ? "), "nothing missed");
        c.unattributed.insert(
            2,
            IfVlanCounters {
                rx: DirCounters {
                    packets: 7,
                    bytes: 700,
                    ..DirCounters::default()
                },
                tx: DirCounters::default(),
            },
        );
        c.lost.tx.packets = 1;
        let t = show_text(&c, &names);
        let rows: Vec<Vec<&str>> = t.lines().map(|l| l.split_whitespace().collect()).collect();
        assert_eq!(
            rows[3],
            ["eth0", "?", "7", "700", "0", "0", "0", "0"],
            "{t}"
        );
        assert_eq!(
            rows[4],
            ["(none)", "?", "0", "0", "1", "0", "0", "0"],
            "{t}"
        );
        assert!(rows[5].join(" ").contains("map is full"), "{t}");
        let j = show_json(&c, &names);
        assert_eq!(j["unattributed"][0]["interface"], "eth0");
        assert_eq!(j["unattributed"][0]["rx"]["packets"], 7);
        assert_eq!(j["lost"]["tx"]["packets"], 1);
    }

    #[test]
    fn json_fields() {
        let names = [(2, "eth0".to_owned())].into_iter().collect();
        let j = show_json(&counters(), &names);
        assert_eq!(j["interfaces"][1]["interface"], "eth0");
        assert_eq!(j["interfaces"][1]["vlan"], serde_json::Value::Null);
        assert_eq!(j["interfaces"][1]["rx"]["packets"], 30);
        assert_eq!(j["interfaces"][0]["vlan"], 100);
        assert_eq!(j["subnets"][0]["subnet"], "10.0.0.0/24");
        assert_eq!(j["subnets"][0]["from-bytes"], 490);
    }

    #[test]
    fn a_pin_dir_off_bpffs_is_refused_with_its_name() {
        let dir = std::env::temp_dir().join(format!("hostd-tel-notbpf-{}", std::process::id()));
        let e = ensure_bpffs(&dir).expect_err("a tmp directory is no bpffs");
        let text = e.to_string();
        assert!(
            text.contains(&dir.display().to_string()) && text.contains("not on a BPF filesystem"),
            "{text}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn show_refuses_a_directory_without_pins() {
        let dir = std::env::temp_dir().join(format!("hostd-tel-nopin-{}", std::process::id()));
        let e = show(&dir).expect_err("nothing pinned");
        assert!(matches!(e, Error::NotPinned(_)), "{e}");
        assert!(e.to_string().contains("no pinned telemetry maps in"), "{e}");
    }

    #[test]
    fn load_options_grow_for_many_subnets() {
        let mut spec = TelemetrySpec::default();
        assert_eq!(load_options(&spec, None).max_subnets, 1024);
        spec.subnets = (0..2000u32)
            .map(|i| {
                IpNet::new(std::net::Ipv4Addr::from(0x0a00_0000 + (i << 8)).into(), 24)
                    .expect("net")
            })
            .collect();
        let o = load_options(&spec, Some(Path::new("/sys/fs/bpf/x")));
        assert_eq!(o.max_subnets, 2000);
        assert_eq!(o.pin_dir.as_deref(), Some(Path::new("/sys/fs/bpf/x")));
    }
}
