//! Line charts as server-rendered SVG: no script, no inline style (colours
//! come from the stylesheet's series classes `s0`…`s5`). Each chart's data
//! is also given as a table by the page that draws it.

use std::fmt::Write as _;

use maud::{Markup, html};

use crate::console::layout::raw;

/// The drawing's size, in SVG units (it scales to the page's width).
const W: f64 = 640.0;
const H: f64 = 220.0;
const LEFT: f64 = 56.0;
const RIGHT: f64 = 12.0;
const TOP: f64 = 12.0;
const BOTTOM: f64 = 28.0;

/// The most points a series marks with dots.
const MAX_DOTS: usize = 60;

/// A series: its name and a value per point (`None`: no value there).
pub(crate) struct Series<'a> {
    pub name: &'a str,
    pub values: Vec<Option<f64>>,
}

/// How the y axis reads.
#[derive(Clone, Copy)]
pub(crate) enum Unit {
    Count,
    Percent,
}

impl Unit {
    fn label(self, v: f64) -> String {
        match self {
            Self::Count => format!("{v:.0}"),
            Self::Percent => format!("{:.1}%", v * 100.0),
        }
    }
}

/// Escapes text for SVG.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A chart of `series` at the points `xs` (fractions 0 to 1 of the range),
/// labelled `first` and `last` under the x axis.
pub(crate) fn line_chart(
    caption: &str,
    xs: &[f64],
    first: &str,
    last: &str,
    series: &[Series<'_>],
    unit: Unit,
) -> Markup {
    let max = series
        .iter()
        .flat_map(|s| s.values.iter().flatten())
        .fold(0.0_f64, |m, v| m.max(*v));
    let top = match unit {
        // A multiple of 4, so that every grid line is a whole count.
        Unit::Count => ((max * 1.1).ceil().max(1.0) / 4.0).ceil() * 4.0,
        Unit::Percent => (max * 1.1).max(0.01),
    };
    let x = |f: f64| LEFT + f.clamp(0.0, 1.0) * (W - LEFT - RIGHT);
    let y = |v: f64| TOP + (1.0 - v / top) * (H - TOP - BOTTOM);
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg viewBox="0 0 {W} {H}" role="img" aria-label="{}" xmlns="http://www.w3.org/2000/svg">"#,
        esc(caption)
    );
    for i in 0..=4 {
        let v = top * f64::from(i) / 4.0;
        let _ = write!(
            svg,
            r#"<line class="grid" x1="{LEFT}" x2="{:.1}" y1="{:.1}" y2="{:.1}"/><text class="axis" x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
            W - RIGHT,
            y(v),
            y(v),
            LEFT - 6.0,
            y(v) + 4.0,
            esc(&unit.label(v))
        );
    }
    let _ = write!(
        svg,
        r#"<text class="axis" x="{LEFT}" y="{:.1}">{}</text><text class="axis" x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
        H - 8.0,
        esc(first),
        W - RIGHT,
        H - 8.0,
        esc(last)
    );
    for (i, s) in series.iter().enumerate() {
        let class = format!("s{}", i % 6);
        let points: Vec<String> = xs
            .iter()
            .zip(&s.values)
            .filter_map(|(f, v)| v.map(|v| format!("{:.1},{:.1}", x(*f), y(v))))
            .collect();
        if points.len() > 1 {
            let _ = write!(
                svg,
                r#"<polyline class="line {class}" points="{}"/>"#,
                points.join(" ")
            );
        }
        // Dots mark the points when they are few enough to tell apart.
        for p in points.iter().filter(|_| points.len() <= MAX_DOTS) {
            if let Some((px, py)) = p.split_once(',') {
                let _ = write!(
                    svg,
                    r#"<circle class="{class}" cx="{px}" cy="{py}" r="2.5" fill="currentColor"/>"#
                );
            }
        }
    }
    svg.push_str("</svg>");
    html! {
        figure.chart {
            figcaption { (caption) }
            (raw(svg))
            ul.legend {
                @for (i, s) in series.iter().enumerate() {
                    li class=(format!("s{}", i % 6)) { (s.name) }
                }
            }
        }
    }
}
