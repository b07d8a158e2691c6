#![allow(clippy::unwrap_used, reason = "tests")]

use std::collections::HashMap;

use axum::http::StatusCode;

use super::{web::*, *};

const T0: u64 = 1_800_000_000;
const NAN: f64 = f64::NAN;

/// 30 rows of 60 s: in = 1000..1009 B/s, rows 10..20 unknown, rows 20..25
/// zero, rows 25..30 = 500.
fn sample() -> Graph {
    let mut inv: Vec<f64> = (0..10).map(|i| 1000.0 + i as f64).collect();
    inv.extend([NAN; 10]);
    inv.extend([0.0; 5]);
    inv.extend([500.0; 5]);
    let outv: Vec<f64> = inv.iter().map(|v| v / 2.0).collect();
    Graph {
        title: "test <graph> & co".into(),
        unit: Unit::Bytes,
        start: T0,
        end: T0 + 30 * 60,
        first: T0 + 60,
        step: 60,
        lines: vec![
            Line {
                label: "in".into(),
                style: Style::Area,
                values: inv,
            },
            Line {
                label: "out".into(),
                style: Style::Line,
                values: outv,
            },
        ],
        percentile: None,
        width: 600,
        height: 300,
    }
}

fn decode(png_bytes: &[u8]) -> (u32, u32, Vec<u8>) {
    let dec = png::Decoder::new(png_bytes);
    let mut r = dec.read_info().unwrap();
    let mut buf = vec![0; r.output_buffer_size()];
    let info = r.next_frame(&mut buf).unwrap();
    assert_eq!(info.color_type, png::ColorType::Rgb);
    buf.truncate(info.buffer_size());
    (info.width, info.height, buf)
}

fn px(img: &(u32, u32, Vec<u8>), x: u32, y: u32) -> (u8, u8, u8) {
    let i = ((y * img.0 + x) * 3) as usize;
    (img.2[i], img.2[i + 1], img.2[i + 2])
}

#[test]
fn gaps_stay_gaps_and_zero_is_drawn() {
    let g = sample();
    let img = decode(&render(&g, Format::Png).unwrap());
    assert_eq!((img.0, img.1), (600, 300));
    // The chart is above the legend (2 rows).
    let chart_h = 300 - (2 * 16 + 8);
    let cols_with = |c: (u8, u8, u8)| -> Vec<u32> {
        (0..img.0)
            .filter(|&x| (0..chart_h).any(|y| px(&img, x, y) == c))
            .collect()
    };
    let green = cols_with(AREA_COLOR);
    let (l, r) = (green[0], *green.last().unwrap());
    // The area spans the plot: rows 0..10 and 25..30 are non-zero.
    assert!(r - l > 400, "{l}..{r}");
    let x_of = |row: f64| l as f64 + (r - l) as f64 * row / 30.0;
    // Inside the unknown rows 10..20 (one row of margin each side) nothing
    // but the background and the mesh is drawn.
    let mesh = [(240, 240, 240), (215, 215, 215), BACKGROUND];
    let (g0, g1) = (x_of(11.0).ceil() as u32, x_of(19.0).floor() as u32);
    assert!(g1 > g0 + 50);
    for x in g0..=g1 {
        for y in 30..chart_h - 30 {
            let p = px(&img, x, y);
            assert!(
                mesh.contains(&p),
                "pixel ({x},{y}) in an unknown row is {p:?}, not background"
            );
        }
    }
    // Known rows are filled: the middle of rows 0..10 has green.
    for x in x_of(1.0) as u32..x_of(9.0) as u32 {
        assert!(green.contains(&x), "column {x} of a known row has no fill");
    }
    // Zero rows (20..25) are drawn: the out line lies on the baseline there.
    let blue = cols_with(LINE_COLOR);
    for x in x_of(21.0).ceil() as u32..x_of(24.0) as u32 {
        assert!(blue.contains(&x), "column {x} of a zero row has no line");
    }
    for x in g0..=g1 {
        assert!(
            !blue.contains(&x),
            "column {x} of an unknown row has a line"
        );
    }
}

