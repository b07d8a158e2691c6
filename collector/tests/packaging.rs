//! The hostd-collector packages (packaging/README.md): `scripts/package.sh`
//! builds the .deb and the .rpm from this test's debug `collector`; their
//! files, conffiles and maintainer scripts are checked, `lintian` is clean,
//! and the unit unpacked into a throwaway root passes `systemd-analyze
//! verify` and `systemd-analyze security --offline=yes` under a threshold.
//! Needs cargo-deb, cargo-generate-rpm, dpkg-deb, lintian, rpm and
//! systemd-analyze (scripts/setup.sh); runs unprivileged in ~15 s.

#[path = "../../packaging/tests/pkgcheck.rs"]
mod pkgcheck;

use std::path::Path;

use pkgcheck::*;

const FILES: &[&str] = &[
    "/usr/bin/hostd-collector",
    "/usr/lib/systemd/system/hostd-collector.service",
    "/etc/hostd/collector.yaml",
    "/usr/share/doc/hostd-collector/examples/collector.example.yaml",
];

#[test]
fn collector_deb_and_rpm() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let b = build(
        &root,
        Path::new(env!("CARGO_TARGET_TMPDIR")),
        "hostd-collector",
        "--collector-bin",
        env!("CARGO_BIN_EXE_collector"),
    );

    let files = deb_files(&b.deb);
    for f in FILES {
        assert!(
            files.iter().any(|p| p == f),
            "{f} missing from the .deb: {files:?}"
        );
    }
    // The configuration may hold API tokens: root-only, read through
    // LoadCredential by the dynamic user.
    assert!(deb_entry(&b.deb, "/etc/hostd/collector.yaml").starts_with("-rw------- 0/0 "));
    assert_eq!(
        deb_control(&b.deb, "conffiles").lines().collect::<Vec<_>>(),
        ["/etc/hostd/collector.yaml"]
    );
    deb_scripts_parse(&b.deb, &b.dir);
    let postinst = deb_control(&b.deb, "postinst");
    assert!(postinst.contains("deb-systemd-helper enable hostd-collector.service"));
    let postrm = deb_control(&b.deb, "postrm");
    let purge = postrm
        .find("rm -rf /var/lib/private/hostd-collector")
        .expect("purge removes the snapshot");
    assert!(postrm[..purge].rfind("if [ \"$1\" = \"purge\" ]").is_some());
    lintian_clean(&b.deb);

    let rfiles = rpm_files(&b.rpm);
    for f in FILES {
        assert!(
            rfiles.iter().any(|p| p == f),
            "{f} missing from the .rpm: {rfiles:?}"
        );
    }
    assert_eq!(rpm_configfiles(&b.rpm), ["/etc/hostd/collector.yaml"]);
    assert!(rpm_scripts(&b.rpm).contains("systemctl --no-reload enable hostd-collector.service"));

    let r = unpack_root(&b);
    changelog_matches(&b.deb, &r, "hostd-collector");
    verify_units(&r, &["hostd-collector.service"]);
    let e = exposure(&r, "hostd-collector.service", 1.5);
    eprintln!("hostd-collector.service: exposure {e}");
    // The packaged configuration is valid for the binary it ships with.
    run(
        std::process::Command::new(r.join("usr/bin/hostd-collector"))
            .arg("--check")
            .arg("--config")
            .arg(r.join("etc/hostd/collector.yaml")),
    );
}
