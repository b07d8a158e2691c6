//! Shared by the packaging tests (`hostd/hostd/tests/packaging.rs` and
//! `collector/tests/packaging.rs`, which include this file with `#[path]`):
//! builds packages with `scripts/package.sh` from the test's own (debug)
//! binary and inspects them with the distributions' tools: `dpkg-deb`,
//! `lintian`, `rpm`, `systemd-analyze`. A missing tool fails the test
//! (scripts/setup.sh installs them all).

#![allow(dead_code)]

use std::{
    path::{Path, PathBuf},
    process::Command,
};

/// The packages `scripts/package.sh` wrote for one package name.
pub struct Built {
    /// Scratch directory of this test run (packages, extracted root).
    pub dir: PathBuf,
    pub deb: PathBuf,
    pub rpm: PathBuf,
}

/// Runs `cmd`, panics (with its output) unless it succeeds; returns stdout.
pub fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?} (scripts/setup.sh installs it): {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `scripts/package.sh --package NAME BIN_FLAG BIN --out <scratch>`.
pub fn build(root: &Path, scratch: &Path, package: &str, bin_flag: &str, bin: &str) -> Built {
    let dir = scratch.join(format!("packaging-{package}"));
    let _ = std::fs::remove_dir_all(&dir);
    let out = dir.join("out");
    std::fs::create_dir_all(&out).expect("scratch dir");
    run(Command::new(root.join("scripts/package.sh"))
        .current_dir(root)
        .args(["--fast", "--package", package, bin_flag, bin, "--out"])
        .arg(&out));
    let find = |ext: &str| {
        let found: Vec<PathBuf> = std::fs::read_dir(&out)
            .expect("out dir")
            .map(|e| e.expect("entry").path())
            .filter(|p| {
                let name = p.file_name().map(|n| n.to_string_lossy().into_owned());
                name.is_some_and(|n| {
                    n.starts_with(&format!("{package}_")) || n.starts_with(&format!("{package}-"))
                }) && p.extension().is_some_and(|e| e == ext)
            })
            .collect();
        assert_eq!(
            found.len(),
            1,
            "one .{ext} of {package} in {out:?}: {found:?}"
        );
        found.into_iter().next().expect("one")
    };
    let (deb, rpm) = (find("deb"), find("rpm"));
    Built { dir, deb, rpm }
}

/// Paths in the .deb's data archive, without the leading `.` (`/usr/bin/hostd`).
pub fn deb_files(deb: &Path) -> Vec<String> {
    run(Command::new("dpkg-deb").arg("-c").arg(deb))
        .lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .map(|p| p.trim_start_matches('.').trim_end_matches('/').to_owned())
        .collect()
}

/// The .deb's `dpkg-deb -c` line (mode and owner) of `path`.
pub fn deb_entry(deb: &Path, path: &str) -> String {
    run(Command::new("dpkg-deb").arg("-c").arg(deb))
        .lines()
        .find(|l| l.split_whitespace().nth(5) == Some(&format!(".{path}")))
        .unwrap_or_else(|| panic!("{path} not in {deb:?}"))
        .to_owned()
}

/// A control member of the .deb (`conffiles`, `postinst`, ...), "" if absent.
pub fn deb_control(deb: &Path, member: &str) -> String {
    let out = Command::new("dpkg-deb")
        .arg("-I")
        .arg(deb)
        .arg(member)
        .output()
        .expect("dpkg-deb");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Every maintainer script present is valid POSIX sh (`sh -n`).
pub fn deb_scripts_parse(deb: &Path, dir: &Path) {
    let ctl = dir.join("control");
    run(Command::new("dpkg-deb").arg("-e").arg(deb).arg(&ctl));
    for s in ["preinst", "postinst", "prerm", "postrm"] {
        let p = ctl.join(s);
        if p.exists() {
            run(Command::new("sh").arg("-n").arg(&p));
        }
    }
}

/// `lintian` reports no error and no warning (overrides only with reasons,
/// in packaging/lintian/).
pub fn lintian_clean(deb: &Path) {
    let out = run(Command::new("lintian")
        .args(["--fail-on", "error,warning", "--no-tag-display-limit"])
        .arg(deb));
    let bad: Vec<&str> = out
        .lines()
        .filter(|l| l.starts_with("E:") || l.starts_with("W:"))
        .collect();
    assert!(bad.is_empty(), "lintian:\n{out}");
}

pub fn rpm_files(rpm: &Path) -> Vec<String> {
    run(Command::new("rpm").arg("-qlp").arg(rpm))
        .lines()
        .map(str::to_owned)
        .collect()
}

pub fn rpm_configfiles(rpm: &Path) -> Vec<String> {
    run(Command::new("rpm").arg("-qcp").arg(rpm))
        .lines()
        .map(str::to_owned)
        .collect()
}

pub fn rpm_scripts(rpm: &Path) -> String {
    run(Command::new("rpm").arg("-qp").arg("--scripts").arg(rpm))
}

/// A throwaway root: the host's systemd units (what the package's units
/// refer to: dbus.socket, network-pre.target, ...) with the .deb's data
/// unpacked over them (`dpkg -x`).
pub fn unpack_root(b: &Built) -> PathBuf {
    let root = b.dir.join("root");
    let units = root.join("usr/lib/systemd/system");
    std::fs::create_dir_all(&units).expect("root");
    run(Command::new("cp")
        .arg("-a")
        .arg("/usr/lib/systemd/system/.")
        .arg(&units));
    run(Command::new("dpkg").arg("-x").arg(&b.deb).arg(&root));
    root
}

/// `systemd-analyze verify` of the installed units in `root`.
pub fn verify_units(root: &Path, units: &[&str]) {
    run(Command::new("systemd-analyze")
        .arg("verify")
        .arg(format!("--root={}", root.display()))
        .args(units));
}

/// `systemd-analyze security --offline=yes` of an installed unit: its
/// overall exposure, which must be at most `max` (0.0 best .. 10.0 worst).
pub fn exposure(root: &Path, unit: &str, max: f64) -> f64 {
    let out = run(Command::new("systemd-analyze")
        .args(["security", "--no-pager", "--offline=yes"])
        .arg(format!("--root={}", root.display()))
        // --threshold is in tenths: the command itself fails above it.
        .arg(format!("--threshold={}", (max * 10.0).round() as u32))
        .arg(unit));
    let line = out
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .unwrap_or_else(|| panic!("no exposure in:\n{out}"));
    let value: f64 = line
        .split(": ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("unreadable exposure: {line}"));
    assert!(value <= max, "{unit}: exposure {value} > {max}");
    value
}

/// The changelog's latest entry is the package's version (cargo-deb takes
/// the version from Cargo.toml, the changelog is written by hand).
pub fn changelog_matches(deb: &Path, root: &Path, package: &str) {
    let version = run(Command::new("dpkg-deb").arg("-f").arg(deb).arg("Version"));
    let changelog =
        run(Command::new("zcat")
            .arg(root.join(format!("usr/share/doc/{package}/changelog.Debian.gz"))));
    let first = changelog.lines().next().unwrap_or_default();
    assert!(
        first.starts_with(&format!("{package} ({}) ", version.trim())),
        "packaging/debian/{package}/changelog needs an entry for {}: {first}",
        version.trim()
    );
}
