//! Build orchestration for the workspace.
//!
//! - `cargo xtask test [--only NAME]`: every test of the workspace (with
//!   `--only` or `LAB_ONLY`, only the test binaries named: the others are
//!   listed as not run, loudly, and CI refuses it).
//!   Privileged test binaries (`tests/tests/kernel_*.rs`) run through [`vm`]'s
//!   runner: natively when this kernel has what the binary needs (bonds,
//!   802.1Q VLANs, VLAN-filtering bridges and OVS datapaths for most; veth
//!   and nf_tables for the firewall's), otherwise inside a VM booting
//!   Debian's kernel.
//! - `cargo xtask demo`: builds everything, brings up the demo rack in the
//!   lab (inside the VM when needed) and runs `hostd` on it with the three
//!   examples of `hostd/examples/`, printing what it built and that it works.
//! - `cargo xtask vm -- CMD...`: runs a command in the VM (debugging).
//! - `cargo xtask runner BIN ARGS...`: the cargo target runner used by `test`.

mod vm;

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Instant,
};

use anyhow::{bail, Context as _};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about = "Build orchestration: tests in the lab VM, the demo")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run every test: unit tests natively, privileged lab tests natively or
    /// in the VM (see `runner`).
    Test {
        /// Only run test binaries whose name contains one of these (also
        /// `LAB_ONLY=a,b`); every other binary, unit tests included, is not
        /// run and is listed as such. Refused when CI=true.
        #[arg(long = "only")]
        only: Vec<String>,
        /// Pass-through filter for the test harness.
        filter: Vec<String>,
    },
    /// Build, then bring up the demo rack and show it working.
    Demo,
    /// Benchmark: one bond + N VLANs + N bridges applied from empty by
    /// `ip -batch`, `hostd apply` and ifupdown2, in the VM (release build of
    /// hostd and bench-hostd); prints a markdown table.
    BenchHostd {
        /// Arguments for bench-hostd: sizes (default 100 500 1000 4000),
        /// `--ifupdown2-cap SECS`, `--no-ifupdown2`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Run a command inside the VM (Debian's kernel, TCG).
    Vm {
        #[arg(trailing_var_arg = true, required = true)]
        cmd: Vec<String>,
    },
    /// Cargo target runner: runs BIN natively, or in the VM for privileged
    /// lab tests when this kernel lacks what they need.
    Runner {
        bin: PathBuf,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Test { only, filter } => test(&only, &filter),
        Cmd::Demo => demo(),
        Cmd::BenchHostd { args } => bench_hostd(&args),
        Cmd::Vm { cmd } => {
            let status = vm::run_in_vm(&cmd, &vm::VmOptions::from_env()?)?;
            std::process::exit(status)
        }
        Cmd::Runner { bin, args } => std::process::exit(vm::runner(&bin, &args)?),
    }
}

/// Prints a timing line per phase (CI logs read these).
struct Phase {
    name: &'static str,
    start: Instant,
}

impl Phase {
    fn start(name: &'static str) -> Self {
        eprintln!("==> phase {name}");
        Self {
            name,
            start: Instant::now(),
        }
    }
}

impl Drop for Phase {
    fn drop(&mut self) {
        eprintln!(
            "==> phase {} took {:.1}s",
            self.name,
            self.start.elapsed().as_secs_f64()
        );
    }
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

fn cargo() -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(workspace_root());
    c
}

fn run(cmd: &mut Command) -> anyhow::Result<()> {
    let status = cmd.status().with_context(|| format!("spawning {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed: {status}");
    }
    Ok(())
}

/// Makes cargo run test binaries through a copy of this xtask binary
/// (`xtask runner`). A copy, because `cargo build --workspace` rebuilds
/// target/debug/xtask while the tests run.
fn runner_env(cmd: &mut Command) -> anyhow::Result<()> {
    let me = std::env::current_exe().context("current_exe")?;
    let dir = target_dir()?.join("lab-runner");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let copy = dir.join("xtask");
    let tmp = dir.join(format!("xtask.{}", std::process::id()));
    std::fs::copy(&me, &tmp)
        .with_context(|| format!("copying {} to {}", me.display(), tmp.display()))?;
    std::fs::rename(&tmp, &copy)?;
    cmd.env(
        "CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUNNER",
        format!("{} runner", copy.display()),
    );
    Ok(())
}

/// The test binaries `--only` and `LAB_ONLY` select (names or parts of
/// names, as the runner matches them).
fn selection(only: &[String], env: Option<&str>) -> Vec<String> {
    let mut v: Vec<String> = only
        .iter()
        .map(String::as_str)
        .chain(env.into_iter().flat_map(|e| e.split(',')))
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    v.sort();
    v.dedup();
    v
}

