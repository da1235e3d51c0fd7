//! The figures, drawn with plotters on any backend (SVG text, or an RGB buffer for PNG).
//!
//! Each figure is a plain struct of the numbers it shows; `draw` lays it out. Categorical axes
//! (classes, variants) are f64 axes with the category names written under integer positions.

use plotters::coord::ranged1d::Ranged;
use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::stats::{BoxStats, CurveBand};

/// Distinct colours for variants and classes (the tab10 palette).
const PALETTE: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

pub fn color(i: usize) -> RGBColor {
    PALETTE[i % PALETTE.len()]
}

const FONT: &str = "sans-serif";

/// Turns a plotters error into anyhow (their error types differ per backend).
fn ok<T, E: std::fmt::Display>(r: Result<T, E>) -> anyhow::Result<T> {
    r.map_err(|e| anyhow::anyhow!("drawing a figure: {e}"))
}

/// One variant's diagram of the sample shown.
#[derive(Debug, Clone)]
pub struct VariantPoints {
    pub variant: String,
    /// (birth, death), birth >= death.
    pub pairs: Vec<(f64, f64)>,
    pub essential: Vec<f64>,
}

/// One sample's persistence diagram (left) and barcode (right), its variants overlaid.
#[derive(Debug, Clone)]
pub struct DiagramFigure {
    pub title: String,
    pub variants: Vec<VariantPoints>,
    /// Bars per variant in the barcode: the most persistent ones.
    pub bars: usize,
}

/// Mean Betti-0 curve per class with its 10-90% band.
#[derive(Debug, Clone)]
pub struct BettiFigure {
    pub title: String,
    pub thresholds: Vec<f64>,
    /// (legend name, band).
    pub bands: Vec<(String, CurveBand)>,
}

/// Box plots: per category (class) one box per series (variant).
#[derive(Debug, Clone)]
pub struct BoxFigure {
    pub title: String,
    pub y_desc: String,
    pub categories: Vec<String>,
    pub series: Vec<String>,
    /// [category][series].
    pub boxes: Vec<Vec<Option<BoxStats>>>,
}

/// Grouped bars: per category one bar per series.
#[derive(Debug, Clone)]
pub struct BarFigure {
    pub title: String,
    pub y_desc: String,
    pub categories: Vec<String>,
    /// (legend name, one value per category).
    pub series: Vec<(String, Vec<Option<f64>>)>,
}

/// A figure of any kind.
#[derive(Debug, Clone)]
pub enum Figure {
    Diagram(DiagramFigure),
    Betti(BettiFigure),
    Boxes(BoxFigure),
    Bars(BarFigure),
}

impl Figure {
    pub fn size(&self) -> (u32, u32) {
        match self {
            Figure::Diagram(_) => (1200, 560),
            _ => (960, 540),
        }
    }

    pub fn title(&self) -> &str {
        match self {
            Figure::Diagram(f) => &f.title,
            Figure::Betti(f) => &f.title,
            Figure::Boxes(f) => &f.title,
            Figure::Bars(f) => &f.title,
        }
    }

    pub fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> anyhow::Result<()> {
        ok(root.fill(&WHITE))?;
        match self {
            Figure::Diagram(f) => draw_diagram(f, root),
            Figure::Betti(f) => draw_betti(f, root),
            Figure::Boxes(f) => draw_boxes(f, root),
            Figure::Bars(f) => draw_bars(f, root),
        }
    }
}

/// (lo, hi) of the values, padded by 5% so points on the edge stay visible.
fn padded_range(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    if lo.partial_cmp(&hi).is_none_or(|o| o.is_gt()) {
        return (0.0, 1.0);
    }
    let pad = ((hi - lo) * 0.05).max(1e-9);
    (lo - pad, hi + pad)
}

