//! Golden OVS planner fixtures: one folder per case under
//! `tests/fixtures-ovs/`, holding `observed.yaml` (OVSDB rows),
//! `desired.yaml` (an `OvsState`) or a `teardown` marker, and the expected
//! `plan.txt` (the printed plan, or `error: ...`) and `rollback.txt` (the
//! rollback plan after the whole plan).
//!
//! Every successful plan is also checked for:
//! - a JSON round trip;
//! - convergence: applied (pure simulation of OVSDB), it re-plans to nothing;
//! - rollback at every step: after the first k steps (k = 0..=all), the
//!   rollback plan for the rows those steps touched restores the
//!   observation exactly (every managed column and reference).
//!
//! `HOSTD_BLESS=1 cargo test -p hostd-core --test ovs_golden` rewrites the
//! expected files.

use std::{fs, path::Path};

use hostd_core::ovs::{
    plan_ovs, plan_ovs_rollback, plan_ovs_teardown, simulate, OvsObserved, OvsPlan, OvsState,
};

fn read(dir: &Path, name: &str) -> Option<String> {
    fs::read_to_string(dir.join(name)).ok()
}

fn compare(dir: &Path, file: &str, got: &str) -> Result<(), String> {
    let path = dir.join(file);
    if std::env::var_os("HOSTD_BLESS").is_some() {
        fs::write(&path, got).map_err(|e| e.to_string())?;
        return Ok(());
    }
    let want = fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    if want != got {
        return Err(format!(
            "{file} differs\n--- expected\n{want}--- got\n{got}"
        ));
    }
    Ok(())
}

fn run_case(dir: &Path) -> Result<(), String> {
    let observed: OvsObserved =
        hostd_core::schema::from_yaml(&read(dir, "observed.yaml").ok_or("observed.yaml missing")?)
            .map_err(|e| format!("observed.yaml: {e}"))?;
    let teardown = dir.join("teardown").exists();
    let desired = if teardown {
        None
    } else {
        let text = read(dir, "desired.yaml").ok_or("desired.yaml missing")?;
        match OvsState::parse(&text) {
            Ok(d) => Some(d),
            Err(e) => return compare(dir, "plan.txt", &format!("error: {e}\n")),
        }
    };
    let replan = |o: &OvsObserved| match &desired {
        Some(d) => plan_ovs(d, o),
        None => plan_ovs_teardown(o),
    };
    let plan = match replan(&observed) {
        Ok(p) => p,
        Err(e) => return compare(dir, "plan.txt", &format!("error: {e}\n")),
    };
    compare(dir, "plan.txt", &plan.to_string())?;
    let json = serde_json::to_string(&plan).map_err(|e| e.to_string())?;
    let back: OvsPlan = serde_json::from_str(&json).map_err(|e| format!("plan JSON: {e}"))?;
    if back != plan {
        return Err("plan JSON does not round-trip".into());
    }
    let after = simulate(&observed, &plan);
    let again = replan(&after).map_err(|e| format!("re-plan: {e}"))?;
    if !again.is_empty() {
        return Err(format!("does not converge; second plan:\n{again}"));
    }
    for k in 0..=plan.steps.len() {
        let prefix = OvsPlan {
            steps: plan.steps[..k].to_vec(),
        };
        let mid = simulate(&observed, &prefix);
        let rb = plan_ovs_rollback(&observed, &mid, &plan.touched_by(k))
            .map_err(|e| format!("rollback after {k} steps: {e}"))?;
        let restored = simulate(&mid, &rb);
        if restored.config_view() != observed.config_view() {
            return Err(format!(
                "rollback after {k} step(s) does not restore the observation\nrollback:\n{rb}\nrestored:\n{}",
                serde_norway::to_string(&restored).unwrap_or_default()
            ));
        }
        if k == plan.steps.len() {
            compare(dir, "rollback.txt", &rb.to_string())?;
        }
    }
    Ok(())
}

#[test]
fn ovs_golden_fixtures() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures-ovs");
    let mut dirs: Vec<_> = fs::read_dir(&root)
        .expect("fixtures dir")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir() && p.join("observed.yaml").exists())
        .collect();
    dirs.sort();
    assert!(
        dirs.len() >= 10,
        "expected the fixture cases, found {}",
        dirs.len()
    );
    let mut failures = Vec::new();
    for d in &dirs {
        if let Err(e) = run_case(d) {
            failures.push(format!(
                "== {}: {e}",
                d.file_name().unwrap_or_default().to_string_lossy()
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
