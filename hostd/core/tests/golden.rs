//! Golden planner fixtures: one folder per case under `tests/fixtures/`,
//! holding `observed.yaml` (the kernel), `desired.yaml` (or a `teardown`
//! marker, or `before.yaml` with `sent.yaml`, the operations the kernel
//! acknowledged, for a rollback), optionally `ownership.yaml`, and
//! the expected `plan.txt` (the printed plan, or `error: ...`).
//!
//! Every successful plan is also run through the kernel model
//! ([`hostd_core::sim`]), which must accept each step, and re-planned against
//! the result, which must plan nothing (convergence, idempotence).
//!
//! `HOSTD_BLESS=1 cargo test -p hostd-core --test golden` rewrites plan.txt.

use std::{fs, path::Path};

use hostd_core::{
    model::Observed,
    ownership::Ownership,
    plan::{plan, plan_rollback, plan_teardown},
    schema::{from_yaml, NetworkState},
    sim::simulate,
};

fn read(dir: &Path, name: &str) -> Option<String> {
    fs::read_to_string(dir.join(name)).ok()
}

fn run_case(dir: &Path) -> Result<(), String> {
    let observed: Observed = from_yaml(&read(dir, "observed.yaml").ok_or("observed.yaml missing")?)
        .map_err(|e| format!("observed.yaml: {e}"))?;
    let own: Ownership = match read(dir, "ownership.yaml") {
        Some(t) => from_yaml(&t).map_err(|e| format!("ownership.yaml: {e}"))?,
        None => Ownership::default(),
    };
    enum Kind {
        Apply(NetworkState),
        Teardown,
        Rollback(Observed, Vec<hostd_core::plan::Op>),
    }
    let kind = if dir.join("teardown").exists() {
        Kind::Teardown
    } else if let Some(b) = read(dir, "before.yaml") {
        let sent: hostd_core::Plan =
            from_yaml(&read(dir, "sent.yaml").ok_or("sent.yaml missing (the acked operations)")?)
                .map_err(|e| format!("sent.yaml: {e}"))?;
        Kind::Rollback(
            from_yaml(&b).map_err(|e| format!("before.yaml: {e}"))?,
            sent.ops,
        )
    } else {
        let text = read(dir, "desired.yaml").ok_or("desired.yaml missing")?;
        match NetworkState::parse(&text) {
            Ok(d) => Kind::Apply(d),
            Err(e) => return compare(dir, &format!("error: {e}\n")),
        }
    };
    let result = match &kind {
        Kind::Apply(d) => plan(d, &observed, &own),
        Kind::Teardown => plan_teardown(&observed, &own),
        Kind::Rollback(before, sent) => plan_rollback(before, &observed, sent),
    };
    let p = match result {
        Ok(p) => p,
        Err(e) => return compare(dir, &format!("error: {e}\n")),
    };
    compare(dir, &p.to_string())?;
    // JSON form round-trips.
    let json = serde_json::to_string(&p).map_err(|e| e.to_string())?;
    let back: hostd_core::Plan =
        serde_json::from_str(&json).map_err(|e| format!("plan JSON: {e}"))?;
    if back != p {
        return Err("plan JSON does not round-trip".into());
    }
    // The kernel model accepts every step, and the result re-plans to nothing.
    let after =
        simulate(&observed, &p.ops).map_err(|e| format!("kernel model refuses the plan: {e}"))?;
    let again = match &kind {
        Kind::Apply(d) => {
            plan(d, &after, &own.after_apply(d, &p, &after)).map_err(|e| e.to_string())?
        }
        Kind::Teardown => plan_teardown(&after, &own).map_err(|e| e.to_string())?,
        Kind::Rollback(before, sent) => {
            plan_rollback(before, &after, sent).map_err(|e| e.to_string())?
        }
    };
    if !again.is_empty() {
        return Err(format!("does not converge; second plan:\n{again}"));
    }
    Ok(())
}

fn compare(dir: &Path, got: &str) -> Result<(), String> {
    let path = dir.join("plan.txt");
    if std::env::var_os("HOSTD_BLESS").is_some() {
        fs::write(&path, got).map_err(|e| e.to_string())?;
        return Ok(());
    }
    let want = fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    if want != got {
        return Err(format!("plan differs\n--- expected\n{want}--- got\n{got}"));
    }
    Ok(())
}

#[test]
fn golden_fixtures() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut dirs: Vec<_> = fs::read_dir(&root)
        .expect("fixtures dir")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
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
