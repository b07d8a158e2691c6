//! Our round-robin database against the real `rrdtool` (Debian package
//! rrdtool, 1.7): the same definitions and updates must give the same
//! consolidated rows in every archive, compared with `rrdtool dump`.
//!
//! Scenarios are pseudo-random but seeded (the seed is in every failure
//! message): irregular update intervals, gaps beyond the heartbeat, gaps
//! longer than whole archives, unknown values, min/max limits, 32-bit
//! counter wraps, negative DERIVE rates, every consolidation function and
//! several xff values. The deliberate difference (counter resets) has its
//! own test that shows rrdtool's spike next to our unknown.

#![allow(clippy::unwrap_used, reason = "test helpers panic with context")]

use std::{path::Path, process::Command};

use collector::rrd::{Cf, DsDef, DsType, RraDef, Rrd, RrdDef, Value};

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

fn rrdtool(args: &[&str]) -> String {
    let out = Command::new("rrdtool")
        .args(args)
        .output()
        .expect("run rrdtool (Debian package rrdtool)");
    assert!(
        out.status.success(),
        "rrdtool {:?}: {}",
        &args[..args.len().min(3)],
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn ds_spec(d: &DsDef) -> String {
    let kind = match d.kind {
        DsType::Gauge => "GAUGE",
        DsType::Counter32 | DsType::Counter64 => "COUNTER",
        DsType::Derive => "DERIVE",
        DsType::Absolute => "ABSOLUTE",
    };
    let lim = |v: Option<f64>| v.map_or("U".to_string(), |v| format!("{v}"));
    format!(
        "DS:{}:{}:{}:{}:{}",
        d.name,
        kind,
        d.heartbeat,
        lim(d.min),
        lim(d.max)
    )
}

fn rra_spec(r: &RraDef) -> String {
    format!("RRA:{}:{}:{}:{}", r.cf, r.xff, r.steps, r.rows)
}

fn value_text(v: &Value) -> String {
    match v {
        Value::Unknown => "U".into(),
        Value::Int(i) => i.to_string(),
        Value::Float(f) => format!("{f}"),
    }
}

/// Rows of each archive from `rrdtool dump`: (cf, pdp_per_row, [(time, values)]).
type DumpRra = (String, u64, Vec<(u64, Vec<f64>)>);

fn parse_dump(xml: &str) -> Vec<DumpRra> {
    let mut out = Vec::new();
    for block in xml.split("<rra>").skip(1) {
        let cf = between(block, "<cf>", "</cf>").trim().to_string();
        let ppr: u64 = between(block, "<pdp_per_row>", "</pdp_per_row>")
            .trim()
            .parse()
            .expect("pdp_per_row");
        let db = between(block, "<database>", "</database>");
        let mut rows = Vec::new();
        for line in db.lines().filter(|l| l.contains("<row>")) {
            let t: u64 = between(line, " / ", " -->")
                .trim()
                .parse()
                .expect("row time");
            let vals = line
                .split("<v>")
                .skip(1)
                .map(|v| {
                    let v = v.split("</v>").next().unwrap_or("").trim();
                    if v == "NaN" {
                        f64::NAN
                    } else {
                        v.parse().unwrap_or_else(|_| panic!("value {v:?}"))
                    }
                })
                .collect();
            rows.push((t, vals));
        }
        out.push((cf, ppr, rows));
    }
    out
}

fn between<'a>(s: &'a str, a: &str, b: &str) -> &'a str {
    let i = s.find(a).unwrap_or_else(|| panic!("{a} not in dump")) + a.len();
    let j = s[i..].find(b).unwrap_or_else(|| panic!("{b} not in dump")) + i;
    &s[i..j]
}

fn same(a: f64, b: f64) -> bool {
    (a.is_nan() && b.is_nan()) || (a - b).abs() <= 1e-9 * a.abs().max(b.abs()) + 1e-12
}

