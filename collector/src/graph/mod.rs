//! Graphs of series, rrdtool-style, rendered in Rust: series rows in, PNG or
//! SVG bytes out (no I/O, no server; tested in `tests.rs`). [`web`] serves
//! them over HTTP with a small HTML page.
//!
//! - "in" is a filled area, "out" a line; each row at time T covers
//!   (T - step, T] and is drawn as a flat step over that interval;
//! - unknown rows (NaN) are gaps: nothing is drawn over them, never a 0;
//! - a legend with min/avg/max/last of the known rows of each line, and,
//!   when asked (subnet graphs), the nearest-rank percentile of each line
//!   (the same [`crate::store::nearest_rank`] the traffic report uses) as a
//!   horizontal line with its value in the legend;
//! - the y axis in units per second with SI prefixes (k, M, G, ...), the x
//!   axis in UTC.
//!
//! Text is drawn by plotters' `ab_glyph` font backend with DejaVu Sans,
//! bundled in `collector/assets/DejaVuSans.ttf` (Bitstream Vera license with
//! the DejaVu changes in the public domain; the full text is in
//! `collector/assets/LICENSE-DejaVu.txt`): nothing reads fonts from the
//! system or links fontconfig/freetype.

pub mod web;

#[cfg(test)]
mod tests;

use std::sync::OnceLock;

use plotters::{
    coord::Shift,
    prelude::*,
    style::text_anchor::{HPos, Pos, VPos},
    style::{register_font, FontStyle},
};

use crate::store::nearest_rank;

/// DejaVu Sans 2.37 (fonts-dejavu-core), see the module documentation.
static FONT: &[u8] = include_bytes!("../../assets/DejaVuSans.ttf");
/// The family name the font is registered under with plotters.
const FAMILY: &str = "sans-serif";

/// Fill of the "in" area (rrdtool's classic green).
pub const AREA_COLOR: (u8, u8, u8) = (0, 204, 0);
/// The "out" line.
pub const LINE_COLOR: (u8, u8, u8) = (0, 0, 255);
/// Percentile lines.
pub const PERCENTILE_COLOR: (u8, u8, u8) = (255, 0, 0);
/// The background.
pub const BACKGROUND: (u8, u8, u8) = (255, 255, 255);

/// Bounds of the image size (pixels), checked by [`render`].
pub const WIDTH: (u32, u32) = (500, 3000);
pub const HEIGHT: (u32, u32) = (200, 2000);

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Png,
    Svg,
}

impl Format {
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Png => "image/png",
            Format::Svg => "image/svg+xml",
        }
    }
}

/// What the values count, per second.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Bits,
    Bytes,
    Packets,
    /// Errors, discards.
    Events,
}

impl Unit {
    /// Suffix after the SI prefix.
    pub fn suffix(self) -> &'static str {
        match self {
            Unit::Bits => "b/s",
            Unit::Bytes => "B/s",
            Unit::Packets => "pkt/s",
            Unit::Events => "/s",
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Unit::Bits => "bits per second",
            Unit::Bytes => "bytes per second",
            Unit::Packets => "packets per second",
            Unit::Events => "per second",
        }
    }
}

/// How a line is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// Filled from 0 ([`AREA_COLOR`]).
    Area,
    /// A 2-pixel line ([`LINE_COLOR`]).
    Line,
}

/// One line of a graph: one value per row, NaN for unknown.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    pub label: String,
    pub style: Style,
    pub values: Vec<f64>,
}

/// A graph: rows `first, first + step, ...` (end times) drawn over
/// `(start, end]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Graph {
    pub title: String,
    pub unit: Unit,
    pub start: u64,
    pub end: u64,
    /// End time of the first row.
    pub first: u64,
    /// Seconds per row.
    pub step: u64,
    pub lines: Vec<Line>,
    /// Draw this percentile (0, 100] of each line.
    pub percentile: Option<f64>,
    pub width: u32,
    pub height: u32,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum GraphError {
    #[error("'{param}' must be between {min} and {max}, got {value}")]
    Size {
        param: &'static str,
        value: u32,
        min: u32,
        max: u32,
    },
    #[error("'start' ({start}) must be before 'end' ({end})")]
    Range { start: u64, end: u64 },
    #[error("'percentile' must be in (0, 100], got {0}")]
    Percentile(f64),
    #[error("line {label:?} has {got} values, the graph has {want} rows")]
    Rows {
        label: String,
        got: usize,
        want: usize,
    },
    #[error("step must be positive")]
    Step,
    #[error("the bundled font could not be loaded")]
    Font,
    #[error("drawing: {0}")]
    Draw(String),
    #[error("encoding PNG: {0}")]
    Encode(String),
}