#[test]
fn legend_numbers_are_the_datas() {
    let g = sample();
    let s = line_stats(&g.lines[0].values, Some(95.0));
    let known: Vec<f64> = g.lines[0]
        .values
        .iter()
        .copied()
        .filter(|v| v.is_finite())
        .collect();
    assert_eq!(known.len(), 20);
    assert_eq!(s.min, Some(0.0));
    assert_eq!(s.max, Some(1009.0));
    assert_eq!(s.last, Some(500.0));
    let avg = (10.0 * 1000.0 + 45.0 + 5.0 * 500.0) / 20.0;
    assert_eq!(s.avg, Some(avg));
    // nearest rank: 95% of 20 = 19th smallest = 1008.
    assert_eq!(s.percentile, Some(1008.0));
    // A trailing unknown row does not make "last" unknown.
    let mut v = g.lines[0].values.clone();
    v.push(NAN);
    assert_eq!(line_stats(&v, None).last, Some(500.0));
    assert_eq!(line_stats(&[NAN, NAN], None), LineStats::default());

    // The SVG's legend shows exactly these numbers.
    let mut g = sample();
    g.percentile = Some(95.0);
    let svg = String::from_utf8(render(&g, Format::Svg).unwrap()).unwrap();
    let doc = roxmltree::Document::parse(&svg).unwrap();
    let texts: Vec<&str> = doc
        .descendants()
        .filter(|n| n.has_tag_name("text"))
        .filter_map(|n| n.text())
        .map(str::trim)
        .collect();
    let cells = legend_cells("in", &s, Unit::Bytes);
    assert_eq!(
        cells,
        [
            "in".to_string(),
            "min 0 B/s".into(),
            format!("avg {avg:.0} B/s"),
            "max 1.01 kB/s".into(),
            "last 500 B/s".into(),
        ]
    );
    for c in &cells {
        assert!(texts.contains(&c.as_str()), "{c:?} not in {texts:?}");
    }
    let so = line_stats(&g.lines[1].values, Some(95.0));
    for c in legend_cells("out", &so, Unit::Bytes) {
        assert!(texts.contains(&c.as_str()), "{c:?} not in {texts:?}");
    }
    assert!(
        texts.contains(&"95th percentile in: 1.01 kB/s"),
        "{texts:?}"
    );
    assert!(texts.contains(&"95th percentile out: 504 B/s"), "{texts:?}");
    // The title is escaped by the SVG writer and comes back intact.
    assert!(texts.contains(&"test <graph> & co"), "{texts:?}");
}

#[test]
fn svg_is_xml_of_the_asked_size() {
    let mut g = sample();
    g.width = 777;
    g.height = 333;
    let svg = String::from_utf8(render(&g, Format::Svg).unwrap()).unwrap();
    let doc = roxmltree::Document::parse(&svg).unwrap();
    let root = doc.root_element();
    assert_eq!(root.tag_name().name(), "svg");
    assert_eq!(root.attribute("width"), Some("777"));
    assert_eq!(root.attribute("height"), Some("333"));
}

#[test]
fn percentile_line_is_drawn() {
    let mut g = sample();
    g.percentile = Some(95.0);
    let img = decode(&render(&g, Format::Png).unwrap());
    let red = (0..img.0 * img.1).any(|i| px(&img, i % img.0, i / img.0) == PERCENTILE_COLOR);
    assert!(red, "no percentile line");
    g.percentile = None;
    let img = decode(&render(&g, Format::Png).unwrap());
    let red = (0..img.0 * img.1).any(|i| px(&img, i % img.0, i / img.0) == PERCENTILE_COLOR);
    assert!(!red);
}

#[test]
fn all_unknown_renders_empty() {
    let mut g = sample();
    for l in &mut g.lines {
        l.values = vec![NAN; 30];
    }
    let img = decode(&render(&g, Format::Png).unwrap());
    let any = |c| (0..img.0 * img.1).any(|i| px(&img, i % img.0, i / img.0) == c);
    assert!(
        !any(AREA_COLOR) || {
            // Only the legend swatch (x 10..22, below the chart) is green.
            (0..img.0 * (300 - 40)).all(|i| px(&img, i % img.0, i / img.0) != AREA_COLOR)
        }
    );
    assert!((0..img.0 * (300 - 40)).all(|i| px(&img, i % img.0, i / img.0) != LINE_COLOR));
}

#[test]
fn sizes_and_shapes_are_checked() {
    let mut g = sample();
    g.width = WIDTH.1 + 1;
    let e = render(&g, Format::Png).unwrap_err();
    assert!(e.to_string().starts_with("'width' must be between"), "{e}");
    g.width = 600;
    g.height = HEIGHT.0 - 1;
    let e = render(&g, Format::Svg).unwrap_err();
    assert!(e.to_string().starts_with("'height'"), "{e}");
    g.height = 300;
    g.lines[1].values.pop();
    assert!(matches!(
        render(&g, Format::Png),
        Err(GraphError::Rows { .. })
    ));
    let mut g = sample();
    g.percentile = Some(0.0);
    assert!(render(&g, Format::Png)
        .unwrap_err()
        .to_string()
        .contains("'percentile'"));
    g.percentile = None;
    g.end = g.start;
    assert!(render(&g, Format::Png)
        .unwrap_err()
        .to_string()
        .contains("'start'"));
}

#[test]
fn si_prefixes() {
    assert_eq!(si(0.0, Unit::Bits), "0 b/s");
    assert_eq!(si(999.0, Unit::Bits), "999 b/s");
    assert_eq!(si(1234.0, Unit::Bits), "1.23 kb/s");
    assert_eq!(si(12_345_678.0, Unit::Bytes), "12.3 MB/s");
    assert_eq!(si(4.2e9, Unit::Bits), "4.20 Gb/s");
    assert_eq!(si(1.5, Unit::Packets), "1.50 pkt/s");
    assert_eq!(si(f64::NAN, Unit::Bits), "-");
}