/// Feeds `updates` to rrdtool and to our Rrd; returns (ours, rrdtool's rows).
fn run_both(
    dir: &Path,
    name: &str,
    def: &RrdDef,
    start: u64,
    updates: &[(u64, Vec<Value>)],
) -> (Rrd, Vec<DumpRra>) {
    let file = dir.join(format!("{name}.rrd"));
    let file = file.to_str().expect("utf-8 path");
    let mut args = vec![
        "create".to_string(),
        file.to_string(),
        "--start".into(),
        start.to_string(),
        "--step".into(),
        def.step.to_string(),
    ];
    args.extend(def.ds.iter().map(ds_spec));
    args.extend(def.rras.iter().map(rra_spec));
    rrdtool(&args.iter().map(String::as_str).collect::<Vec<_>>());

    let mut ours = Rrd::new(def.clone(), start).expect("create");
    for chunk in updates.chunks(300) {
        let mut a = vec!["update".to_string(), file.to_string(), "--".to_string()];
        for (t, vals) in chunk {
            let text: Vec<String> = vals.iter().map(value_text).collect();
            a.push(format!("{t}:{}", text.join(":")));
            ours.update(*t, vals).expect("our update");
        }
        rrdtool(&a.iter().map(String::as_str).collect::<Vec<_>>());
    }
    let dump = parse_dump(&rrdtool(&["dump", file]));
    (ours, dump)
}

/// Compares every archive row; returns the mismatches as text.
fn diff_rows(ours: &Rrd, theirs: &[DumpRra]) -> Vec<String> {
    let mut bad = Vec::new();
    assert_eq!(ours.def().rras.len(), theirs.len(), "archive count");
    for (i, (cf, ppr, rows)) in theirs.iter().enumerate() {
        let r = &ours.def().rras[i];
        assert_eq!(
            (cf.as_str(), *ppr),
            (r.cf.to_string().as_str(), r.steps),
            "archive {i} shape"
        );
        let mine = ours.rra_rows(i);
        assert_eq!(mine.rows.len(), rows.len(), "rows in archive {i}");
        for ((t, m), (tt, v)) in mine.iter().zip(rows) {
            assert_eq!(t, *tt, "row time in archive {i}");
            for (ds, (a, b)) in m.iter().zip(v).enumerate() {
                if !same(*a, *b) {
                    bad.push(format!(
                        "rra {i} ({cf} x{ppr}) t={t} ds {ds}: ours {a} rrdtool {b}"
                    ));
                }
            }
        }
    }
    bad
}

