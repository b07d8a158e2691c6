//! lldpd through `lldpcli`: reading neighbours (`-f json0 show neighbors
//! details`) and configuring what lldpd transmits for us (`configure ...`),
//! against a given control socket.
//!
//! Why `lldpcli` and not the control socket itself: lldpd's IPC is C
//! structures copied as they are, which changed between 1.0.14, 1.0.21 and
//! later; the one Rust client (`rlldpctl`) follows 1.0.21+, and Debian 12
//! ships 1.0.16. `lldpcli`'s `json0` output and its `configure` grammar are
//! stable across those versions.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Duration,
};

use hostd_core::{
    schema::{IfState, InterfaceType},
    status::lldp,
    types::IfName,
    NetworkState,
};

/// An `lldpcli` failure.
#[derive(Debug, thiserror::Error)]
pub enum LldpdError {
    /// lldpcli could not be started.
    #[error("cannot run {program}: {source}")]
    Spawn {
        /// The program.
        program: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// lldpcli failed (lldpd not running, socket missing, bad command).
    #[error("`{command}` failed ({status}): {stderr}")]
    Failed {
        /// The command line.
        command: String,
        /// Exit status.
        status: String,
        /// Its stderr, trimmed.
        stderr: String,
    },
    /// The output did not parse.
    #[error("lldpcli output: {0}")]
    Parse(#[from] lldp::LldpError),
    /// lldpd took the commands but does not announce what was asked
    /// (another client's configuration raced with them).
    #[error("lldpd does not announce what it was told: {}", .0.join("; "))]
    NotInEffect(Vec<String>),
    /// A value hostd was asked to announce cannot be passed to lldpd.
    #[error("{field}: {value:?}: {why}")]
    Invalid {
        /// Field path (`ports[1].description`).
        field: String,
        /// The value.
        value: String,
        /// Why.
        why: &'static str,
    },
}

/// How to reach lldpd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lldpcli {
    /// The `lldpcli` program.
    pub program: PathBuf,
    /// lldpd's control socket (`lldpcli -u`); `None`: lldpcli's default
    /// (`/run/lldpd.socket`).
    pub socket: Option<PathBuf>,
}

impl Default for Lldpcli {
    fn default() -> Self {
        Self {
            program: PathBuf::from("lldpcli"),
            socket: None,
        }
    }
}

/// What hostd announces about itself over LLDP.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Announce {
    /// System name (`configure system hostname`); `None` leaves lldpd's
    /// (the FQDN of `uname -n`).
    pub system_name: Option<String>,
    /// System description (`configure system description`).
    pub system_description: Option<String>,
    /// Send the interface name as port id (`configure lldp portidsubtype
    /// ifname`) rather than the MAC, so that the switch side (a Linux switch
    /// running hostd too) can match its intent by NIC name.
    pub port_id_ifname: bool,
    /// Transmit and receive on exactly these NICs (`configure system
    /// interface pattern`); `false` leaves lldpd's choice (every physical
    /// interface) and only configures the ports below.
    pub only_these_ports: bool,
    /// The NICs hostd manages, with the description to announce.
    pub ports: Vec<AnnouncePort>,
}

/// One NIC to announce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnnouncePort {
    /// The NIC.
    pub nic: IfName,
    /// Port description (`configure ports NIC lldp portdescription`).
    pub description: String,
}

impl Announce {
    /// The usual announcement: `hostname`, each managed NIC described as
    /// `"<hostname> <nic>"` plus `" (<bond>)"` when it is a bond member.
    pub fn managed(hostname: &str, nics: &[(IfName, Option<String>)]) -> Self {
        Self {
            system_name: Some(hostname.to_owned()),
            system_description: None,
            port_id_ifname: true,
            only_these_ports: true,
            ports: nics
                .iter()
                .map(|(nic, bond)| AnnouncePort {
                    nic: nic.clone(),
                    description: match bond {
                        Some(b) => format!("{hostname} {nic} ({b})"),
                        None => format!("{hostname} {nic}"),
                    },
                })
                .collect(),
        }
    }
}

