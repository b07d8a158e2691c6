use super::serial::{Dec, Enc};
use super::*;

fn def(step: u64, kind: DsType) -> RrdDef {
    RrdDef {
        step,
        ds: vec![DsDef {
            name: "x".into(),
            kind,
            heartbeat: step * 2,
            min: None,
            max: None,
        }],
        rras: vec![
            RraDef {
                cf: Cf::Average,
                steps: 1,
                rows: 10,
                xff: 0.5,
            },
            RraDef {
                cf: Cf::Max,
                steps: 5,
                rows: 10,
                xff: 0.5,
            },
            RraDef {
                cf: Cf::Average,
                steps: 60,
                rows: 24,
                xff: 0.5,
            },
        ],
    }
}

#[test]
fn counter_delta_rule() {
    const T: i128 = 1 << 32;
    assert_eq!(counter_delta(10, 25, DsType::Counter32), Some(15));
    // Near the top of a 32-bit range: a wrap.
    assert_eq!(counter_delta(T - 10, 5, DsType::Counter32), Some(15));
    // Far from the top: a reset.
    assert_eq!(counter_delta(1_000_000, 5, DsType::Counter32), None);
    // Exactly half the range is not a wrap.
    assert_eq!(counter_delta(T / 2, 0, DsType::Counter32), None);
    assert_eq!(
        counter_delta(T / 2 + 1, 0, DsType::Counter32),
        Some(T / 2 - 1)
    );
    // 64-bit counters never wrap for us.
    assert_eq!(
        counter_delta(u64::MAX as i128 - 1, 3, DsType::Counter64),
        None
    );
    // A "32-bit" value outside the 32-bit range: treated as a reset.
    assert_eq!(counter_delta(T + 5, 3, DsType::Counter32), None);
}

#[test]
fn rejects_bad_definitions_and_updates() {
    let mut d = def(10, DsType::Gauge);
    d.rras[0].xff = 1.0;
    assert!(matches!(Rrd::new(d, 0), Err(RrdError::Definition(_))));
    let mut d = def(10, DsType::Gauge);
    d.step = 0;
    assert!(Rrd::new(d, 0).is_err());
    let mut r = Rrd::new(def(10, DsType::Counter64), 100).unwrap();
    assert_eq!(
        r.update(100, &[Value::Int(1)]),
        Err(RrdError::Time {
            time: 100,
            last: 100
        })
    );
    assert_eq!(
        r.update(110, &[]),
        Err(RrdError::Arity {
            expected: 1,
            got: 0
        })
    );
    assert!(matches!(
        r.update(110, &[Value::Float(1.5)]),
        Err(RrdError::NotInteger { .. })
    ));
    assert_eq!(r.last_update(), 100, "failed updates change nothing");
}

#[test]
fn fixed_memory() {
    let d = def(60, DsType::Gauge);
    let m = d.memory_bytes();
    let mut r = Rrd::new(d, 0).unwrap();
    assert_eq!(r.memory_bytes(), m);
    let cap: usize = r.rras.iter().map(|x| x.data.capacity()).sum();
    for i in 1..5000u64 {
        r.update(i * 60, &[Value::Float(i as f64)]).unwrap();
    }
    let cap2: usize = r.rras.iter().map(|x| x.data.capacity()).sum();
    assert_eq!(cap, cap2);
    assert!(m >= (10 + 10 + 24) * 8);
}

#[test]
fn serial_round_trip_and_corruption() {
    let mut r = Rrd::new(def(10, DsType::Counter64), 1_000_000).unwrap();
    for i in 1..200u64 {
        r.update(1_000_000 + i * 7, &[Value::Int((i * i) as i128)])
            .unwrap();
    }
    let mut e = Enc::default();
    r.encode(&mut e);
    let back = Rrd::decode(&mut Dec::new(&e.buf)).unwrap();
    // NaN != NaN: compare encodings, and continue both identically.
    let mut e2 = Enc::default();
    back.encode(&mut e2);
    assert_eq!(e.buf, e2.buf);
    let (mut a, mut b) = (r.clone(), back);
    for i in 200..300u64 {
        a.update(1_000_000 + i * 7, &[Value::Int((i * i) as i128)])
            .unwrap();
        b.update(1_000_000 + i * 7, &[Value::Int((i * i) as i128)])
            .unwrap();
    }
    assert_eq!(
        format!("{:?}", a.rra_rows(0)),
        format!("{:?}", b.rra_rows(0))
    );
    for cut in [0, 5, e.buf.len() / 2, e.buf.len() - 1] {
        assert!(
            Rrd::decode(&mut Dec::new(&e.buf[..cut])).is_err(),
            "cut at {cut}"
        );
    }
}

#[test]
fn fetch_picks_archive_and_aligns() {
    let mut r = Rrd::new(def(10, DsType::Gauge), 1_000_000_000 - 1_000_000_000 % 600).unwrap();
    let start = r.last_update();
    for i in 1..=1200u64 {
        r.update(start + i * 10, &[Value::Float((i % 7) as f64)])
            .unwrap();
    }
    let end = r.last_update();
    // Fine resolution over the last 100 s: the 10 s archive.
    let f = r.fetch(Cf::Average, end - 100, end, 10).unwrap();
    assert_eq!(f.step, 10);
    assert_eq!(f.rows.len(), 10);
    assert_eq!(f.iter().last().map(|(t, _)| t), Some(end));
    // A range beyond the 10-row archive: the 600 s one covers it.
    let f = r.fetch(Cf::Average, end - 6000, end, 10).unwrap();
    assert_eq!(f.step, 600);
    assert_eq!(f.rows.len(), 10);
    // Mean of i%7 over 60 consecutive i (from a multiple of 60 + 1).
    let v = f.rows[9][0];
    let expect: f64 = (1141..=1200u64).map(|i| (i % 7) as f64).sum::<f64>() / 60.0;
    assert!((v - expect).abs() < 1e-9, "{v} vs {expect}");
    // Times after the last update are unknown rows.
    let f = r.fetch(Cf::Average, end, end + 30, 10).unwrap();
    assert!(f.rows.iter().all(|x| x[0].is_nan()));
    assert!(matches!(
        r.fetch(Cf::Min, end - 10, end, 10),
        Err(RrdError::NoArchive(Cf::Min))
    ));
    assert!(matches!(
        r.fetch(Cf::Average, end, end, 10),
        Err(RrdError::Range { .. })
    ));
}