fn scenario(seed: u64) -> (RrdDef, u64, Vec<(u64, Vec<Value>)>) {
    let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let step = [1, 5, 10, 60, 300][rng.below(5) as usize];
    let hb = step * (1 + rng.below(3)) + rng.below(step + 1);
    let limited = rng.chance(50);
    let ds = vec![
        DsDef {
            name: "g".into(),
            kind: DsType::Gauge,
            heartbeat: hb,
            min: limited.then_some(0.0),
            max: limited.then_some(400.0),
        },
        DsDef {
            name: "c32".into(),
            kind: DsType::Counter32,
            heartbeat: hb,
            min: None,
            max: None,
        },
        DsDef {
            name: "c64".into(),
            kind: DsType::Counter64,
            heartbeat: hb,
            min: None,
            max: limited.then_some(1e6),
        },
        DsDef {
            name: "d".into(),
            kind: DsType::Derive,
            heartbeat: hb,
            min: None,
            max: None,
        },
        DsDef {
            name: "a".into(),
            kind: DsType::Absolute,
            heartbeat: hb,
            min: None,
            max: None,
        },
    ];
    let xffs = [0.0, 0.3, 0.5, 0.9];
    let mut rras = vec![RraDef {
        cf: Cf::Average,
        steps: 1,
        rows: 40,
        xff: 0.5,
    }];
    for cf in [Cf::Average, Cf::Min, Cf::Max, Cf::Last] {
        for _ in 0..2 {
            rras.push(RraDef {
                cf,
                steps: 2 + rng.below(11),
                rows: 8 + rng.below(30) as usize,
                xff: xffs[rng.below(4) as usize],
            });
        }
    }
    let min_span = rras
        .iter()
        .map(|r| r.rows as u64 * r.steps)
        .min()
        .unwrap_or(10);
    let def = RrdDef { step, ds, rras };
    let start = 1_700_000_000 + rng.below(10_000);
    let mut t = start;
    // 32-bit wraps differ by design (see counter32_wrap_differs_by_one): no wrap here.
    let mut c32: u64 = rng.below(1 << 24);
    let mut c64: u64 = (1 << 62) + rng.below(1 << 40);
    // rrdtool cannot subtract across a sign change (see derive_across_zero), so the walk stays positive.
    let mut d: i128 = 1_000_000_000_000;
    let mut updates = Vec::new();
    for _ in 0..400 {
        t += match rng.below(100) {
            0..=79 => 1 + rng.below(step * 3 / 2 + 1),
            80..=94 => 1 + rng.below(hb * 2),
            95..=97 => hb + 1 + rng.below(hb * 4),
            // Long gaps, but shorter than every archive: a gap longer than an
            // archive is a deliberate difference (gap_longer_than_archive).
            _ => step * (2 + rng.below(min_span - 4)),
        };
        let unknown = |rng: &mut Rng| rng.chance(6);
        let g = if unknown(&mut rng) {
            Value::Unknown
        } else {
            Value::Float(rng.below(2000) as f64 / 4.0 - 50.0)
        };
        c32 = (c32 + rng.below(1 << 20)) % (1 << 32);
        c64 += rng.below(1 << 22);
        d += rng.below(2001) as i128 - 1000;
        let cv32 = if unknown(&mut rng) {
            Value::Unknown
        } else {
            Value::Int(c32 as i128)
        };
        let cv64 = if unknown(&mut rng) {
            Value::Unknown
        } else {
            Value::Int(c64 as i128)
        };
        let dv = if unknown(&mut rng) {
            Value::Unknown
        } else {
            Value::Int(d)
        };
        let av = if unknown(&mut rng) {
            Value::Unknown
        } else {
            Value::Int(rng.below(100_000) as i128)
        };
        updates.push((t, vec![g, cv32, cv64, dv, av]));
    }
    (def, start, updates)
}