/// Statistics of one line over its known rows (`None` when all unknown).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct LineStats {
    pub min: Option<f64>,
    pub avg: Option<f64>,
    pub max: Option<f64>,
    /// The last known row.
    pub last: Option<f64>,
    pub percentile: Option<f64>,
}

/// Min/avg/max/last (and the nearest-rank percentile) of the known values.
pub fn line_stats(values: &[f64], percentile: Option<f64>) -> LineStats {
    let mut known: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    if known.is_empty() {
        return LineStats::default();
    }
    let sum: f64 = known.iter().sum();
    LineStats {
        min: known.iter().copied().reduce(f64::min),
        avg: Some(sum / known.len() as f64),
        max: known.iter().copied().reduce(f64::max),
        last: known.last().copied(),
        percentile: percentile.and_then(|p| nearest_rank(&mut known, p)),
    }
}

/// `v` with an SI prefix and three significant digits: `1.23 Mb/s`.
pub fn si(v: f64, unit: Unit) -> String {
    const PREFIXES: [&str; 7] = ["", "k", "M", "G", "T", "P", "E"];
    if !v.is_finite() {
        return "-".into();
    }
    let mut x = v;
    let mut i = 0;
    while x.abs() >= 999.5 && i + 1 < PREFIXES.len() {
        x /= 1000.0;
        i += 1;
    }
    let digits = if x == 0.0 || x.abs() >= 99.95 {
        0
    } else if x.abs() >= 9.995 {
        1
    } else {
        2
    };
    format!("{x:.digits$} {}{}", PREFIXES[i], unit.suffix())
}

fn opt_si(v: Option<f64>, unit: Unit) -> String {
    v.map_or_else(|| "-".into(), |v| si(v, unit))
}

/// The legend's text for one line: `[label, "min ...", "avg ...", "max ...",
/// "last ..."]`.
pub fn legend_cells(label: &str, s: &LineStats, unit: Unit) -> [String; 5] {
    [
        label.to_string(),
        format!("min {}", opt_si(s.min, unit)),
        format!("avg {}", opt_si(s.avg, unit)),
        format!("max {}", opt_si(s.max, unit)),
        format!("last {}", opt_si(s.last, unit)),
    ]
}

/// The legend's text for a percentile line.
pub fn percentile_cell(label: &str, p: f64, v: Option<f64>, unit: Unit) -> String {
    format!("{p}th percentile {label}: {}", opt_si(v, unit))
}

/// Civil date from days since 1970-01-01 (H. Hinnant's algorithm; the
/// collector has no date crate and needs nothing else from one).
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// A time-axis label (UTC): `HH:MM` for spans up to two days, `MM-DD HH:MM`
/// up to two weeks, `YYYY-MM-DD` beyond.
pub fn time_label(t: f64, span: u64) -> String {
    let t = t.max(0.0) as i64;
    let (y, mo, d) = civil(t.div_euclid(86_400));
    let s = t.rem_euclid(86_400);
    let (h, mi) = (s / 3600, s % 3600 / 60);
    if span <= 2 * 86_400 {
        format!("{h:02}:{mi:02}")
    } else if span <= 14 * 86_400 {
        format!("{mo:02}-{d:02} {h:02}:{mi:02}")
    } else {
        format!("{y}-{mo:02}-{d:02}")
    }
}

/// Time-axis ticks over `(start, end]`: multiples (UTC) of the smallest
/// interval in a fixed list that gives at most 8 labels (bold), and of the
/// next smaller one for the light grid lines.
pub fn time_ticks(start: u64, end: u64) -> (Vec<f64>, Vec<f64>) {
    const STEPS: [u64; 15] = [
        10,
        30,
        60,
        300,
        600,
        900,
        1800,
        3600,
        7200,
        10_800,
        21_600,
        43_200,
        86_400,
        7 * 86_400,
        28 * 86_400,
    ];
    let span = end.saturating_sub(start).max(1);
    let i = STEPS
        .iter()
        .position(|s| span / s <= 8)
        .unwrap_or(STEPS.len() - 1);
    let at = |step: u64| -> Vec<f64> {
        let mut v = Vec::new();
        let mut t = start.div_ceil(step) * step;
        while t <= end && v.len() < 200 {
            v.push(t as f64);
            t += step;
        }
        v
    };
    let light = if i > 0 { at(STEPS[i - 1]) } else { Vec::new() };
    (at(STEPS[i]), light)
}

fn ensure_font() -> Result<(), GraphError> {
    static OK: OnceLock<bool> = OnceLock::new();
    if *OK.get_or_init(|| register_font(FAMILY, FontStyle::Normal, FONT).is_ok()) {
        Ok(())
    } else {
        Err(GraphError::Font)
    }
}

