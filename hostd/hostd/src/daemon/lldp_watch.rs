//! lldpd's change stream, supervised: `lldpcli [-u SOCKET] -f json0 watch`
//! runs as a child of the daemon; each object it prints (a neighbour added,
//! updated or deleted) is a [`WatchMsg::Event`]. When it exits (lldpd
//! stopped or restarted) it is started again with back-off (1 s doubling to
//! 60 s; back to 1 s after it has run for a minute). While lldpd's control
//! socket does not exist no process is started: the socket is looked for
//! every [`SOCKET_CHECK`], which costs a `stat`.

use std::{path::PathBuf, process::Stdio, time::Duration};

use hostd_core::status::lldp::{WatchKind, WatchStream};
use tokio::{
    io::{AsyncBufReadExt as _, AsyncReadExt as _, BufReader},
    process::Command,
    sync::mpsc,
    time::Instant,
};

use crate::status::lldpd::Lldpcli;

/// lldpcli's control socket when none is given.
pub const DEFAULT_SOCKET: &str = "/run/lldpd.socket";
/// How often a missing control socket is looked for.
pub const SOCKET_CHECK: Duration = Duration::from_secs(2);

/// What the supervisor reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchMsg {
    /// The watch was (re)started: lldpd is (back) there; read it all, and
    /// announce again (a restarted lldpd forgot its configuration).
    Started,
    /// A neighbour was added, updated or deleted on these interfaces.
    Event(WatchKind, Vec<String>),
    /// The watch is not running: why (lldpd not running, exited ...).
    Stopped(String),
}

/// Restart delays: `initial` doubling to `max`; back to `initial` after a
/// run of at least `healthy`.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    healthy: Duration,
    next: Duration,
}

impl Backoff {
    /// A back-off starting at `initial`.
    pub fn new(initial: Duration, max: Duration, healthy: Duration) -> Self {
        Self {
            initial,
            max,
            healthy,
            next: initial,
        }
    }

    /// The delay before the next start, after a run that lasted `ran`.
    pub fn after(&mut self, ran: Duration) -> Duration {
        if ran >= self.healthy {
            self.next = self.initial;
        }
        let d = self.next;
        self.next = (self.next * 2).min(self.max);
        d
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new(
            Duration::from_secs(1),
            Duration::from_secs(60),
            Duration::from_secs(60),
        )
    }
}

fn socket_of(cli: &Lldpcli) -> PathBuf {
    cli.socket
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_SOCKET))
}

/// Runs the watch until `tx` is closed (or the task is aborted: the child
/// is killed with it).
pub async fn supervise(cli: Lldpcli, tx: mpsc::Sender<WatchMsg>, mut backoff: Backoff) {
    let socket = socket_of(&cli);
    let mut last_down: Option<String> = None;
    loop {
        if !socket.exists() {
            let why = format!(
                "lldpd is not running (no control socket {})",
                socket.display()
            );
            if last_down.as_ref() != Some(&why) {
                tracing::info!(socket = %socket.display(), "LLDP: lldpd is not running; waiting for its socket");
                if tx.send(WatchMsg::Stopped(why.clone())).await.is_err() {
                    return;
                }
                last_down = Some(why);
            }
            tokio::time::sleep(SOCKET_CHECK).await;
            continue;
        }
        let started = Instant::now();
        let why = match run_once(&cli, &tx).await {
            Ok(why) => why,
            Err(Closed) => return,
        };
        let ran = started.elapsed();
        let wait = backoff.after(ran);
        tracing::warn!(reason = %why, ran_s = ran.as_secs_f64(), retry_in_s = wait.as_secs_f64(), "LLDP: lldpcli watch stopped");
        if tx.send(WatchMsg::Stopped(why.clone())).await.is_err() {
            return;
        }
        last_down = Some(why);
        tokio::time::sleep(wait).await;
    }
}

/// The receiver went away.
struct Closed;