fn tempdir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("collector-rrd-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

#[test]
fn same_rows_as_rrdtool_on_random_scenarios() {
    let dir = tempdir("random");
    let mut failures = Vec::new();
    let mut compared = 0usize;
    for seed in 1..=40u64 {
        let (def, start, updates) = scenario(seed);
        let (ours, theirs) = run_both(&dir, &format!("s{seed}"), &def, start, &updates);
        compared += theirs
            .iter()
            .map(|r| r.2.len() * def.ds.len())
            .sum::<usize>();
        let bad = diff_rows(&ours, &theirs);
        if !bad.is_empty() {
            failures.push(format!(
                "seed {seed} (step {}): {} mismatches, first: {:?}",
                def.step,
                bad.len(),
                &bad[..bad.len().min(5)]
            ));
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(compared > 10_000, "compared only {compared} values");
}

#[test]
fn known_values_spot_check() {
    // A hand-computable case, also checked against rrdtool: step 10,
    // GAUGE 100 for 30 s then 200; COUNTER +1000 per 10 s.
    let def = RrdDef {
        step: 10,
        ds: vec![
            DsDef {
                name: "g".into(),
                kind: DsType::Gauge,
                heartbeat: 20,
                min: None,
                max: None,
            },
            DsDef {
                name: "c".into(),
                kind: DsType::Counter64,
                heartbeat: 20,
                min: None,
                max: None,
            },
        ],
        rras: vec![
            RraDef {
                cf: Cf::Average,
                steps: 1,
                rows: 6,
                xff: 0.5,
            },
            RraDef {
                cf: Cf::Average,
                steps: 3,
                rows: 2,
                xff: 0.5,
            },
        ],
    };
    let start = 999_999_990; // a multiple of 30: rows of the 3-step archive hold 3 updates each
    let ups: Vec<(u64, Vec<Value>)> = (1..=6u64)
        .map(|i| {
            (
                start + 10 * i,
                vec![
                    Value::Float(if i <= 3 { 100.0 } else { 200.0 }),
                    Value::Int(1000 * i as i128),
                ],
            )
        })
        .collect();
    let dir = tempdir("spot");
    let (ours, theirs) = run_both(&dir, "spot", &def, start, &ups);
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(diff_rows(&ours, &theirs), Vec::<String>::new());
    let f = ours.rra_rows(0);
    let g: Vec<f64> = f.rows.iter().map(|r| r[0]).collect();
    assert_eq!(g, vec![100.0, 100.0, 100.0, 200.0, 200.0, 200.0]);
    let c: Vec<f64> = f.rows.iter().map(|r| r[1]).collect();
    assert!(
        c[0].is_nan(),
        "first counter interval has no previous reading"
    );
    assert_eq!(&c[1..], &[100.0; 5]);
    let f = ours.rra_rows(1);
    assert_eq!(f.rows[0][0], 100.0);
    assert_eq!(f.rows[1][0], 200.0);
}

/// Deliberate difference 1: a counter reset. rrdtool adds 2^64-... and
/// records an absurd rate; we record unknown for that one interval and
/// count normally from the new baseline.
#[test]
fn counter_reset_is_unknown_not_a_spike() {
    let def = RrdDef {
        step: 10,
        ds: vec![
            DsDef {
                name: "c64".into(),
                kind: DsType::Counter64,
                heartbeat: 30,
                min: None,
                max: None,
            },
            DsDef {
                name: "c32".into(),
                kind: DsType::Counter32,
                heartbeat: 30,
                min: None,
                max: None,
            },
        ],
        rras: vec![RraDef {
            cf: Cf::Average,
            steps: 1,
            rows: 10,
            xff: 0.5,
        }],
    };
    let start = 1_700_000_000;
    // +5000 per 10 s; at t=50 both counters restart from 0 (agent reboot).
    // c32 is far from the top of its range, so its drop cannot be a wrap.
    let vals = [0u64, 5000, 10000, 15000, 20000, 300, 5300, 10300, 15300];
    let ups: Vec<(u64, Vec<Value>)> = vals
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let (base64, base32) = if i < 5 {
                (1_000_000_000, 2_000_000)
            } else {
                (0, 0)
            };
            (
                start + 10 * (i as u64 + 1),
                vec![
                    Value::Int((base64 + v) as i128),
                    Value::Int((base32 + v) as i128),
                ],
            )
        })
        .collect();
    let dir = tempdir("reset");
    let (ours, theirs) = run_both(&dir, "reset", &def, start, &ups);
    let _ = std::fs::remove_dir_all(&dir);
    let diffs = diff_rows(&ours, &theirs);
    let mine = ours.rra_rows(0);
    let reset_row_time = start + 60;
    for (t, v) in mine.iter() {
        if t == reset_row_time {
            assert!(
                v[0].is_nan() && v[1].is_nan(),
                "reset interval must be unknown, got {v:?}"
            );
        } else if t > start + 20 {
            assert_eq!(v, &[500.0, 500.0], "normal intervals at t={t}");
        }
    }
    // rrdtool differs exactly on the reset row of both DS, with a spike.
    assert_eq!(diffs.len(), 2, "{diffs:?}");
    let (_, _, rows) = &theirs[0];
    let spike = rows
        .iter()
        .find(|(t, _)| *t == reset_row_time)
        .expect("reset row");
    // rrdtool adds 2^32-1 to the negative difference: hundreds of millions per second.
    assert!(
        spike.1[0] > 1e8 && spike.1[1] > 1e8,
        "rrdtool spike expected, got {:?}",
        spike.1
    );
}

/// Deliberate difference 2: rrdtool 1.7.2 adds 2^32-1 (not 2^32) to a
/// negative 32-bit difference, so each wrap counts one unit less. We count
/// modulo 2^32.
#[test]
fn counter32_wrap_differs_by_one() {
    let def = RrdDef {
        step: 10,
        ds: vec![DsDef {
            name: "c".into(),
            kind: DsType::Counter32,
            heartbeat: 30,
            min: None,
            max: None,
        }],
        rras: vec![RraDef {
            cf: Cf::Average,
            steps: 1,
            rows: 8,
            xff: 0.5,
        }],
    };
    let start = 1_700_000_000;
    let top = (1u64 << 32) - 12_000;
    let vals = [top, top + 5000, top + 10000, 3000, 8000, 13000];
    let ups: Vec<(u64, Vec<Value>)> = vals
        .iter()
        .enumerate()
        .map(|(i, v)| (start + 10 * (i as u64 + 1), vec![Value::Int(*v as i128)]))
        .collect();
    let dir = tempdir("wrap");
    let (ours, theirs) = run_both(&dir, "wrap", &def, start, &ups);
    let _ = std::fs::remove_dir_all(&dir);
    let known: Vec<f64> = ours
        .rra_rows(0)
        .rows
        .iter()
        .map(|r| r[0])
        .filter(|v| !v.is_nan())
        .collect();
    assert_eq!(known, vec![500.0; 5]);
    assert_eq!(
        diff_rows(&ours, &theirs),
        vec![format!(
            "rra 0 (AVERAGE x1) t={} ds 0: ours 500 rrdtool 499.9",
            start + 40
        )]
    );
}

/// Deliberate difference 3: rrdtool cannot subtract DERIVE readings of
/// different signs (its string subtraction gives unknown); we can.
#[test]
fn derive_across_zero() {
    let def = RrdDef {
        step: 10,
        ds: vec![DsDef {
            name: "d".into(),
            kind: DsType::Derive,
            heartbeat: 30,
            min: None,
            max: None,
        }],
        rras: vec![RraDef {
            cf: Cf::Average,
            steps: 1,
            rows: 6,
            xff: 0.5,
        }],
    };
    let start = 1_700_000_000;
    let vals: [i128; 5] = [-100, -50, 50, 30, -20];
    let ups: Vec<(u64, Vec<Value>)> = vals
        .iter()
        .enumerate()
        .map(|(i, v)| (start + 10 * (i as u64 + 1), vec![Value::Int(*v)]))
        .collect();
    let dir = tempdir("derive");
    let (ours, theirs) = run_both(&dir, "derive", &def, start, &ups);
    let _ = std::fs::remove_dir_all(&dir);
    let mine: Vec<f64> = ours.rra_rows(0).rows.iter().skip(2).map(|r| r[0]).collect();
    assert_eq!(mine, vec![5.0, 10.0, -2.0, -5.0]);
    assert_eq!(
        diff_rows(&ours, &theirs),
        vec![
            format!(
                "rra 0 (AVERAGE x1) t={} ds 0: ours 10 rrdtool NaN",
                start + 30
            ),
            format!(
                "rra 0 (AVERAGE x1) t={} ds 0: ours -5 rrdtool NaN",
                start + 50
            ),
        ]
    );
}

/// Deliberate difference 4: after a gap longer than a whole archive,
/// rrdtool writes the CDP that was in progress into the oldest row, labelled
/// with a time it does not belong to; that CDP's time is outside the
/// archive, so we drop it and the oldest row holds the fill-in value.
#[test]
fn gap_longer_than_archive() {
    let def = RrdDef {
        step: 1,
        ds: vec![DsDef {
            name: "g".into(),
            kind: DsType::Gauge,
            heartbeat: 1000,
            min: None,
            max: None,
        }],
        rras: vec![RraDef {
            cf: Cf::Average,
            steps: 2,
            rows: 3,
            xff: 0.5,
        }],
    };
    let start = 1_700_000_000;
    let ups: Vec<(u64, Vec<Value>)> = [(1, 10.0), (2, 10.0), (3, 10.0), (30, 50.0)]
        .iter()
        .map(|(dt, v)| (start + dt, vec![Value::Float(*v)]))
        .collect();
    let dir = tempdir("gap");
    let (ours, theirs) = run_both(&dir, "gap", &def, start, &ups);
    let _ = std::fs::remove_dir_all(&dir);
    // The PDPs 4..=30 are all 50: every row of the archive is 50.
    assert_eq!(ours.rra_rows(0).rows, vec![vec![50.0]; 3]);
    assert_eq!(
        diff_rows(&ours, &theirs),
        vec![format!(
            "rra 0 (AVERAGE x2) t={} ds 0: ours 50 rrdtool 30",
            start + 26
        )]
    );
}