fn draw_diagram<DB: DrawingBackend>(
    f: &DiagramFigure,
    root: &DrawingArea<DB, Shift>,
) -> anyhow::Result<()> {
    let values = f.variants.iter().flat_map(|v| {
        v.pairs
            .iter()
            .flat_map(|&(b, d)| [b, d])
            .chain(v.essential.iter().copied())
    });
    let (lo, hi) = padded_range(values);
    let root = ok(root.titled(&f.title, (FONT, 22)))?;
    let (left, right) = root.split_horizontally(560);
    diagram_panel(f, &left, lo, hi)?;
    barcode_panel(f, &right, lo, hi)
}

fn diagram_panel<DB: DrawingBackend>(
    f: &DiagramFigure,
    area: &DrawingArea<DB, Shift>,
    lo: f64,
    hi: f64,
) -> anyhow::Result<()> {
    let mut chart = ok(ChartBuilder::on(area)
        .caption("persistence diagram (H0, superlevel)", (FONT, 16))
        .margin(12)
        .x_label_area_size(44)
        .y_label_area_size(56)
        .build_cartesian_2d(lo..hi, lo..hi))?;
    ok(chart
        .configure_mesh()
        .light_line_style(BLACK.mix(0.03))
        .x_desc("birth (edge weight)")
        .y_desc("death (edge weight)")
        .draw())?;
    ok(chart.draw_series(LineSeries::new([(lo, lo), (hi, hi)], BLACK.mix(0.5))))?;
    for (i, v) in f.variants.iter().enumerate() {
        let c = color(i);
        let size = if i == 0 { 4 } else { 3 };
        let points = v
            .pairs
            .iter()
            .map(move |&p| Circle::new(p, size, c.mix(0.7).filled()));
        ok(chart.draw_series(points))?
            .label(format!("{} ({} pairs)", v.variant, v.pairs.len()))
            .legend(move |(x, y)| Circle::new((x + 8, y), 4, c.filled()));
        let essential = v
            .essential
            .iter()
            .map(move |&b| TriangleMarker::new((b, lo), 6, c.filled()));
        let drawn = ok(chart.draw_series(essential))?;
        if i == 0 {
            drawn
                .label("essential classes (bottom edge: never die)")
                .legend(|(x, y)| TriangleMarker::new((x + 8, y), 5, BLACK.mix(0.6).filled()));
        }
    }
    ok(chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.4))
        .label_font((FONT, 13))
        .draw())
}

fn barcode_panel<DB: DrawingBackend>(
    f: &DiagramFigure,
    area: &DrawingArea<DB, Shift>,
    lo: f64,
    hi: f64,
) -> anyhow::Result<()> {
    // Per variant its most persistent bars (essential first), stacked in one band per variant.
    let mut rows: Vec<(usize, f64, f64, bool)> = Vec::new();
    for (i, v) in f.variants.iter().enumerate() {
        let mut bars: Vec<(f64, f64, bool)> = v.essential.iter().map(|&b| (b, lo, true)).collect();
        let mut finite: Vec<(f64, f64, bool)> =
            v.pairs.iter().map(|&(b, d)| (b, d, false)).collect();
        finite.sort_by(|a, b| (b.0 - b.1).total_cmp(&(a.0 - a.1)));
        bars.extend(finite);
        rows.extend(bars.into_iter().take(f.bars).map(|(b, d, e)| (i, b, d, e)));
    }
    let n = rows.len().max(1) as f64;
    let mut chart = ok(ChartBuilder::on(area)
        .caption(
            format!("barcode: {} most persistent bars per variant", f.bars),
            (FONT, 16),
        )
        .margin(12)
        .x_label_area_size(44)
        .y_label_area_size(30)
        .build_cartesian_2d(lo..hi, 0.0..n))?;
    ok(chart
        .configure_mesh()
        .disable_y_mesh()
        .light_line_style(BLACK.mix(0.03))
        .y_labels(0)
        .x_desc("edge weight (a bar spans death .. birth)")
        .y_desc("bars")
        .draw())?;
    let bars = rows.iter().enumerate().map(|(row, &(i, b, d, essential))| {
        let y = n - row as f64 - 0.5;
        let style = if essential {
            color(i).stroke_width(3)
        } else {
            color(i).stroke_width(2)
        };
        PathElement::new(vec![(d, y), (b, y)], style)
    });
    ok(chart.draw_series(bars))?;
    Ok(())
}