/// Prints a banner to stderr, so that it stands out in a CI log.
fn banner(lines: &[String]) {
    let width = lines.iter().map(|l| l.len()).max().unwrap_or(0).min(100);
    let rule = "!".repeat(width + 4);
    eprintln!("{rule}");
    for l in lines {
        eprintln!("!! {l}");
    }
    eprintln!("{rule}");
}

fn test(only: &[String], filter: &[String]) -> anyhow::Result<()> {
    let env_only = std::env::var("LAB_ONLY").ok();
    let selected = selection(only, env_only.as_deref());
    if vm::is_ci() && !selected.is_empty() {
        bail!(
            "CI=true: a CI run runs every test, but --only / LAB_ONLY select {} \
             (every other test binary would exit 0 without running)",
            selected.join(",")
        );
    }
    let mut cmd = cargo();
    // Before the build replaces this binary.
    runner_env(&mut cmd)?;
    let not_run = target_dir()?
        .join("lab-runner")
        .join(format!("not-run.{}", std::process::id()));
    let _ = std::fs::remove_file(&not_run);
    if !selected.is_empty() {
        banner(&[
            format!("PARTIAL TEST RUN: LAB_ONLY={}", selected.join(",")),
            "Only test binaries whose name contains one of these run. Every other".into(),
            "test binary, unit tests included, exits 0 WITHOUT RUNNING ANY TEST.".into(),
            "The binaries not run are listed at the end. CI refuses this (CI=true).".into(),
        ]);
    }
    {
        let _p = Phase::start("build (workspace, all targets)");
        run(cargo().args(["build", "--workspace", "--all-targets"]))?;
    }
    let p = Phase::start("test");
    cmd.args(["test", "--workspace", "--no-fail-fast"]);
    if selected.is_empty() {
        cmd.env_remove("LAB_ONLY");
    } else {
        cmd.env("LAB_ONLY", selected.join(","));
        cmd.env("LAB_NOT_RUN_FILE", &not_run);
    }
    // The eBPF test runs on this kernel (TCX) and in the VM's 6.1 (clsact).
    if std::env::var_os("LAB_ALSO_NATIVE").is_none() {
        cmd.env("LAB_ALSO_NATIVE", "kernel_ebpf");
    }
    if !filter.is_empty() {
        cmd.arg("--").args(filter);
    }
    let result = run(&mut cmd);
    drop(p);
    if !selected.is_empty() {
        let mut skipped: Vec<String> = std::fs::read_to_string(&not_run)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect();
        skipped.sort();
        skipped.dedup();
        let _ = std::fs::remove_file(&not_run);
        let mut lines = vec![format!(
            "PARTIAL TEST RUN (LAB_ONLY={}): {} test binaries were NOT run:",
            selected.join(","),
            skipped.len()
        )];
        lines.extend(skipped.chunks(6).map(|c| format!("  {}", c.join(", "))));
        lines.push(
            "Doc-tests are not affected. Run `cargo xtask test` without --only for everything."
                .into(),
        );
        banner(&lines);
    }
    result
}

fn demo() -> anyhow::Result<()> {
    {
        let _p = Phase::start("build");
        run(cargo().args(["build", "--workspace", "--bins"]))?;
        run(cargo().args(["build", "-p", "lab", "--bin", "lab-demo"]))?;
    }
    let _p = Phase::start("demo");
    let target = target_dir()?;
    std::env::set_var("HOSTD_BIN", target.join("debug/hostd"));
    let bin = target.join("debug/lab-demo");
    let code = vm::runner(&bin, &[])?;
    if code != 0 {
        bail!("demo failed with exit code {code}");
    }
    Ok(())
}

fn bench_hostd(args: &[String]) -> anyhow::Result<()> {
    {
        let _p = Phase::start("build (release)");
        run(cargo().args([
            "build",
            "--release",
            "-p",
            "hostd",
            "--bin",
            "hostd",
            "--bin",
            "bench-hostd",
        ]))?;
    }
    let _p = Phase::start("bench-hostd");
    let code = vm::runner(&target_dir()?.join("release/bench-hostd"), args)?;
    if code != 0 {
        bail!("bench-hostd failed with exit code {code}");
    }
    Ok(())
}

fn target_dir() -> anyhow::Result<PathBuf> {
    if let Some(d) = std::env::var_os("CARGO_TARGET_DIR") {
        return Ok(PathBuf::from(d));
    }
    let out = cargo()
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .output()
        .context("cargo metadata")?;
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).context("cargo metadata json")?;
    v["target_directory"]
        .as_str()
        .map(PathBuf::from)
        .context("target_directory missing")
}

#[cfg(test)]
mod tests {
    use super::selection;

    #[test]
    fn selection_merges_only_and_lab_only() {
        assert!(selection(&[], None).is_empty());
        assert!(selection(&[], Some("")).is_empty());
        assert_eq!(
            selection(&["kernel_lab".into()], Some("kernel_firewall, kernel_lab,")),
            ["kernel_firewall", "kernel_lab"]
        );
    }
}
