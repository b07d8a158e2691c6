//! Golden fixtures of the intent compiler: one folder per case under
//! `tests/fixtures-intent/`, holding the inputs `intent.yaml` and
//! `inventory.yaml`, and the expected outputs:
//!
//! - `host.yaml`: the host's NetworkState (with a comment line for what it
//!   needs beyond the schema: a VLAN-aware bridge's own VLANs),
//! - `switch-intent.yaml`: the switch side per switch port,
//! - `linux-<hostname>.yaml`: each switch's NetworkState as hostd on a Linux
//!   switch applies it, and for an MLAG pair `linux-<a>+<b>.yaml`, both
//!   members in one namespace as the lab runs a pair,
//!   (`linux-<hostname>.error.txt` when that switch's ports are no Linux
//!   interface names),
//! - or `error.txt` when the inputs must be refused.
//!
//! Beyond the comparison, every produced state must validate, and hostd's
//! planner must bring a bare host (or switch: just its NICs) to it in steps
//! the kernel model accepts, and re-plan nothing after (the engine can apply
//! what the compiler emits).
//!
//! `HOSTD_BLESS=1 cargo test -p hostd-core --test intent_golden` rewrites
//! the expected files.

use std::{fs, path::Path};

use hostd_core::{
    intent::{compile, host_yaml, linux_switch, Intent, Inventory},
    model::Observed,
    ownership::Ownership,
    plan::plan,
    schema::{InterfaceType, NetworkState},
    sim::simulate,
    types::MacAddr,
    validate::validate,
};

fn read(dir: &Path, name: &str) -> Result<String, String> {
    fs::read_to_string(dir.join(name)).map_err(|e| format!("{name}: {e}"))
}

/// Compares `got` with `dir/name`, or writes it when blessing.
fn compare(dir: &Path, name: &str, got: &str, out: &mut Vec<String>) {
    let path = dir.join(name);
    if std::env::var_os("HOSTD_BLESS").is_some() {
        if let Err(e) = fs::write(&path, got) {
            out.push(format!("{name}: {e}"));
        }
        return;
    }
    match fs::read_to_string(&path) {
        Ok(want) if want == got => {}
        Ok(want) => out.push(format!(
            "{name} differs\n--- expected\n{want}--- got\n{got}"
        )),
        Err(e) => out.push(format!("{name}: {e}\n--- got\n{got}")),
    }
}

/// A bare machine holding `state`'s ethernet interfaces as veths.
fn bare(state: &NetworkState) -> Observed {
    // Built from YAML rather than struct literals: the observed model's
    // fields may grow, with defaults.
    let links: Vec<String> = state
        .interfaces
        .iter()
        .filter(|i| i.kind == InterfaceType::Ethernet)
        .enumerate()
        .map(|(k, i)| {
            let mac = i
                .mac_address
                .unwrap_or(MacAddr([0x02, 0x0f, 0, 0, 0, k as u8]));
            format!(
                "  - {{ name: {}, index: {}, kind: veth, mac: '{mac}', mtu: 1500, up: true }}\n",
                i.name,
                k + 2
            )
        })
        .collect();
    hostd_core::schema::from_yaml(&format!("links:\n{}", links.concat()))
        .expect("observed model of a bare machine")
}

/// The state validates, plans from a bare machine, the kernel model accepts
/// the plan, and re-planning after it plans nothing.
fn applies(what: &str, state: &NetworkState) -> Result<(), String> {
    validate(state).map_err(|e| format!("{what} does not validate: {e}"))?;
    let observed = bare(state);
    let own = Ownership::default();
    let p = plan(state, &observed, &own).map_err(|e| format!("{what}: plan: {e}"))?;
    let after = simulate(&observed, &p.ops)
        .map_err(|e| format!("{what}: the kernel model refuses the plan: {e}\n{p}"))?;
    let again = plan(state, &after, &own.after_apply(state, &p, &after))
        .map_err(|e| format!("{what}: second plan: {e}"))?;
    if !again.is_empty() {
        return Err(format!("{what} does not converge; second plan:\n{again}"));
    }
    Ok(())
}