/// The NICs a desired state manages (its ethernet interfaces, except those
/// it wants absent), each with the bond it is a port of: what the daemon
/// announces over LLDP. Sorted by name.
pub fn managed_nics(state: &NetworkState) -> Vec<(IfName, Option<String>)> {
    let mut out: Vec<(IfName, Option<String>)> = state
        .interfaces
        .iter()
        .filter(|i| i.kind == InterfaceType::Ethernet && i.state != IfState::Absent)
        .map(|nic| {
            let bond = state.interfaces.iter().find_map(|b| {
                b.link_aggregation
                    .as_ref()
                    .filter(|a| a.port.contains(&nic.name))
                    .map(|_| b.name.as_str().to_owned())
            });
            (nic.name.clone(), bond)
        })
        .collect();
    out.sort_by(|a, b| a.0.as_str().cmp(b.0.as_str()));
    out
}

fn check_text(field: String, value: &str) -> Result<(), LldpdError> {
    let why = if value.is_empty() {
        "must not be empty"
    } else if value.len() > 255 {
        "longer than an LLDP TLV (255 bytes)"
    } else if value.chars().any(char::is_control) {
        "contains a control character"
    } else {
        return Ok(());
    };
    Err(LldpdError::Invalid {
        field,
        value: value.to_owned(),
        why,
    })
}

/// How what lldpd announces (`lldpcli -f json0 show interfaces`, parsed
/// like neighbours: each local port with the chassis and port it
/// announces) differs from `a`; empty when it announces `a`.
pub fn announce_differences(a: &Announce, local: &lldp::Parsed) -> Vec<String> {
    let mut out = Vec::new();
    for p in &a.ports {
        let nic = p.nic.as_str();
        let Some(x) = local.on(nic).into_iter().next() else {
            out.push(format!("{nic}: not an lldpd port"));
            continue;
        };
        if let Some(name) = &a.system_name {
            if x.system_name.as_deref() != Some(name.as_str()) {
                out.push(format!(
                    "{nic}: system name {:?}, not {name:?}",
                    x.system_name.as_deref().unwrap_or("")
                ));
            }
        }
        if a.port_id_ifname
            && (x.port_id.subtype != hostd_core::status::IdSubtype::Ifname
                || x.port_id.value != nic)
        {
            out.push(format!(
                "{nic}: port id {} {:?}, not its name",
                x.port_id.subtype.as_str(),
                x.port_id.value
            ));
        }
        if x.port_description.as_deref() != Some(p.description.as_str()) {
            out.push(format!(
                "{nic}: port description {:?}, not {:?}",
                x.port_description.as_deref().unwrap_or(""),
                p.description
            ));
        }
    }
    out
}

/// The `lldpcli` commands (argv after the program and socket) that make
/// lldpd announce `a`. Pure: tested without lldpd.
pub fn announce_commands(a: &Announce) -> Result<Vec<Vec<String>>, LldpdError> {
    let v = |args: &[&str]| args.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    let mut cmds = Vec::new();
    if let Some(n) = &a.system_name {
        check_text("system-name".into(), n)?;
        cmds.push(v(&["configure", "system", "hostname", n]));
    }
    if let Some(d) = &a.system_description {
        check_text("system-description".into(), d)?;
        cmds.push(v(&["configure", "system", "description", d]));
    }
    if a.port_id_ifname {
        cmds.push(v(&["configure", "lldp", "portidsubtype", "ifname"]));
    }
    if a.only_these_ports {
        if a.ports.is_empty() {
            return Err(LldpdError::Invalid {
                field: "ports".into(),
                value: String::new(),
                why: "only-these-ports with no port would silence lldpd everywhere",
            });
        }
        let list: Vec<&str> = a.ports.iter().map(|p| p.nic.as_str()).collect();
        cmds.push(v(&[
            "configure",
            "system",
            "interface",
            "pattern",
            &list.join(","),
        ]));
    }
    for (i, p) in a.ports.iter().enumerate() {
        check_text(format!("ports[{i}].description"), &p.description)?;
        cmds.push(v(&[
            "configure",
            "ports",
            p.nic.as_str(),
            "lldp",
            "status",
            "rx-and-tx",
        ]));
        cmds.push(v(&[
            "configure",
            "ports",
            p.nic.as_str(),
            "lldp",
            "portdescription",
            &p.description,
        ]));
    }
    Ok(cmds)
}