fn draw_betti<DB: DrawingBackend>(
    f: &BettiFigure,
    root: &DrawingArea<DB, Shift>,
) -> anyhow::Result<()> {
    let x = &f.thresholds;
    let (x0, x1) = (
        x.first().copied().unwrap_or(0.0),
        x.last().copied().unwrap_or(1.0),
    );
    let top = f
        .bands
        .iter()
        .flat_map(|(_, b)| b.high.iter().chain(&b.mean))
        .fold(1.0f64, |m, &v| m.max(v));
    let mut chart = ok(ChartBuilder::on(root)
        .caption(&f.title, (FONT, 20))
        .margin(14)
        .x_label_area_size(44)
        .y_label_area_size(56)
        .build_cartesian_2d(x0..x1, 0.0..top * 1.05))?;
    ok(chart
        .configure_mesh()
        .light_line_style(BLACK.mix(0.03))
        .x_desc("threshold t (edge weight; the graph holds the edges of weight ≥ t)")
        .y_desc("Betti-0: components alive at t")
        .draw())?;
    for (i, (name, band)) in f.bands.iter().enumerate() {
        let c = color(i);
        let outline: Vec<(f64, f64)> = x
            .iter()
            .zip(&band.high)
            .map(|(&t, &v)| (t, v))
            .chain(x.iter().zip(&band.low).rev().map(|(&t, &v)| (t, v)))
            .collect();
        ok(chart.draw_series(std::iter::once(Polygon::new(outline, c.mix(0.12)))))?;
        let mean = x.iter().zip(&band.mean).map(|(&t, &v)| (t, v));
        ok(chart.draw_series(LineSeries::new(mean, c.stroke_width(2))))?
            .label(format!("{name} (n = {})", band.samples))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], c.stroke_width(2)));
    }
    legend(&mut chart, SeriesLabelPosition::UpperRight)
}

fn legend<'a, DB: DrawingBackend + 'a, X: Ranged, Y: Ranged>(
    chart: &mut ChartContext<'a, DB, Cartesian2d<X, Y>>,
    position: SeriesLabelPosition,
) -> anyhow::Result<()> {
    ok(chart
        .configure_series_labels()
        .position(position)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.4))
        .label_font((FONT, 13))
        .draw())
}

/// A chart with one slot per category on x (category i centred at x = i) and the names below.
fn category_chart<'a, DB: DrawingBackend>(
    root: &'a DrawingArea<DB, Shift>,
    title: &str,
    y_desc: &str,
    categories: &[String],
    (y0, y1): (f64, f64),
) -> anyhow::Result<ChartContext<'a, DB, Cartesian2d<RangedCoordf64, RangedCoordf64>>> {
    let n = categories.len().max(1) as f64;
    let mut chart = ok(ChartBuilder::on(root)
        .caption(title, (FONT, 20))
        .margin(14)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(-0.5..n - 0.5, y0..y1))?;
    ok(chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(0)
        .light_line_style(BLACK.mix(0.03))
        .y_desc(y_desc)
        .draw())?;
    let style = (FONT, 13)
        .into_font()
        .color(&BLACK)
        .pos(Pos::new(HPos::Center, VPos::Top));
    for (i, name) in categories.iter().enumerate() {
        let (px, py) = chart.backend_coord(&(i as f64, y0));
        ok(root.draw(&Text::new(name.clone(), (px, py + 8), style.clone())))?;
    }
    Ok(chart)
}