fn check(g: &Graph) -> Result<(), GraphError> {
    for (param, value, (min, max)) in [("width", g.width, WIDTH), ("height", g.height, HEIGHT)] {
        if value < min || value > max {
            return Err(GraphError::Size {
                param,
                value,
                min,
                max,
            });
        }
    }
    if g.start >= g.end {
        return Err(GraphError::Range {
            start: g.start,
            end: g.end,
        });
    }
    if g.step == 0 {
        return Err(GraphError::Step);
    }
    if let Some(p) = g.percentile {
        if !(p > 0.0 && p <= 100.0) {
            return Err(GraphError::Percentile(p));
        }
    }
    let want = g.lines.first().map_or(0, |l| l.values.len());
    for l in &g.lines {
        if l.values.len() != want {
            return Err(GraphError::Rows {
                label: l.label.clone(),
                got: l.values.len(),
                want,
            });
        }
    }
    Ok(())
}

/// Renders `g` as PNG or SVG.
pub fn render(g: &Graph, format: Format) -> Result<Vec<u8>, GraphError> {
    check(g)?;
    ensure_font()?;
    let (w, h) = (g.width, g.height);
    match format {
        Format::Png => {
            let mut rgb = vec![0u8; w as usize * h as usize * 3];
            {
                let root = BitMapBackend::with_buffer(&mut rgb, (w, h)).into_drawing_area();
                draw(&root, g)?;
                root.present().map_err(draw_err)?;
            }
            let mut out = Vec::with_capacity(rgb.len() / 8);
            let mut enc = png::Encoder::new(&mut out, w, h);
            enc.set_color(png::ColorType::Rgb);
            enc.set_depth(png::BitDepth::Eight);
            enc.set_compression(png::Compression::Fast);
            let mut wr = enc
                .write_header()
                .map_err(|e| GraphError::Encode(e.to_string()))?;
            wr.write_image_data(&rgb)
                .map_err(|e| GraphError::Encode(e.to_string()))?;
            wr.finish().map_err(|e| GraphError::Encode(e.to_string()))?;
            Ok(out)
        }
        Format::Svg => {
            let mut s = String::new();
            {
                let root = SVGBackend::with_string(&mut s, (w, h)).into_drawing_area();
                draw(&root, g)?;
                root.present().map_err(draw_err)?;
            }
            Ok(s.into_bytes())
        }
    }
}

fn draw_err<E: std::error::Error + Send + Sync>(
    e: plotters::drawing::DrawingAreaErrorKind<E>,
) -> GraphError {
    GraphError::Draw(e.to_string())
}

fn rgb(c: (u8, u8, u8)) -> RGBColor {
    RGBColor(c.0, c.1, c.2)
}