impl Lldpcli {
    /// `lldpcli [-u SOCKET]` against `socket`.
    pub fn with_socket(socket: impl AsRef<Path>) -> Self {
        Self {
            socket: Some(socket.as_ref().to_owned()),
            ..Self::default()
        }
    }

    fn run(&self, args: &[String]) -> Result<String, LldpdError> {
        let mut c = Command::new(&self.program);
        if let Some(s) = &self.socket {
            c.arg("-u").arg(s);
        }
        c.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let out = c.output().map_err(|source| LldpdError::Spawn {
            program: self.program.display().to_string(),
            source,
        })?;
        if !out.status.success() {
            return Err(LldpdError::Failed {
                command: format!("{} {}", self.program.display(), args.join(" ")),
                status: out.status.to_string(),
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The neighbours lldpd knows, by local interface.
    pub fn neighbors(&self) -> Result<lldp::Parsed, LldpdError> {
        let args: Vec<String> = ["-f", "json0", "show", "neighbors", "details"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        let out = self.run(&args)?;
        Ok(lldp::parse(&out)?)
    }

    /// Configures lldpd to announce `a` (one `lldpcli` per command: the
    /// values go as argv, never through lldpcli's own tokenizer).
    pub fn announce(&self, a: &Announce) -> Result<(), LldpdError> {
        let cmds = announce_commands(a)?;
        for c in &cmds {
            tracing::info!(command = %c.join(" "), "lldpcli");
            self.run(c)?;
        }
        Ok(())
    }

    /// What lldpd announces on each of its ports (`-f json0 show
    /// interfaces`).
    pub fn local_ports(&self) -> Result<lldp::Parsed, LldpdError> {
        let args: Vec<String> = ["-f", "json0", "show", "interfaces"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        Ok(lldp::parse(&self.run(&args)?)?)
    }

    /// [`Lldpcli::announce`], then reads back what lldpd announces and
    /// does it again (after `pause`, up to `attempts` times) while it
    /// differs. lldpcli's `configure` is read-modify-write of lldpd's whole
    /// configuration: a client racing with it (lldpd's own `lldpcli -s`
    /// reading /etc/lldpd.d right after lldpd starts) can undo it.
    pub fn announce_verified(
        &self,
        a: &Announce,
        attempts: u32,
        pause: Duration,
    ) -> Result<u32, LldpdError> {
        let mut diffs = Vec::new();
        for attempt in 1..=attempts.max(1) {
            self.announce(a)?;
            diffs = announce_differences(a, &self.local_ports()?);
            if diffs.is_empty() {
                return Ok(attempt);
            }
            tracing::info!(attempt, differences = %diffs.join("; "), "lldpd does not announce what it was told yet");
            std::thread::sleep(pause);
        }
        Err(LldpdError::NotInEffect(diffs))
    }

    /// Waits up to `timeout` for lldpd to answer (after starting it).
    pub fn wait_ready(&self, timeout: Duration) -> Result<(), LldpdError> {
        let start = std::time::Instant::now();
        loop {
            let probe = ["show".to_owned(), "configuration".to_owned()];
            match self.run(&probe) {
                Ok(_) => return Ok(()),
                Err(e) if start.elapsed() >= timeout => return Err(e),
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nic(n: &str) -> IfName {
        IfName::new(n).unwrap()
    }

    #[test]
    fn managed_announcement_commands() {
        let a = Announce::managed(
            "srv1",
            &[(nic("eth0"), Some("bond0".into())), (nic("eth2"), None)],
        );
        let cmds: Vec<String> = announce_commands(&a)
            .unwrap()
            .iter()
            .map(|c| c.join(" "))
            .collect();
        assert_eq!(
            cmds,
            [
                "configure system hostname srv1",
                "configure lldp portidsubtype ifname",
                "configure system interface pattern eth0,eth2",
                "configure ports eth0 lldp status rx-and-tx",
                "configure ports eth0 lldp portdescription srv1 eth0 (bond0)",
                "configure ports eth2 lldp status rx-and-tx",
                "configure ports eth2 lldp portdescription srv1 eth2",
            ]
        );
        // The description stays one argument, spaces and all.
        let raw = announce_commands(&a).unwrap();
        assert_eq!(raw[4].last().unwrap(), "srv1 eth0 (bond0)");
    }

    #[test]
    fn managed_nics_of_a_document() {
        let state = NetworkState::parse(
            "interfaces:
  - { name: eth1, type: ethernet }
  - { name: eth0, type: ethernet }
  - { name: eth9, type: ethernet, state: absent }
  - { name: eth2, type: ethernet, state: down }
  - name: bond0
    type: bond
    link-aggregation: { mode: 802.3ad, port: [eth0, eth1] }
  - { name: bond0.10, type: vlan, vlan: { base-iface: bond0, id: 10 } }
",
        )
        .unwrap();
        let got: Vec<(String, Option<String>)> = managed_nics(&state)
            .into_iter()
            .map(|(n, b)| (n.as_str().to_owned(), b))
            .collect();
        assert_eq!(
            got,
            [
                ("eth0".to_owned(), Some("bond0".to_owned())),
                ("eth1".to_owned(), Some("bond0".to_owned())),
                ("eth2".to_owned(), None),
            ]
        );
    }

    #[test]
    fn what_lldpd_announces_compared_with_what_it_was_told() {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../core/tests/fixtures-status/json0-local-interfaces.json"
        ))
        .unwrap();
        let local = lldp::parse(&text).unwrap();
        let mut a = Announce::managed("srv1", &[(nic("eth0"), Some("bond0".into()))]);
        assert_eq!(announce_differences(&a, &local), Vec::<String>::new());
        // eth1 kept lldpd's default description (its name).
        a.ports.push(AnnouncePort {
            nic: nic("eth1"),
            description: "srv1 eth1".into(),
        });
        a.ports.push(AnnouncePort {
            nic: nic("eth7"),
            description: "srv1 eth7".into(),
        });
        a.system_name = Some("srv2".into());
        assert_eq!(
            announce_differences(&a, &local),
            [
                "eth0: system name \"srv1\", not \"srv2\"",
                "eth1: system name \"srv1\", not \"srv2\"",
                "eth1: port description \"eth1\", not \"srv1 eth1\"",
                "eth7: not an lldpd port",
            ]
        );
    }

    #[test]
    fn refuses_what_lldp_cannot_carry() {
        let mut a = Announce::managed("srv1", &[(nic("eth0"), None)]);
        a.ports[0].description = "two\nlines".into();
        let e = announce_commands(&a).unwrap_err().to_string();
        assert!(
            e.starts_with("ports[0].description: \"two\\nlines\""),
            "{e}"
        );
        a.ports[0].description = "x".repeat(256);
        assert!(announce_commands(&a).is_err());
        a.ports.clear();
        let e = announce_commands(&a).unwrap_err().to_string();
        assert!(e.contains("silence"), "{e}");
        a.only_these_ports = false;
        a.system_name = Some(String::new());
        let e = announce_commands(&a).unwrap_err().to_string();
        assert!(e.starts_with("system-name"), "{e}");
    }

    #[test]
    fn missing_lldpcli_is_a_spawn_error() {
        let l = Lldpcli {
            program: "/nonexistent/lldpcli".into(),
            socket: Some("/nonexistent.sock".into()),
        };
        let e = l.neighbors().unwrap_err();
        assert!(matches!(e, LldpdError::Spawn { .. }), "{e}");
    }
}
