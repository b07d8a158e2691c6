//! The fabric service: compiles each server's connection intent with the
//! LLDP its agent reports (hostd_core::intent), gives the server its host
//! state, and configures the switches through a [`SwitchDriver`].
//!
//! `STATE/fabric.yaml`:
//!
//! ```yaml
//! confirm-within: 60          # commit-confirmed window of every push (s)
//! switches: [...]             # hostd_core::intent::SwitchFacts (hostnames, ports, MLAG, uplinks)
//! drivers:
//!   - hostnames: [sw1, sw2]   # one lab MLAG pair: one namespace, one agent
//!     driver: linux
//!     agent: rack1-sw         # the hostd agent running on the switch
//! ```

use std::collections::BTreeMap;

use hostd_core::intent::{self, Intent, Inventory, Nic, SwitchFacts, SwitchIntent};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// `fabric.yaml`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct FabricConfig {
    /// Commit-confirmed window for pushes.
    #[serde(default = "default_confirm")]
    pub confirm_within: u32,
    /// The switches' facts.
    #[serde(default)]
    pub switches: Vec<SwitchFacts>,
    /// Who configures which switches.
    #[serde(default)]
    pub drivers: Vec<DriverBinding>,
}

fn default_confirm() -> u32 {
    60
}

/// One group of switches and its driver.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct DriverBinding {
    /// The switches (one, or a lab pair in one namespace).
    pub hostnames: Vec<String>,
    /// `linux`.
    pub driver: String,
    /// Linux: the hostd agent on the switch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
}

/// What a driver wants done for a switch group.
#[derive(Debug, Clone, PartialEq)]
pub enum SwitchAction {
    /// Give this hostd agent this desired document (Linux switches).
    AgentDocument {
        /// The switch's agent.
        agent: String,
        /// A hostd document.
        document: String,
    },
    /// The driver configured the switch itself.
    Done,
}

/// A switch OS. Linux (hostd on the switch) is the one implemented; a
/// driver for another OS renders the same [`SwitchIntent`]s (LAG/MLAG id,
/// LACP mode, rate, port priority and fallback, VLANs, MTU, description)
/// into that OS's configuration and pushes it.
pub trait SwitchDriver: Send + Sync {
    /// The driver's name in `fabric.yaml`.
    fn name(&self) -> &'static str;
    /// Configures `binding`'s switches for every server cabled to them.
    fn configure(
        &self,
        facts: &[SwitchFacts],
        binding: &DriverBinding,
        servers: &[SwitchIntent],
    ) -> Result<SwitchAction, String>;
}

/// Linux switches (Cumulus/SONiC-like; the lab's switch namespaces): the
/// switch side becomes a hostd document (bond = LAG, VLAN-aware bridge =
/// VLAN table) for the hostd agent on the switch, applied commit-confirmed
/// like a server's.
#[derive(Debug, Default)]
pub struct LinuxDriver;

impl SwitchDriver for LinuxDriver {
    fn name(&self) -> &'static str {
        "linux"
    }
    fn configure(
        &self,
        facts: &[SwitchFacts],
        binding: &DriverBinding,
        servers: &[SwitchIntent],
    ) -> Result<SwitchAction, String> {
        let agent = binding.agent.clone().ok_or_else(|| {
            format!(
                "drivers[{:?}].agent: a Linux switch needs its hostd agent",
                binding.hostnames
            )
        })?;
        let names: Vec<&str> = binding.hostnames.iter().map(String::as_str).collect();
        let state = intent::linux_switch(facts, &names, servers).map_err(|e| e.to_string())?;
        let document = serde_norway::to_string(&state).map_err(|e| e.to_string())?;
        Ok(SwitchAction::AgentDocument { agent, document })
    }
}

/// The driver named `name`.
pub fn driver(name: &str) -> Option<Box<dyn SwitchDriver>> {
    match name {
        "linux" => Some(Box::new(LinuxDriver)),
        _ => None,
    }
}

/// NICs from an agent's inventory report (`{"nics": [...]}` of
/// hostd_core::intent::Nic).
pub fn nics_of(inventory: &Value) -> Result<Vec<Nic>, String> {
    serde_json::from_value(inventory.get("nics").cloned().unwrap_or(Value::Null))
        .map_err(|e| format!("inventory.nics: {e}"))
}

/// The result of one server's compile.
#[derive(Debug, Clone)]
pub struct ServerResult {
    /// The host document, when it compiled.
    pub document: Option<String>,
    /// Its switch side.
    pub switch_side: Option<SwitchIntent>,
    /// For the record: `{"ok": bool, "errors": [...]}`.
    pub report: Value,
}

/// Compiles one server.
pub fn compile_server(cfg: &FabricConfig, intent_text: &str, inventory: &Value) -> ServerResult {
    let fail = |errors: Vec<Value>| ServerResult {
        document: None,
        switch_side: None,
        report: json!({ "ok": false, "errors": errors }),
    };
    let intent = match Intent::parse(intent_text) {
        Ok(i) => i,
        Err(e) => return fail(vec![json!({ "path": "intent", "reason": e.to_string() })]),
    };
    let nics = match nics_of(inventory) {
        Ok(n) => n,
        Err(e) => return fail(vec![json!({ "path": "inventory.nics", "reason": e })]),
    };
    let inv = Inventory {
        nics,
        switches: cfg.switches.clone(),
    };
    match intent::compile(&intent, &inv) {
        Ok(c) => match serde_norway::to_string(&c.host.state) {
            Ok(doc) => ServerResult {
                document: Some(doc),
                switch_side: Some(c.switches.clone()),
                report: json!({ "ok": true, "switch-side": c.switches }),
            },
            Err(e) => fail(vec![json!({ "path": ".", "reason": e.to_string() })]),
        },
        Err(errs) => fail(
            errs.0
                .iter()
                .map(|e| json!({ "path": e.path, "value": e.value, "reason": e.reason }))
                .collect(),
        ),
    }
}

/// Every switch group's action for the servers compiled so far.
pub fn switch_actions(
    cfg: &FabricConfig,
    sides: &BTreeMap<String, SwitchIntent>,
) -> Vec<(DriverBinding, Result<SwitchAction, String>)> {
    cfg.drivers
        .iter()
        .map(|b| {
            let on: Vec<SwitchIntent> = sides
                .values()
                .filter(|s| s.switches.iter().any(|p| b.hostnames.contains(&p.hostname)))
                .cloned()
                .collect();
            let r = match driver(&b.driver) {
                Some(d) => d.configure(&cfg.switches, b, &on),
                None => Err(format!(
                    "driver {:?}: unknown (implemented: linux)",
                    b.driver
                )),
            };
            (b.clone(), r)
        })
        .collect()
}