/// One run of `lldpcli watch`: returns why it ended.
async fn run_once(cli: &Lldpcli, tx: &mpsc::Sender<WatchMsg>) -> Result<String, Closed> {
    let mut cmd = Command::new(&cli.program);
    if let Some(s) = &cli.socket {
        cmd.arg("-u").arg(s);
    }
    cmd.args(["-f", "json0", "watch"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return Ok(format!("cannot run {}: {e}", cli.program.display())),
    };
    let (Some(stdout), Some(mut stderr)) = (child.stdout.take(), child.stderr.take()) else {
        return Ok("lldpcli watch without its pipes".into());
    };
    tracing::info!(pid = child.id(), "LLDP: lldpcli watch started");
    if tx.send(WatchMsg::Started).await.is_err() {
        return Err(Closed);
    }
    // Drain stderr as it comes (a full pipe would block lldpcli); keep its
    // tail for the reason.
    let err_task = tokio::spawn(async move {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 1024];
        loop {
            match stderr.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    buf.extend_from_slice(&chunk[..n]);
                    if buf.len() > 8192 {
                        buf.drain(..buf.len() - 4096);
                    }
                }
            }
        }
        String::from_utf8_lossy(&buf).trim().to_owned()
    });
    let mut lines = BufReader::new(stdout).lines();
    let mut stream = WatchStream::new();
    let mut read_error = None;
    loop {
        match lines.next_line().await {
            Ok(Some(line)) => match stream.push_line(&line) {
                Some(Ok(ev)) => {
                    let ifaces: Vec<String> =
                        ev.interfaces().into_iter().map(str::to_owned).collect();
                    tracing::debug!(kind = ev.kind.as_str(), interfaces = ?ifaces, "LLDP change");
                    if tx.send(WatchMsg::Event(ev.kind, ifaces)).await.is_err() {
                        return Err(Closed);
                    }
                }
                Some(Err(e)) => {
                    // Still a change of some kind: read everything.
                    tracing::warn!(error = %e, "LLDP: an lldpcli watch object did not parse");
                    if tx
                        .send(WatchMsg::Event(WatchKind::Updated, Vec::new()))
                        .await
                        .is_err()
                    {
                        return Err(Closed);
                    }
                }
                None => {}
            },
            Ok(None) => break,
            Err(e) => {
                read_error = Some(e.to_string());
                break;
            }
        }
    }
    let status = child.wait().await;
    let stderr = err_task.await.unwrap_or_default();
    let last = stderr.lines().last().unwrap_or("").to_owned();
    let status = match status {
        Ok(s) => s.to_string(),
        Err(e) => e.to_string(),
    };
    Ok(match (read_error, last.is_empty()) {
        (Some(e), _) => format!("lldpcli watch: reading its output: {e} ({status})"),
        (None, false) => format!("lldpcli watch ended ({status}): {last}"),
        (None, true) => format!("lldpcli watch ended ({status})"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_its_max_and_resets_after_a_healthy_run() {
        let s = Duration::from_secs;
        let mut b = Backoff::default();
        let short = Duration::from_millis(20);
        let waits: Vec<u64> = (0..8).map(|_| b.after(short).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 60, 60]);
        assert_eq!(b.after(s(61)), s(1));
        assert_eq!(b.after(short), s(2));
    }

    /// A stand-in `lldpcli` is a shell script printing what lldpcli
    /// prints (a captured watch stream) and failing as lldpcli does: the
    /// supervisor's process handling is what is tested here; the real
    /// lldpd is in hostd/tests/daemon_status.rs.
    #[tokio::test]
    async fn events_then_restarts_with_backoff() {
        let dir = std::env::temp_dir().join(format!("lldpwatch-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        let sock = dir.join("lldpd.socket");
        let script = dir.join("lldpcli");
        let fixture = format!(
            "{}/../core/tests/fixtures-status/json0-watch.txt",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\ncat {fixture}\necho 'unable to watch for neighbors. End of file reached' >&2\nexit 1\n"
            ),
        )
        .expect("script");
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let cli = Lldpcli {
            program: script,
            socket: Some(sock.clone()),
        };
        let (tx, mut rx) = mpsc::channel(64);
        let b = Backoff::new(
            Duration::from_millis(50),
            Duration::from_millis(100),
            Duration::from_secs(60),
        );
        let task = tokio::spawn(supervise(cli, tx, b));
        async fn recv(rx: &mut mpsc::Receiver<WatchMsg>) -> WatchMsg {
            tokio::time::timeout(Duration::from_secs(10), rx.recv())
                .await
                .expect("a message")
                .expect("open")
        }
        // No socket: reported once, nothing started.
        let m = recv(&mut rx).await;
        assert!(
            matches!(&m, WatchMsg::Stopped(w) if w.contains("not running")),
            "{m:?}"
        );
        std::fs::write(&sock, b"").expect("socket stand-in");
        for round in 0..2 {
            assert_eq!(recv(&mut rx).await, WatchMsg::Started, "round {round}");
            let mut kinds = Vec::new();
            for _ in 0..3 {
                match recv(&mut rx).await {
                    WatchMsg::Event(k, ifaces) => {
                        assert_eq!(ifaces, ["e0"]);
                        kinds.push(k);
                    }
                    other => panic!("{other:?}"),
                }
            }
            assert_eq!(
                kinds,
                [WatchKind::Deleted, WatchKind::Added, WatchKind::Updated]
            );
            let m = recv(&mut rx).await;
            assert!(
                matches!(&m, WatchMsg::Stopped(w) if w.contains("End of file reached") && w.contains("exit status: 1")),
                "{m:?}"
            );
        }
        task.abort();
        let _ = std::fs::remove_dir_all(&dir);
    }
}
