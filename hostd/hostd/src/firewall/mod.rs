//! The InstanceArray firewall, side-effecting part: applies the table
//! rendered by [`hostd_core::firewall`] through the `nft` binary, in one
//! atomic transaction that touches only hostd's table (`inet hostd`); reads
//! its counters back; removes it when the firewall is disabled.
//!
//! Every change is one `nft -f -` batch, which the kernel commits whole or
//! not at all: packets see the old rules or the new ones, never a moment
//! without rules. Other tables (Docker's, libvirt's, the operator's) are
//! never named in any command hostd sends.
//!
//! Hand edits inside hostd's table are found on every read
//! ([`read_current`], [`show`]): the table is checked against the
//! fingerprint and chain hashes hostd recorded in it and each set against
//! the content hash in its name ([`Model::check`]), and an apply whose
//! ruleset is unchanged but finds the table edited rewrites it
//! ([`Applied::Changed::hand_edits`]).
//!
//! Commands run in the caller's network namespace: a thread that entered a
//! namespace (`setns(2)`) applies the firewall of that namespace.

pub mod cli;
pub mod netlink;

use std::{
    collections::BTreeMap,
    ffi::OsString,
    io::Write as _,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use hostd_core::firewall::{
    fresh_names, parse_listing, plan_element_update, remove_script, render, Current, ElementUpdate,
    FirewallError, FirewallSpec, IntervalElement, ListingError, Model, NamedSet, Ruleset,
    TableState,
};
use tracing::{debug, info, instrument, warn};

/// How to run `nft`.
#[derive(Debug, Clone)]
pub struct Nft {
    program: OsString,
}

impl Default for Nft {
    fn default() -> Self {
        Self {
            program: "nft".into(),
        }
    }
}

/// Why the firewall could not be applied, read or removed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The spec is invalid; nothing was touched.
    #[error("invalid firewall spec, nothing applied: {0}")]
    Invalid(#[from] FirewallError),
    /// `nft` could not be started.
    #[error("cannot run {program}: {source}")]
    Spawn {
        /// The program.
        program: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// `nft` refused a command. For a transaction this means nothing changed.
    #[error("nft {what} failed ({status}): {stderr}")]
    Nft {
        /// What hostd asked (`update transaction`, `list ruleset`).
        what: &'static str,
        /// Exit status.
        status: String,
        /// nft's message.
        stderr: String,
    },
    /// `nft -j` printed something hostd cannot read.
    #[error(transparent)]
    Listing(#[from] ListingError),
    /// The elements of hostd's sets could not be read over netlink.
    #[error("reading the elements of hostd's sets: {0}")]
    Elements(#[source] netlink::LoadError),
    /// The transaction succeeded but the table does not hold what was sent.
    #[error("after apply, hostd's table holds fingerprint {found:?}, expected {expected}{}", differences(.drift))]
    Verify {
        /// Fingerprint of the ruleset sent.
        expected: String,
        /// Fingerprint found in the kernel.
        found: Option<String>,
        /// How the table differs from what was sent.
        drift: Vec<String>,
    },
}

fn differences(d: &[String]) -> String {
    if d.is_empty() {
        String::new()
    } else {
        format!(": {}", d.join("; "))
    }
}

/// What [`apply`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// The kernel already held this ruleset (same fingerprint): nothing sent,
    /// counters kept.
    Unchanged,
    /// The table was created or updated in one transaction.
    Changed {
        /// `elements` (lists changed in place), `update` (unchanged sets
        /// kept) or `replace` (whole table recreated).
        how: &'static str,
        /// Named sets loaded by this transaction (changed, for `elements`).
        sets_loaded: usize,
        /// Set elements loaded by this transaction (interval elements
        /// deleted plus added, for `elements`).
        elements_loaded: usize,
        /// Time spent changing the kernel: loading new sets over netlink
        /// plus the nft transaction (reading and verifying excluded).
        transaction: Duration,
        /// Hand edits found in hostd's table and undone by this apply (one
        /// line each); empty when the table was as hostd wrote it.
        hand_edits: Vec<String>,
    },
    /// The firewall is disabled and hostd's table was removed (or absent).
    Removed,
}

/// Options of [`apply_with`].
#[derive(Debug, Clone, Copy, Default)]
pub struct ApplyOptions {
    /// Send the ruleset even when the kernel's fingerprint matches.
    pub force_replace: bool,
    /// Never change a list in place: a changed list is loaded as a new set
    /// and the rules switch to it (the path before in-place updates; kept
    /// so that the benchmark measures both).
    pub whole_sets: bool,
}

impl Nft {
    /// Runs `program` instead of `nft` (e.g. an absolute path).
    pub fn with_program(program: impl Into<OsString>) -> Self {
        Self {
            program: program.into(),
        }
    }

    fn run(&self, args: &[&str], stdin: Option<&str>, what: &'static str) -> Result<String, Error> {
        let spawn_err = |source| Error::Spawn {
            program: self.program.to_string_lossy().into_owned(),
            source,
        };
        let mut child = Command::new(&self.program)
            .args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(spawn_err)?;
        if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
            // A write error (nft exited early) shows up in nft's status below.
            let _ = pipe.write_all(text.as_bytes());
        }
        let out = child.wait_with_output().map_err(spawn_err)?;
        if !out.status.success() {
            return Err(Error::Nft {
                what,
                status: out.status.to_string(),
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Sends `script` as one transaction (`nft -f -`).
    pub fn transaction(&self, script: &str, what: &'static str) -> Result<(), Error> {
        self.run(&["-f", "-"], Some(script), what).map(drop)
    }

    /// `nft list table inet hostd`: hostd's table in nft syntax, with set
    /// elements (re-loadable with `nft -f`).
    pub fn list_table(&self) -> Result<String, Error> {
        self.run(
            &[
                "list",
                "table",
                hostd_core::firewall::FAMILY,
                hostd_core::firewall::TABLE,
            ],
            None,
            "list table",
        )
    }

    /// `nft -j -t list ruleset`: every table, rules with counters, sets
    /// without their elements (fast whatever the set sizes).
    pub fn list_terse(&self) -> Result<String, Error> {
        self.run(&["-j", "-t", "list", "ruleset"], None, "list ruleset")
    }
}

/// hostd's table as a [`Model`] from a terse listing, with the elements of
/// its sets read over netlink. With `trusted`, the elements of its sets are
/// taken from it, and sets no rule uses (which a later apply may reuse, so a
/// full read checks them too) are not read.
fn model_of(json: &str, trusted: Option<&Model>) -> Result<Model, Error> {
    model_and_elements(json, trusted).map(|(m, _)| m)
}

/// [`model_of`], plus the raw elements it dumped, by set name.
fn model_and_elements(
    json: &str,
    trusted: Option<&Model>,
) -> Result<(Model, BTreeMap<String, Vec<IntervalElement>>), Error> {
    let mut model = Model::from_listing(json)?;
    let used = model.referenced_sets();
    let names: Vec<String> = model
        .sets
        .keys()
        .filter(|n| match trusted {
            Some(t) => used.contains(*n) && !t.sets.contains_key(*n),
            None => true,
        })
        .cloned()
        .collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let elements = netlink::dump_elements(&names).map_err(Error::Elements)?;
    for (name, els) in &elements {
        model.set_interval_elements(name, els);
    }
    if let Some(t) = trusted {
        for (name, set) in &t.sets {
            if let Some(s) = model.sets.get_mut(name) {
                s.elements.clone_from(&set.elements);
            }
        }
    }
    Ok((model, elements))
}

/// The read after an apply's transaction: the sets of `rs` are not dumped
/// again, as this apply either loaded them or found them holding exactly
/// their elements just before ([`Current::stale_reused_sets`]). The
/// fingerprint, the chains, the rules and every other set are read.
fn read_after(nft: &Nft, rs: &Ruleset) -> Result<Current, Error> {
    let json = nft.list_terse()?;
    Ok(Current::from_model(model_of(&json, Some(&rs.model()))?))
}

/// What hostd's table holds now (empty [`Current`] when it is absent),
/// checked for hand edits ([`Current::drift`]): one terse `nft` listing plus
/// a netlink dump of the elements of the sets in use.
pub fn read_current(nft: &Nft) -> Result<Current, Error> {
    let json = nft.list_terse()?;
    let (model, elements) = model_and_elements(&json, None)?;
    let mut current = Current::from_model(model);
    current.live_elements = elements;
    if !current.drift.is_empty() {
        warn!(
            edits = %current.drift.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "),
            "hostd's nftables table was modified by hand"
        );
    }
    Ok(current)
}

/// The transaction [`apply_rendered`] would send first to make the table
/// described by `current` hold `rs` (what `hostd firewall apply --dry-run`
/// prints): nothing when it already does, a rewrite when it was edited by
/// hand, an update otherwise.
pub fn planned_script(rs: &Ruleset, current: &Current, force: bool) -> Option<String> {
    match mode(rs, current, force) {
        Mode::Unchanged => None,
        Mode::Update => Some(rs.update_script(current)),
        Mode::Reload => Some(rs.reload_script(current)),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Unchanged,
    Update,
    Reload,
}

/// A table edited by hand is rewritten whole (an update would keep the
/// edited sets, whose names no longer tell their content); `force` sends the
/// rules again even when the table already holds them.
fn mode(rs: &Ruleset, cur: &Current, force: bool) -> Mode {
    if !cur.drift.is_empty() || !cur.stale_reused_sets(rs).is_empty() {
        Mode::Reload
    } else if !force && cur.fingerprint.as_deref() == Some(rs.fingerprint.as_str()) {
        Mode::Unchanged
    } else {
        Mode::Update
    }
}

/// Validates `spec` and makes the kernel hold it: see [`apply_with`].
pub fn apply(nft: &Nft, spec: &FirewallSpec) -> Result<Applied, Error> {
    apply_with(nft, spec, ApplyOptions::default())
}

/// Validates `spec`, renders it, and changes hostd's table in one
/// transaction; then reads the table back and checks its fingerprint.
///
/// - invalid spec: [`Error::Invalid`], nothing touched;
/// - disabled: hostd's table removed ([`Applied::Removed`]);
/// - same fingerprint as the kernel's table: nothing sent ([`Applied::Unchanged`]);
/// - otherwise an update transaction that keeps unchanged CIDR sets; if the
///   kernel refuses it (table edited by hand), a full replacement. Both are
///   single transactions: a refused one changes nothing.
pub fn apply_with(nft: &Nft, spec: &FirewallSpec, opts: ApplyOptions) -> Result<Applied, Error> {
    spec.validate()?;
    // A disabled spec only removes the table: nothing to read.
    let current = if spec.enabled {
        match read_current(nft) {
            Ok(c) => Some(c),
            Err(e) => {
                warn!(error = %e, "cannot read hostd's table; replacing it whole");
                None
            }
        }
    } else {
        None
    };
    apply_rendered(nft, render(spec).as_ref(), current, opts)
}

/// [`apply_with`] for a validated spec already rendered to `rs` (`None`:
/// disabled, the table is removed) from a `current` state the caller has
/// just read (`None`: unreadable, the table is replaced whole), so that
/// nothing is rendered or read twice.
///
/// A table edited by hand (`current.drift`) is never "unchanged": it is
/// rewritten (base chains kept), and the edits are logged and returned in
/// [`Applied::Changed::hand_edits`].
#[instrument(skip_all, fields(enabled = rs.is_some()))]
pub fn apply_rendered(
    nft: &Nft,
    rs: Option<&Ruleset>,
    current: Option<Current>,
    opts: ApplyOptions,
) -> Result<Applied, Error> {
    let Some(rs) = rs else {
        disable(nft)?;
        return Ok(Applied::Removed);
    };
    // Sets whose names live sets hold with other elements (changed in
    // place) get free names: the whole-set path must not reuse them.
    let renamed = current
        .as_ref()
        .filter(|c| c.drift.is_empty())
        .and_then(|c| fresh_names(rs, c));
    let rs = renamed.as_ref().unwrap_or(rs);
    let hand_edits: Vec<String> = current
        .as_ref()
        .map(|c| c.hand_edits(rs).iter().map(ToString::to_string).collect())
        .unwrap_or_default();
    if !hand_edits.is_empty() {
        info!(edits = %hand_edits.join("; "), "rewriting hostd's table, modified by hand");
    }
    // A changed list alone is changed in place: one netlink batch of element
    // deletions and additions plus the new fingerprint rule. Anything else
    // (rules changing too, a table edited by hand, --force) takes the
    // whole-set path below: see `plan_element_update` for when and why.
    let in_place = match &current {
        Some(cur) if !opts.force_replace && !opts.whole_sets => {
            match plan_element_update(rs, cur) {
                Ok(plan) => Some(plan),
                Err(why) => {
                    debug!(reason = %why, "lists not changed in place");
                    None
                }
            }
        }
        _ => None,
    };
    if let (Some(plan), Some(cur)) = (&in_place, &current) {
        if cur.fingerprint.as_deref() == Some(plan.ruleset.fingerprint.as_str()) {
            info!(fingerprint = %plan.ruleset.fingerprint, "firewall unchanged");
            return Ok(Applied::Unchanged);
        }
        match send_elements(plan) {
            // The plan requires a table as recorded: no hand edits.
            Ok(applied) => return finish(nft, &plan.ruleset, applied, Vec::new()),
            Err(e) => {
                warn!(error = %e, "in-place list change refused (nothing changed); loading whole sets");
            }
        }
    }
    let applied = match &current {
        Some(cur) => match mode(rs, cur, opts.force_replace) {
            Mode::Unchanged => {
                info!(fingerprint = %rs.fingerprint, "firewall unchanged");
                return Ok(Applied::Unchanged);
            }
            Mode::Update => match send(nft, rs, Some(cur), false) {
                Ok(a) => a,
                Err(e @ Error::Nft { .. }) => {
                    warn!(error = %e, "update transaction refused (nothing changed); rewriting the table");
                    reload_or_replace(nft, rs, cur)?
                }
                Err(e) => return Err(e),
            },
            Mode::Reload => reload_or_replace(nft, rs, cur)?,
        },
        None => send(nft, rs, None, false)?,
    };
    finish(nft, rs, applied, hand_edits)
}

/// Sends an in-place list change ([`netlink::apply_element_update`]).
fn send_elements(plan: &ElementUpdate) -> Result<Applied, netlink::LoadError> {
    let start = Instant::now();
    netlink::apply_element_update(plan)?;
    let transaction = start.elapsed();
    let deleted: usize = plan.deltas.iter().map(|d| d.delete.len()).sum();
    let added: usize = plan.deltas.iter().map(|d| d.add.len()).sum();
    info!(
        how = "elements",
        fingerprint = %plan.ruleset.fingerprint,
        sets = plan.deltas.len(),
        deleted,
        added,
        ms = transaction.as_secs_f64() * 1e3,
        "firewall lists changed in place"
    );
    Ok(Applied::Changed {
        how: "elements",
        sets_loaded: plan.deltas.len(),
        elements_loaded: deleted + added,
        transaction,
        hand_edits: Vec::new(),
    })
}

/// After the transaction: reads the table back, checks it holds `rs`
/// (replacing it whole if not), and deletes the sets no rule uses.
fn finish(
    nft: &Nft,
    rs: &Ruleset,
    mut applied: Applied,
    hand_edits: Vec<String>,
) -> Result<Applied, Error> {
    if let Applied::Changed { hand_edits: h, .. } = &mut applied {
        *h = hand_edits;
    }
    // One read after the switch serves both the check (fingerprint, chain
    // hashes, other sets' contents) and the second transaction, which
    // deletes the sets the switch left unused (it cannot change the rules,
    // so the check holds after it).
    let mut after = read_after(nft, rs)?;
    if verify(&after, rs).is_err() {
        // Something a rewrite keeping the chains cannot undo (a base chain
        // recreated by hand with another priority...): replace the table.
        warn!(
            edits = %after.drift.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "),
            "hostd's table still differs after the transaction; replacing it whole"
        );
        send(nft, rs, None, false)?;
        after = read_current(nft)?;
    }
    verify(&after, rs)?;
    if let Some(script) = rs.cleanup_script(&after) {
        if let Err(e) = nft.transaction(&script, "delete unused sets") {
            warn!(error = %e, "unused sets left in hostd's table (deleted by a later apply)");
        }
    }
    Ok(applied)
}

/// A rewrite that keeps the base chains; if the kernel refuses it, a
/// replacement of the whole table.
fn reload_or_replace(nft: &Nft, rs: &Ruleset, cur: &Current) -> Result<Applied, Error> {
    match send(nft, rs, Some(cur), true) {
        Ok(a) => Ok(a),
        Err(e @ Error::Nft { .. }) => {
            warn!(error = %e, "rewrite refused (nothing changed); replacing the table whole");
            send(nft, rs, None, false)
        }
        Err(e) => Err(e),
    }
}

/// Sends one transaction: an update from `current`; with `reload`, a full
/// rewrite that keeps the base chains; without `current` (table unreadable),
/// a replacement of the whole table.
fn send(
    nft: &Nft,
    rs: &Ruleset,
    current: Option<&Current>,
    reload: bool,
) -> Result<Applied, Error> {
    let start = Instant::now();
    let (how, script, loaded): (&'static str, String, Vec<&NamedSet>) = match current {
        Some(cur) if reload => ("replace", rs.reload_script(cur), rs.sets.iter().collect()),
        Some(cur) => {
            let new: Vec<&NamedSet> = rs
                .sets
                .iter()
                .filter(|s| !cur.sets.contains(&s.name))
                .collect();
            // New sets go in first over netlink (no rule uses them yet, so
            // packets are unaffected); the nft transaction then switches the
            // rules over atomically. If the kernel refuses the netlink batch,
            // nothing was created and nft adds the sets itself.
            let script = match netlink::load_sets(&new) {
                Ok(()) => {
                    let mut cur = cur.clone();
                    cur.sets.extend(new.iter().map(|s| s.name.clone()));
                    rs.update_script(&cur)
                }
                Err(e) => {
                    warn!(error = %e, "netlink set loader refused; nft loads the sets");
                    rs.update_script(cur)
                }
            };
            ("update", script, new)
        }
        None => ("replace", rs.replace_script(), rs.sets.iter().collect()),
    };
    let what = if how == "update" {
        "update transaction"
    } else {
        "replace transaction"
    };
    nft.transaction(&script, what)?;
    let transaction = start.elapsed();
    let elements_loaded = loaded.iter().map(|s| s.elements.len()).sum();
    info!(
        how,
        fingerprint = %rs.fingerprint,
        sets_loaded = loaded.len(),
        elements_loaded,
        rules = rs.chains.iter().map(|c| c.rules.len()).sum::<usize>(),
        ms = transaction.as_secs_f64() * 1e3,
        "firewall applied"
    );
    Ok(Applied::Changed {
        how,
        sets_loaded: loaded.len(),
        elements_loaded,
        transaction,
        hand_edits: Vec::new(),
    })
}

/// The table must record `rs`'s fingerprint and match it in every part.
fn verify(cur: &Current, rs: &Ruleset) -> Result<(), Error> {
    if cur.fingerprint.as_deref() != Some(rs.fingerprint.as_str()) {
        let mut drift = cur.hand_edits(rs);
        if drift.is_empty() {
            drift = hostd_core::firewall::diff(&rs.model(), &cur.listed);
        }
        return Err(Error::Verify {
            expected: rs.fingerprint.clone(),
            found: cur.recorded.clone(),
            drift: drift.iter().map(ToString::to_string).collect(),
        });
    }
    Ok(())
}

/// Removes hostd's table (one transaction; succeeds when it is absent).
/// Nothing else is touched.
#[instrument(skip_all)]
pub fn disable(nft: &Nft) -> Result<(), Error> {
    nft.transaction(&remove_script(), "remove table")?;
    info!("firewall disabled: table inet hostd removed");
    Ok(())
}

/// hostd's table with per-rule counters and the hand edits found in it
/// ([`TableState::drift`]); `None` when it is absent.
pub fn show(nft: &Nft) -> Result<Option<TableState>, Error> {
    let json = nft.list_terse()?;
    let mut st = parse_listing(&json)?;
    if st.chains.is_empty() && st.rules.is_empty() {
        return Ok(None);
    }
    st.inspect(&model_of(&json, None)?);
    Ok(Some(st))
}