#[test]
fn time_labels_are_utc() {
    // 1_800_000_000 = 2027-01-15 08:00:00 UTC.
    assert_eq!(time_label(1_800_000_000.0, 3600), "08:00");
    assert_eq!(time_label(1_800_000_000.0, 7 * 86_400), "01-15 08:00");
    assert_eq!(time_label(1_800_000_000.0, 90 * 86_400), "2027-01-15");
    assert_eq!(time_label(951_782_400.0, 90 * 86_400), "2000-02-29");
    assert_eq!(time_label(0.0, 90 * 86_400), "1970-01-01");
}

fn q(s: &str) -> HashMap<String, String> {
    s.split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap();
            (k.to_string(), v.to_string())
        })
        .collect()
}

fn err(s: &str, ext: Option<Format>) -> String {
    let e = parse_params(&q(s), ext, T0).unwrap_err();
    assert_eq!(e.0, StatusCode::BAD_REQUEST);
    e.1
}

#[test]
fn params_are_bounded_and_named() {
    let p = parse_params(&q(""), None, T0).unwrap();
    assert_eq!((p.start, p.end), (T0 - 86_400, T0));
    assert_eq!((p.width, p.height, p.format), (800, 300, Format::Png));
    assert_eq!((p.ds.as_str(), p.unit), ("traffic", Unit::Bits));
    let p = parse_params(&q("range=6h&end=1000000&format=svg&unit=bytes"), None, T0).unwrap();
    assert_eq!((p.start, p.end), (1_000_000 - 6 * 3600, 1_000_000));
    assert_eq!((p.format, p.unit), (Format::Svg, Unit::Bytes));
    let p = parse_params(&q("start=100&end=200&ds=packets"), Some(Format::Svg), T0).unwrap();
    assert_eq!((p.start, p.end, p.unit), (100, 200, Unit::Packets));
    assert_eq!(
        parse_params(&q("percentile=none"), None, T0)
            .unwrap()
            .percentile,
        Some(None)
    );

    assert!(err("width=5000", None).starts_with("'width' must be between 500 and 3000, got 5000"));
    assert!(err("width=-1", None).starts_with("'width'"));
    assert!(err("height=10", None).starts_with("'height'"));
    assert!(err("start=yesterday", None).starts_with("'start'"));
    assert!(err("end=x", None).starts_with("'end'"));
    assert!(err("range=forever", None).starts_with("'range'"));
    assert!(err("range=0", None).starts_with("'range'"));
    assert!(err("start=1&range=1h", None).contains("'start' or 'range'"));
    assert!(err("start=300&end=200", None).contains("must be before"));
    assert!(err("format=gif", None).starts_with("'format'"));
    assert!(err("format=svg", Some(Format::Png)).starts_with("'format'"));
    assert!(err("ds=colours", None).starts_with("'ds'"));
    assert!(err("unit=nibbles", None).starts_with("'unit'"));
    assert!(err("percentile=101", None).starts_with("'percentile'"));
    assert!(err("colour=red", None).contains("unknown parameter 'colour'"));
}

#[test]
fn ranges_paths_and_escaping() {
    assert_eq!(parse_range("3600"), Some(3600));
    assert_eq!(parse_range("90m"), Some(5400));
    assert_eq!(parse_range("7d"), Some(7 * 86_400));
    assert_eq!(parse_range("2w"), Some(14 * 86_400));
    assert_eq!(parse_range("d"), None);
    assert_eq!(parse_range("1y"), None);
    assert_eq!(parse_range("99999999999999999999"), None);
    assert_eq!(
        split_ext("subnet/10.0.0.0/24.png"),
        ("subnet/10.0.0.0/24", Some(Format::Png))
    );
    assert_eq!(
        split_ext("if/2001:db8::1/7.svg"),
        ("if/2001:db8::1/7", Some(Format::Svg))
    );
    assert_eq!(
        split_ext("subnet/10.0.0.0/24"),
        ("subnet/10.0.0.0/24", None)
    );
    assert_eq!(
        esc("<a href=\"x\">'&'</a>"),
        "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
    );
}

#[test]
fn time_ticks_are_round() {
    // 30 minutes from 08:00: every 5 minutes, light every minute.
    let (b, l) = time_ticks(T0, T0 + 1800);
    assert_eq!(b.first(), Some(&(T0 as f64)));
    assert_eq!(b.len(), 7);
    assert!(b.iter().all(|t| (*t as u64).is_multiple_of(300)));
    assert_eq!(l.len(), 31);
    // A day from an odd time: every 3 hours on the hour.
    let (b, _) = time_ticks(T0 + 77, T0 + 77 + 86_400);
    assert!(b.len() <= 8 && b.len() >= 7, "{b:?}");
    assert!(b.iter().all(|t| (*t as u64).is_multiple_of(10_800)));
    assert!(b.iter().all(|t| *t > (T0 + 77) as f64));
    // Years: at most 200 ticks whatever the span.
    let (b, l) = time_ticks(0, 20 * 366 * 86_400);
    assert!(b.len() <= 200 && l.len() <= 200);
}