fn run_case(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let intent = match read(dir, "intent.yaml")
        .and_then(|t| Intent::parse(&t).map_err(|e| format!("intent.yaml: {e}")))
    {
        Ok(i) => i,
        Err(e) => {
            compare(dir, "error.txt", &format!("{e}\n"), &mut out);
            return out;
        }
    };
    let inventory = match read(dir, "inventory.yaml")
        .and_then(|t| Inventory::parse(&t).map_err(|e| format!("inventory.yaml: {e}")))
    {
        Ok(i) => i,
        Err(e) => {
            compare(dir, "error.txt", &format!("{e}\n"), &mut out);
            return out;
        }
    };
    let compiled = match compile(&intent, &inventory) {
        Ok(c) => c,
        Err(e) => {
            compare(dir, "error.txt", &format!("{e}\n"), &mut out);
            return out;
        }
    };
    if dir.join("error.txt").exists() && std::env::var_os("HOSTD_BLESS").is_none() {
        out.push("error.txt expects a refusal, but the intent compiled".into());
    }
    match host_yaml(&compiled.host) {
        Ok(y) => compare(dir, "host.yaml", &y, &mut out),
        Err(e) => out.push(format!("host.yaml: {e}")),
    }
    match serde_norway::to_string(&compiled.switches) {
        Ok(y) => compare(dir, "switch-intent.yaml", &y, &mut out),
        Err(e) => out.push(format!("switch-intent.yaml: {e}")),
    }
    if let Err(e) = applies("host state", &compiled.host.state) {
        out.push(e);
    }
    // The host document parses back to the same state.
    match NetworkState::parse(&serde_norway::to_string(&compiled.host.state).unwrap_or_default()) {
        Ok(back) if back == compiled.host.state => {}
        Ok(_) => out.push("host state does not round-trip through YAML".into()),
        Err(e) => out.push(format!("host state does not parse back: {e}")),
    }
    let mut scopes: Vec<Vec<&str>> = compiled
        .switches
        .switches
        .iter()
        .map(|s| vec![s.hostname.as_str()])
        .collect();
    let pair: Vec<&str> = compiled
        .switches
        .switches
        .iter()
        .filter(|s| {
            s.ports
                .iter()
                .any(|p| p.lag.as_ref().is_some_and(|l| l.peer.is_some()))
        })
        .map(|s| s.hostname.as_str())
        .collect();
    if pair.len() == 2 {
        scopes.push(pair);
    }
    for scope in scopes {
        let name = format!("linux-{}.yaml", scope.join("+"));
        match linux_switch(
            &inventory.switches,
            &scope,
            std::slice::from_ref(&compiled.switches),
        ) {
            Ok(state) => {
                match serde_norway::to_string(&state) {
                    Ok(y) => compare(dir, &name, &y, &mut out),
                    Err(e) => out.push(format!("{name}: {e}")),
                }
                if let Err(e) = applies(&name, &state) {
                    out.push(e);
                }
            }
            // A switch that cannot run the Linux compile (a port name that
            // is no interface name) is a golden error too.
            Err(e) => compare(
                dir,
                &format!("linux-{}.error.txt", scope.join("+")),
                &format!("{e}\n"),
                &mut out,
            ),
        }
    }
    out
}

#[test]
fn intent_golden_fixtures() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures-intent");
    let mut dirs: Vec<_> = fs::read_dir(&root)
        .expect("fixtures-intent dir")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    assert!(
        dirs.len() >= 30,
        "expected the fixture cases, found {}",
        dirs.len()
    );
    let mut failures = Vec::new();
    for d in &dirs {
        let out = run_case(d);
        if !out.is_empty() {
            failures.push(format!(
                "== {}:\n{}",
                d.file_name().unwrap_or_default().to_string_lossy(),
                out.join("\n")
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        dirs.len(),
        failures.join("\n")
    );
}