/// Left edge and width of series `s` of `count` within a category slot of width 0.8.
fn slot(category: usize, s: usize, count: usize) -> (f64, f64) {
    let w = 0.8 / count.max(1) as f64;
    (category as f64 - 0.4 + w * s as f64, w)
}

fn draw_boxes<DB: DrawingBackend>(
    f: &BoxFigure,
    root: &DrawingArea<DB, Shift>,
) -> anyhow::Result<()> {
    let all = f.boxes.iter().flatten().flatten();
    let (y0, y1) = padded_range(all.flat_map(|b| [b.p10, b.p90]));
    let y1 = y1 + (y1 - y0) * HEADROOM;
    let mut chart = category_chart(root, &f.title, &f.y_desc, &f.categories, (y0, y1))?;
    for (s, name) in f.series.iter().enumerate() {
        let c = color(s);
        let mut shapes: Vec<PathElement<(f64, f64)>> = Vec::new();
        let mut rects = Vec::new();
        for (k, per_series) in f.boxes.iter().enumerate() {
            let Some(b) = per_series.get(s).copied().flatten() else {
                continue;
            };
            let (x, w) = slot(k, s, f.series.len());
            let (l, r, m) = (x + w * 0.15, x + w * 0.85, x + w * 0.5);
            rects.push(Rectangle::new([(l, b.q1), (r, b.q3)], c.mix(0.35).filled()));
            rects.push(Rectangle::new([(l, b.q1), (r, b.q3)], c.stroke_width(1)));
            shapes.push(PathElement::new(
                vec![(l, b.median), (r, b.median)],
                c.stroke_width(2),
            ));
            shapes.push(PathElement::new(
                vec![(m, b.p10), (m, b.q1)],
                c.stroke_width(1),
            ));
            shapes.push(PathElement::new(
                vec![(m, b.q3), (m, b.p90)],
                c.stroke_width(1),
            ));
        }
        ok(chart.draw_series(rects))?
            .label(name.clone())
            .legend(move |(x, y)| {
                Rectangle::new([(x, y - 5), (x + 12, y + 5)], c.mix(0.5).filled())
            });
        ok(chart.draw_series(shapes))?;
    }
    legend_outside(&mut chart)
}

fn draw_bars<DB: DrawingBackend>(
    f: &BarFigure,
    root: &DrawingArea<DB, Shift>,
) -> anyhow::Result<()> {
    let values = f
        .series
        .iter()
        .flat_map(|(_, v)| v.iter().flatten().copied());
    let top = values.clone().fold(0.0f64, f64::max);
    let bottom = values.fold(0.0f64, f64::min);
    let pad = ((top - bottom) * 0.05).max(1e-9);
    let mut chart = category_chart(
        root,
        &f.title,
        &f.y_desc,
        &f.categories,
        (
            bottom.min(0.0) - if bottom < 0.0 { pad } else { 0.0 },
            top + pad + (top - bottom.min(0.0)) * HEADROOM,
        ),
    )?;
    for (s, (name, v)) in f.series.iter().enumerate() {
        let c = color(s);
        let bars = v.iter().enumerate().filter_map(|(k, value)| {
            let (x, w) = slot(k, s, f.series.len());
            value.map(|y| Rectangle::new([(x + w * 0.05, 0.0), (x + w * 0.95, y)], c.filled()))
        });
        ok(chart.draw_series(bars))?
            .label(name.clone())
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], c.filled()));
    }
    legend_outside(&mut chart)
}

/// The legend in the top right corner, over the headroom `HEADROOM` leaves above the data.
fn legend_outside<'a, DB: DrawingBackend + 'a>(
    chart: &mut ChartContext<'a, DB, Cartesian2d<RangedCoordf64, RangedCoordf64>>,
) -> anyhow::Result<()> {
    legend(chart, SeriesLabelPosition::UpperRight)
}

/// Room above the data of a categorical chart for its legend, as a fraction of the data range.
const HEADROOM: f64 = 0.35;
