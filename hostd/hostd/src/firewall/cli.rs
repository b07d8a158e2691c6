//! `hostd firewall show|apply|disable`: the subcommand and its text output,
//! mounted by [`crate::cli`] as `Command::Firewall` and run with
//! [`run`]`(&cmd, &Nft::default(), &mut stdout)`.

use std::{io::Write, path::PathBuf};

use hostd_core::firewall::{render, FirewallSpec, TableState};

use super::{
    apply_with, disable, planned_script, read_current, show, Applied, ApplyOptions, Error, Nft,
};

/// `hostd firewall ...`
#[derive(Debug, Clone, clap::Subcommand)]
pub enum FirewallCmd {
    /// Show hostd's table: rules by spec index and comment, with counters,
    /// and whatever was changed in it by hand.
    Show {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Validate a spec and apply it in one atomic transaction.
    Apply {
        /// YAML or JSON: a whole desired state (its `firewall:` key) or the
        /// firewall section alone.
        file: PathBuf,
        /// Validate and print the nft transaction instead of sending it.
        #[arg(long)]
        dry_run: bool,
        /// Send the rules even when the table already holds them (counters
        /// restart). A table modified by hand is rewritten without it.
        #[arg(long)]
        force: bool,
    },
    /// Remove hostd's table (and nothing else).
    Disable,
}

/// Errors of the CLI pieces.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Applying, reading or removing failed.
    #[error(transparent)]
    Firewall(#[from] Error),
    /// The spec file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Writing the output failed.
    #[error("writing output: {0}")]
    Output(#[from] std::io::Error),
}

/// Runs one `hostd firewall` subcommand, writing its report to `out`.
pub fn run(cmd: &FirewallCmd, nft: &Nft, out: &mut impl Write) -> Result<(), CliError> {
    match cmd {
        FirewallCmd::Show { json } => {
            let st = show(nft)?;
            if *json {
                writeln!(out, "{}", show_json(st.as_ref()))?;
            } else {
                write!(out, "{}", show_text(st.as_ref()))?;
            }
        }
        FirewallCmd::Apply {
            file,
            dry_run,
            force,
        } => {
            let text = std::fs::read_to_string(file).map_err(|source| CliError::Read {
                path: file.clone(),
                source,
            })?;
            let spec = FirewallSpec::from_document(&text).map_err(Error::from)?;
            if *dry_run {
                let script = match render(&spec) {
                    None => Some(hostd_core::firewall::remove_script()),
                    Some(rs) => {
                        let cur = read_current(nft)?;
                        for e in cur.hand_edits(&rs) {
                            writeln!(out, "# modified by hand: {e}")?;
                        }
                        planned_script(&rs, &cur, *force)
                    }
                };
                match script {
                    Some(s) => write!(out, "{s}")?,
                    None => writeln!(out, "# unchanged: the kernel already holds this ruleset")?,
                }
                return Ok(());
            }
            let applied = apply_with(
                nft,
                &spec,
                ApplyOptions {
                    force_replace: *force,
                    ..ApplyOptions::default()
                },
            )?;
            writeln!(out, "{}", applied_text(&applied))?;
        }
        FirewallCmd::Disable => {
            disable(nft)?;
            writeln!(
                out,
                "firewall disabled: table inet hostd removed (nothing else touched)"
            )?;
        }
    }
    Ok(())
}

/// One line describing what [`apply_with`] did.
pub fn applied_text(a: &Applied) -> String {
    match a {
        Applied::Unchanged => {
            "firewall unchanged (kernel already holds this ruleset; counters kept)".to_owned()
        }
        Applied::Changed {
            how,
            sets_loaded,
            elements_loaded,
            transaction,
            hand_edits,
        } => {
            let mut s = if *how == "elements" {
                format!(
                    "firewall lists changed in place (one transaction in {:.1} ms; {sets_loaded} sets, {elements_loaded} interval elements deleted or added)",
                    transaction.as_secs_f64() * 1e3
                )
            } else {
                format!(
                    "firewall applied ({how}, one transaction in {:.1} ms; {sets_loaded} sets / {elements_loaded} CIDRs loaded)",
                    transaction.as_secs_f64() * 1e3
                )
            };
            if !hand_edits.is_empty() {
                s.push_str(&format!(
                    "; table inet hostd had been modified by hand, now undone ({} difference(s)):",
                    hand_edits.len()
                ));
                for e in hand_edits {
                    s.push_str(&format!("\n  {e}"));
                }
            }
            s
        }
        Applied::Removed => "firewall disabled: table inet hostd removed".to_owned(),
    }
}

/// The table printed by `hostd firewall show`.
pub fn show_text(st: Option<&TableState>) -> String {
    let Some(st) = st else {
        return "firewall: not installed (no table inet hostd)\n".to_owned();
    };
    let mut s = String::new();
    let policies: Vec<String> = st
        .chains
        .iter()
        .map(|(c, p)| format!("{c} policy {p}"))
        .collect();
    s.push_str(&format!(
        "firewall: table inet hostd ({}), fingerprint {}\n",
        policies.join(", "),
        st.fingerprint.as_deref().unwrap_or("none")
    ));
    if st.drift.is_empty() {
        s.push_str("as hostd wrote it (checked against its fingerprint)\n");
    } else {
        s.push_str(&format!(
            "MODIFIED BY HAND ({} difference(s); the next `hostd firewall apply` or `hostd apply` rewrites it):\n",
            st.drift.len()
        ));
        for d in &st.drift {
            s.push_str(&format!("  {d}\n"));
        }
    }
    s.push_str(&format!(
        "{:<7} {:<22} {:>12} {:>14}  {}\n",
        "CHAIN", "RULE", "PACKETS", "BYTES", "COMMENT"
    ));
    for r in st.rows() {
        s.push_str(&format!(
            "{:<7} {:<22} {:>12} {:>14}  {}\n",
            r.chain,
            r.what,
            r.packets,
            r.bytes,
            r.comment.as_deref().unwrap_or("")
        ));
    }
    if !st.sets.is_empty() {
        let names: Vec<&str> = st.sets.iter().map(|(n, _)| n.as_str()).collect();
        s.push_str(&format!("sets: {}\n", names.join(", ")));
    }
    if !st.unused_sets.is_empty() {
        s.push_str(&format!(
            "unused sets (no effect on packets; deleted by the next change): {}\n",
            st.unused_sets.join(", ")
        ));
    }
    s
}

/// `hostd firewall show --json`: `{"installed": bool, "fingerprint",
/// "modified": bool, "hand_edits": [...], "rows": [...]}`.
pub fn show_json(st: Option<&TableState>) -> serde_json::Value {
    match st {
        None => serde_json::json!({ "installed": false, "rows": [] }),
        Some(st) => serde_json::json!({
            "installed": true,
            "fingerprint": st.fingerprint,
            "modified": !st.drift.is_empty(),
            "hand_edits": st.drift.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "unused_sets": st.unused_sets,
            "chains": st.chains.iter().map(|(c, p)| serde_json::json!({"name": c, "policy": p})).collect::<Vec<_>>(),
            "rows": st.rows().iter().map(|r| serde_json::json!({
                "chain": r.chain,
                "rule": r.what,
                "comment": r.comment,
                "packets": r.packets,
                "bytes": r.bytes,
            })).collect::<Vec<_>>(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use hostd_core::firewall::{Drift, RuleCounter, RuleTag};

    use super::*;

    fn state() -> TableState {
        let rc = |chain: &str, tag: RuleTag, comment: Option<&str>, packets, bytes| RuleCounter {
            chain: chain.into(),
            handle: 0,
            tag: Some(tag),
            comment: comment.map(Into::into),
            packets,
            bytes,
        };
        TableState {
            rules: vec![
                rc(
                    "input",
                    RuleTag::Default("established".into()),
                    None,
                    10,
                    1000,
                ),
                rc("input", RuleTag::Management("v4".into()), None, 1, 60),
                rc("input", RuleTag::Management("v6".into()), None, 2, 80),
                rc(
                    "input",
                    RuleTag::User {
                        index: 0,
                        variant: "v4".into(),
                    },
                    Some("web"),
                    3,
                    180,
                ),
                rc(
                    "input",
                    RuleTag::User {
                        index: 0,
                        variant: "v6".into(),
                    },
                    Some("web"),
                    2,
                    160,
                ),
                rc(
                    "input",
                    RuleTag::User {
                        index: 1,
                        variant: String::new(),
                    },
                    None,
                    7,
                    420,
                ),
                rc("input", RuleTag::Default("policy".into()), None, 4, 240),
            ],
            sets: vec![("r0_src4_0011".into(), 0)],
            chains: vec![("input".into(), "drop".into())],
            fingerprint: Some("00112233aabbccdd".into()),
            drift: Vec::new(),
            unused_sets: Vec::new(),
        }
    }

    #[test]
    fn show_text_sums_variants_per_spec_rule() {
        let t = show_text(Some(&state()));
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(
            lines[0],
            "firewall: table inet hostd (input policy drop), fingerprint 00112233aabbccdd"
        );
        assert_eq!(
            lines[1],
            "as hostd wrote it (checked against its fingerprint)"
        );
        assert!(lines[2].starts_with("CHAIN"));
        let row = |what: &str| {
            lines
                .iter()
                .find(|l| l.split_whitespace().nth(1) == Some(what))
                .copied()
                .unwrap_or_default()
        };
        assert_eq!(
            row("rules[0]").split_whitespace().collect::<Vec<_>>(),
            ["input", "rules[0]", "5", "340", "web"]
        );
        assert_eq!(
            row("mgmt").split_whitespace().collect::<Vec<_>>(),
            ["input", "mgmt", "3", "140"]
        );
        assert_eq!(
            row("rules[1]").split_whitespace().collect::<Vec<_>>(),
            ["input", "rules[1]", "7", "420"]
        );
        assert!(t.ends_with("sets: r0_src4_0011\n"));
        assert_eq!(
            show_text(None),
            "firewall: not installed (no table inet hostd)\n"
        );
    }

    #[test]
    fn show_reports_hand_edits() {
        let mut st = state();
        st.drift = vec![
            Drift::ExtraRule {
                chain: "input".into(),
                handle: Some(42),
                rule: "`tcp dport 23 accept`".into(),
            },
            Drift::ChainBase {
                chain: "input".into(),
                now: "policy accept".into(),
                expected: "policy drop".into(),
            },
        ];
        st.unused_sets = vec!["r9_src4_00000000".into()];
        let t = show_text(Some(&st));
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(
            lines[1],
            "MODIFIED BY HAND (2 difference(s); the next `hostd firewall apply` or `hostd apply` rewrites it):"
        );
        assert_eq!(
            lines[2],
            "  chain input: rule (handle 42) `tcp dport 23 accept` was not rendered by hostd (added by hand)"
        );
        assert_eq!(
            lines[3],
            "  chain input: policy accept, hostd rendered policy drop"
        );
        assert!(t.ends_with(
            "unused sets (no effect on packets; deleted by the next change): r9_src4_00000000\n"
        ));
        let j = show_json(Some(&st));
        assert_eq!(j["modified"], true);
        assert_eq!(j["hand_edits"].as_array().map(Vec::len), Some(2));
        assert_eq!(show_json(Some(&state()))["modified"], false);
    }

    #[test]
    fn show_json_rows() {
        let j = show_json(Some(&state()));
        assert_eq!(j["installed"], true);
        let rows = j["rows"].as_array().expect("rows");
        assert_eq!(rows.len(), 5);
        assert_eq!(rows[2]["rule"], "rules[0]");
        assert_eq!(rows[2]["packets"], 5);
        assert_eq!(show_json(None)["installed"], false);
    }

    #[test]
    fn applied_text_lines() {
        assert!(applied_text(&Applied::Unchanged).contains("unchanged"));
        let a = Applied::Changed {
            how: "update",
            sets_loaded: 1,
            elements_loaded: 10_000,
            transaction: std::time::Duration::from_micros(12_345),
            hand_edits: Vec::new(),
        };
        assert_eq!(
            applied_text(&a),
            "firewall applied (update, one transaction in 12.3 ms; 1 sets / 10000 CIDRs loaded)"
        );
        let repaired = Applied::Changed {
            how: "replace",
            sets_loaded: 0,
            elements_loaded: 0,
            transaction: std::time::Duration::from_micros(2_000),
            hand_edits: vec!["set r0_src4_x: elements changed by hand; added 10.0.0.0/8".into()],
        };
        assert_eq!(
            applied_text(&repaired),
            "firewall applied (replace, one transaction in 2.0 ms; 0 sets / 0 CIDRs loaded); \
             table inet hostd had been modified by hand, now undone (1 difference(s)):\n  \
             set r0_src4_x: elements changed by hand; added 10.0.0.0/8"
        );
    }

    #[test]
    fn apply_with_invalid_file_touches_nothing() {
        // A program that would fail if it were ever run: validation must stop first.
        let nft = Nft::with_program("/nonexistent/nft-must-not-run");
        let dir = std::env::temp_dir().join(format!("hostd-fw-cli-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("tmp dir");
        let file = dir.join("bad.yaml");
        std::fs::write(
            &file,
            "management: { controllers: [192.0.2.1], channel_port: 7443 }\nrules:\n  - { action: accept, protocol: tcp, ports: [\"9-1\"] }\n",
        )
        .expect("write");
        let mut out = Vec::new();
        let e = run(
            &FirewallCmd::Apply {
                file: file.clone(),
                dry_run: false,
                force: false,
            },
            &nft,
            &mut out,
        )
        .expect_err("invalid");
        let msg = e.to_string();
        assert!(
            msg.contains("firewall.rules[0].ports[0]: \"9-1\" is a reversed port range"),
            "{msg}"
        );
        assert!(out.is_empty());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
