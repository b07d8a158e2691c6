//! Helpers shared by the real-peer tests.

#![allow(dead_code, reason = "each test binary uses a subset")]

use std::{
    collections::BTreeMap,
    net::IpAddr,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use ipnet::IpNet;
use serde_json::Value;

/// Waits until `count()` has not changed for 3 s (and, with `nonzero`, is
/// above zero): an exporter has sent everything, or has stopped sending.
pub fn wait_quiet(what: &str, nonzero: bool, mut count: impl FnMut() -> u64) {
    let mut last = (0, Instant::now());
    lab::wait_until(what, Duration::from_secs(60), || {
        let n = count();
        if n != last.0 {
            last = (n, Instant::now());
        }
        (!nonzero || n > 0) && last.1.elapsed() > Duration::from_secs(3)
    });
}

/// Starts tshark capturing UDP port `port` on `lo` of the current network
/// namespace into `pcap`, and waits until it is capturing.
pub fn start_capture(port: u16, pcap: &std::path::Path) -> Child {
    let child = Command::new("tshark")
        .args([
            "-i",
            "lo",
            "-f",
            &format!("udp port {port}"),
            "-w",
            pcap.to_str().expect("utf-8"),
            "-q",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("tshark (Debian package tshark)");
    lab::wait_until("tshark capturing", Duration::from_secs(20), || {
        pcap.metadata().is_ok_and(|m| m.len() > 0)
    });
    child
}

/// Stops a capture cleanly (SIGINT flushes the file).
pub fn stop_capture(mut c: Child) {
    // SAFETY: signalling our own child.
    unsafe { libc::kill(c.id() as i32, libc::SIGINT) };
    let st = c.wait().expect("tshark exit");
    assert!(st.success() || st.code().is_none(), "tshark: {st}");
}

/// Per-subnet totals from tshark's JSON decoding of the capture.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct Tot {
    pub in_bytes: f64,
    pub out_bytes: f64,
    pub in_pkts: f64,
    pub out_pkts: f64,
}

pub struct Oracle {
    pub datagrams: u64,
    pub flow_samples: u64,
    pub subnets: BTreeMap<IpNet, Tot>,
}

pub fn tshark_oracle(pcap: &str, port: u16, nets: &[IpNet]) -> Oracle {
    let out = Command::new("tshark")
        .args([
            "-r",
            pcap,
            "-d",
            &format!("udp.port=={port},sflow"),
            "-T",
            "json",
            "--no-duplicate-keys",
        ])
        .output()
        .expect("run tshark (Debian package tshark)");
    assert!(
        out.status.success(),
        "tshark: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let frames: Vec<Value> = serde_json::from_slice(&out.stdout).expect("tshark json");
    let mut o = Oracle {
        datagrams: 0,
        flow_samples: 0,
        subnets: nets.iter().map(|n| (*n, Tot::default())).collect(),
    };
    let lookup = |a: &str| -> Option<IpNet> {
        let a: IpAddr = a.parse().ok()?;
        nets.iter()
            .filter(|n| n.contains(&a))
            .max_by_key(|n| n.prefix_len())
            .copied()
    };
    for f in &frames {
        let Some(sflow) = f["_source"]["layers"].get("sflow") else {
            continue;
        };
        o.datagrams += 1;
        let Some(obj) = sflow.as_object() else {
            continue;
        };
        for (k, sample) in obj {
            if !k.starts_with("Flow sample") {
                continue;
            }
            // With --no-duplicate-keys equal keys become arrays.
            let samples = match sample {
                Value::Array(a) => a.clone(),
                v => vec![v.clone()],
            };
            for s in samples {
                o.flow_samples += 1;
                let rate: f64 = s["sflow.flow_sample.sampling_rate"]
                    .as_str()
                    .and_then(|v| v.parse().ok())
                    .expect("rate");
                let hdr = &s["Raw packet header"];
                let Some(len) = hdr["sflow_245.header.frame_length"]
                    .as_str()
                    .and_then(|v| v.parse::<f64>().ok())
                else {
                    continue;
                };
                let tree = &hdr["sflow_245.header_tree"];
                let (src, dst) = if let Some(ip) = tree.get("ip") {
                    (
                        ip["ip.src"].as_str().unwrap_or(""),
                        ip["ip.dst"].as_str().unwrap_or(""),
                    )
                } else if let Some(ip) = tree.get("ipv6") {
                    (
                        ip["ipv6.src"].as_str().unwrap_or(""),
                        ip["ipv6.dst"].as_str().unwrap_or(""),
                    )
                } else {
                    continue;
                };
                if let Some(n) = lookup(src) {
                    let t = o.subnets.get_mut(&n).expect("net");
                    t.out_bytes += rate * len;
                    t.out_pkts += rate;
                }
                if let Some(n) = lookup(dst) {
                    let t = o.subnets.get_mut(&n).expect("net");
                    t.in_bytes += rate * len;
                    t.in_pkts += rate;
                }
            }
        }
    }
    o
}
