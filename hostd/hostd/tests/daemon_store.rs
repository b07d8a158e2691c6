//! Crash safety of the daemon's records: a process that writes the
//! confirmed record in a loop is killed with SIGKILL at random moments; each
//! time, the record read afterwards is a whole one (checksum valid), never
//! older than the last one read, and the temporary file the killed writer
//! left is removed on the next open.

use std::{
    path::PathBuf,
    process::{Command, Stdio},
    time::Duration,
};

use hostd::daemon::store::{DocRecord, Store};

const DIR_ENV: &str = "HOSTD_STORE_WRITER_DIR";

/// The writer (run by the test below in a child process; ignored alone).
#[test]
#[ignore = "child process of records_survive_sigkill_of_the_writer"]
fn writer_child() {
    let Some(dir) = std::env::var_os(DIR_ENV) else {
        return;
    };
    let store = Store::open(&PathBuf::from(dir)).expect("open");
    let start = store
        .confirmed()
        .expect("readable")
        .map_or(0, |c| c.doc.id.parse::<u64>().expect("numeric id"));
    // Documents of varying size, so a torn write would show.
    for n in start + 1.. {
        let text = format!("interfaces: []\n# {}\n", "x".repeat((n % 5000) as usize));
        store
            .set_confirmed(&DocRecord {
                id: n.to_string(),
                text,
            })
            .expect("write");
    }
}

#[test]
fn records_survive_sigkill_of_the_writer() {
    let dir = std::env::temp_dir().join(format!("hostd-crash-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let exe = std::env::current_exe().expect("test binary");
    let mut last = 0u64;
    let mut seed = u64::from(std::process::id());
    for round in 0..25 {
        let mut child = Command::new(&exe)
            .args(["--exact", "writer_child", "--ignored", "--test-threads=1"])
            .env(DIR_ENV, &dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn writer");
        // xorshift: a different kill moment each round, reproducible per pid.
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        std::thread::sleep(Duration::from_millis(30 + seed % 70));
        child.kill().expect("SIGKILL");
        child.wait().expect("reap");
        let store = Store::open(&dir).expect("open after the crash");
        let leftovers: Vec<_> = std::fs::read_dir(&dir)
            .expect("dir")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains(".tmp."))
            .collect();
        assert!(leftovers.is_empty(), "round {round}: {leftovers:?}");
        let rec = store
            .confirmed()
            .unwrap_or_else(|e| panic!("round {round}: a broken record after SIGKILL: {e}"))
            .unwrap_or_else(|| panic!("round {round}: no record"));
        let n: u64 = rec.doc.id.parse().expect("numeric id");
        assert!(
            rec.doc
                .text
                .ends_with(&format!("{}\n", "x".repeat((n % 5000) as usize))),
            "round {round}: record {n} has another record's text"
        );
        assert!(n >= last, "round {round}: went back from {last} to {n}");
        last = n;
    }
    assert!(
        last > 25,
        "the writer wrote too little to mean anything ({last})"
    );
    println!("{last} records written across 25 SIGKILLs, each read back whole");
    let _ = std::fs::remove_dir_all(&dir);
}
