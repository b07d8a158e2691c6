//! Graph render time (issue 13's goal: under 10 ms for a day at 1-minute
//! steps): `cargo run --release -p collector --example graph_bench`.
//!
//! 1,440 rows of "in" (area) and "out" (line) with a 30-minute gap and the
//! 95th percentile, 800x300, PNG (drawing + encoding) and SVG; prints the
//! median and the worst of 200 renders each.

use std::time::{Duration, Instant};

use collector::graph::{render, Format, Graph, Line, Style, Unit};

fn main() {
    let rows = 1440u64;
    let t0 = 1_800_000_000u64;
    let wave = |i: u64, k: f64| {
        if (600..630).contains(&i) {
            f64::NAN
        } else {
            k * (1.5 + (i as f64 / 90.0).sin()) * 1e6
        }
    };
    let g = Graph {
        title: "subnet 10.0.0.0/24: traffic".into(),
        unit: Unit::Bits,
        start: t0,
        end: t0 + rows * 60,
        first: t0 + 60,
        step: 60,
        lines: vec![
            Line {
                label: "in".into(),
                style: Style::Area,
                values: (0..rows).map(|i| wave(i, 8.0)).collect(),
            },
            Line {
                label: "out".into(),
                style: Style::Line,
                values: (0..rows).map(|i| wave(i + 200, 3.0)).collect(),
            },
        ],
        percentile: Some(95.0),
        width: 800,
        height: 300,
    };
    for format in [Format::Png, Format::Svg] {
        // The first render registers the font.
        let bytes = render(&g, format).expect("render");
        let mut times: Vec<Duration> = (0..200)
            .map(|_| {
                let t = Instant::now();
                let b = render(&g, format).expect("render");
                std::hint::black_box(b);
                t.elapsed()
            })
            .collect();
        times.sort();
        println!(
            "{format:?}: {} bytes, median {:.2} ms, worst {:.2} ms (1,440 rows, 800x300)",
            bytes.len(),
            times[times.len() / 2].as_secs_f64() * 1e3,
            times[times.len() - 1].as_secs_f64() * 1e3
        );
    }
}