/// Runs of consecutive known rows as step outlines: for each row, its
/// (start, value) and (end, value), clipped to the graph's range.
fn runs(g: &Graph, values: &[f64]) -> Vec<Vec<(f64, f64)>> {
    let (lo, hi) = (g.start as f64, g.end as f64);
    let mut out: Vec<Vec<(f64, f64)>> = Vec::new();
    let mut cur: Vec<(f64, f64)> = Vec::new();
    for (i, v) in values.iter().enumerate() {
        let t1 = (g.first + i as u64 * g.step) as f64;
        let t0 = t1 - g.step as f64;
        let (a, b) = (t0.max(lo), t1.min(hi));
        if !v.is_finite() || a >= b {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            continue;
        }
        cur.push((a, *v));
        cur.push((b, *v));
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

const LEGEND_ROW: u32 = 16;

fn draw<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, g: &Graph) -> Result<(), GraphError>
where
    DB::ErrorType: 'static,
{
    let stats: Vec<LineStats> = g
        .lines
        .iter()
        .map(|l| line_stats(&l.values, g.percentile))
        .collect();
    let pct_rows = if g.percentile.is_some() {
        g.lines.len()
    } else {
        0
    };
    let legend_h = (g.lines.len() + pct_rows) as u32 * LEGEND_ROW + 8;
    // At least 100 pixels stay for the chart (HEIGHT.0 leaves room for a
    // few legend rows).
    let chart_h = g.height.saturating_sub(legend_h).max(100);

    root.fill(&rgb(BACKGROUND)).map_err(draw_err)?;
    let (top, bottom) = root.split_vertically(chart_h);

    let ymax = stats
        .iter()
        .flat_map(|s| [s.max, s.percentile])
        .flatten()
        .fold(0.0f64, f64::max);
    let ymax = if ymax > 0.0 { ymax * 1.08 } else { 1.0 };
    let span = g.end - g.start;
    let unit = g.unit;
    let xfmt = move |x: &f64| time_label(*x, span);
    let yfmt = move |y: &f64| si(*y, unit);

    let (bold, light) = time_ticks(g.start, g.end);
    let mut chart = ChartBuilder::on(&top)
        .caption(&g.title, (FAMILY, 15))
        .margin(6)
        .margin_right(14)
        .x_label_area_size(22)
        .y_label_area_size(78)
        .build_cartesian_2d(g.start as f64..g.end as f64, 0f64..ymax)
        .map_err(draw_err)?;
    chart
        .configure_mesh()
        // Vertical grid lines and time labels are drawn below, at round
        // times (plotters' own key points are round decimal numbers).
        .disable_x_mesh()
        .x_labels(0)
        .y_labels(6)
        .y_label_formatter(&yfmt)
        .label_style((FAMILY, 11))
        .axis_desc_style((FAMILY, 11))
        .y_desc(unit.describe())
        .light_line_style(RGBColor(240, 240, 240))
        .bold_line_style(RGBColor(215, 215, 215))
        .draw()
        .map_err(draw_err)?;

    for (ticks, color) in [(&light, (240, 240, 240)), (&bold, (215, 215, 215))] {
        for t in ticks.iter() {
            chart
                .draw_series(LineSeries::new([(*t, 0.0), (*t, ymax)], rgb(color)))
                .map_err(draw_err)?;
        }
    }
    let label_style = (FAMILY, 11)
        .into_font()
        .color(&BLACK)
        .pos(Pos::new(HPos::Center, VPos::Top));
    for t in &bold {
        let (x, y) = chart.backend_coord(&(*t, 0.0));
        root.draw(&Text::new(xfmt(t), (x, y + 5), &label_style))
            .map_err(draw_err)?;
    }

    // Areas first, lines over them.
    for pass in [Style::Area, Style::Line] {
        for l in g.lines.iter().filter(|l| l.style == pass) {
            for run in runs(g, &l.values) {
                match pass {
                    Style::Area => chart
                        .draw_series(AreaSeries::new(run, 0.0, rgb(AREA_COLOR).filled()))
                        .map_err(draw_err)?,
                    Style::Line => chart
                        .draw_series(LineSeries::new(run, rgb(LINE_COLOR).stroke_width(2)))
                        .map_err(draw_err)?,
                };
            }
        }
    }
    for s in &stats {
        if let Some(p) = s.percentile {
            chart
                .draw_series(LineSeries::new(
                    [(g.start as f64, p), (g.end as f64, p)],
                    rgb(PERCENTILE_COLOR).stroke_width(1),
                ))
                .map_err(draw_err)?;
        }
    }

    // The legend: one row per line, then the percentiles.
    let text = (FAMILY, 12).into_font().color(&BLACK);
    // The label column, then four equal ones (WIDTH.0 leaves each room for
    // "max 999 Mb/s").
    let col = (g.width.saturating_sub(28 + 60) / 4) as i32;
    let x_of = |i: usize| {
        if i == 0 {
            28
        } else {
            28 + 60 + (i as i32 - 1) * col
        }
    };
    let mut y = 4i32;
    let swatch = |y: i32, c: (u8, u8, u8), filled: bool| -> Result<(), GraphError> {
        if filled {
            bottom
                .draw(&Rectangle::new(
                    [(10, y + 2), (22, y + 12)],
                    rgb(c).filled(),
                ))
                .map_err(draw_err)
        } else {
            bottom
                .draw(&Rectangle::new([(10, y + 6), (22, y + 8)], rgb(c).filled()))
                .map_err(draw_err)
        }
    };
    for (l, s) in g.lines.iter().zip(&stats) {
        let (c, filled) = match l.style {
            Style::Area => (AREA_COLOR, true),
            Style::Line => (LINE_COLOR, false),
        };
        swatch(y, c, filled)?;
        for (i, cell) in legend_cells(&l.label, s, unit).iter().enumerate() {
            bottom
                .draw(&Text::new(cell.clone(), (x_of(i), y), &text))
                .map_err(draw_err)?;
        }
        y += LEGEND_ROW as i32;
    }
    if let Some(p) = g.percentile {
        for (l, s) in g.lines.iter().zip(&stats) {
            swatch(y, PERCENTILE_COLOR, false)?;
            bottom
                .draw(&Text::new(
                    percentile_cell(&l.label, p, s.percentile, unit),
                    (28, y),
                    &text,
                ))
                .map_err(draw_err)?;
            y += LEGEND_ROW as i32;
        }
    }
    Ok(())
}
