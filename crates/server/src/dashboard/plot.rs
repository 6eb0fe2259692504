//! Line charts as inline SVG, drawn on the server: no script or library in the browser, and a
//! live fragment carries its charts with its numbers.

use maud::{Markup, html};

/// Drawing area in SVG user units (the chart scales to its box).
const WIDTH: f64 = 600.0;
const HEIGHT: f64 = 170.0;
const LEFT: f64 = 52.0;
const RIGHT: f64 = 8.0;
const TOP: f64 = 10.0;
const BOTTOM: f64 = 22.0;

/// One line: `(seconds before now, value)`, oldest first; `None` leaves a gap.
pub struct Series<'a> {
    pub name: &'a str,
    /// CSS class giving the line its colour (`s-1` .. `s-3`).
    pub class: &'static str,
    pub points: Vec<(f64, Option<f64>)>,
}

/// The smallest of 1, 2 or 5 times a power of ten at or above `x` (1 for nothing to show).
pub fn nice_ceiling(x: f64) -> f64 {
    // NaN, infinities, zero and below.
    if !x.is_finite() || x <= 0.0 {
        return 1.0;
    }
    let magnitude = 10f64.powf(x.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * magnitude)
        .find(|v| *v >= x * (1.0 - 1e-12))
        .unwrap_or(10.0 * magnitude)
}

/// A number for an axis or a card: three significant figures at most, `k` and `M` for
/// thousands and millions.
pub fn compact(x: f64) -> String {
    let a = x.abs();
    let (v, suffix) = if a >= 1e6 {
        (x / 1e6, "M")
    } else if a >= 1e3 {
        (x / 1e3, "k")
    } else {
        (x, "")
    };
    let text = if v.abs() >= 100.0 || v.fract() == 0.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    };
    let text = if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        text
    };
    format!("{text}{suffix}")
}

/// The polylines of a series: runs of points without gaps, each as SVG `points` text.
fn lines(points: &[(f64, Option<f64>)], window_s: f64, y_max: f64) -> Vec<String> {
    let x_of = |t: f64| LEFT + (WIDTH - LEFT - RIGHT) * (1.0 - (t / window_s).clamp(0.0, 1.0));
    let y_of = |v: f64| TOP + (HEIGHT - TOP - BOTTOM) * (1.0 - (v / y_max).clamp(0.0, 1.0));
    let mut out = Vec::new();
    let mut run = String::new();
    for (t, v) in points {
        match v {
            Some(v) if *t <= window_s => {
                if !run.is_empty() {
                    run.push(' ');
                }
                run.push_str(&format!("{:.1},{:.1}", x_of(*t), y_of(*v)));
            }
            _ => {
                if !run.is_empty() {
                    out.push(std::mem::take(&mut run));
                }
            }
        }
    }
    if !run.is_empty() {
        out.push(run);
    }
    out
}

/// A chart of `series` over the last `window_s` seconds, values in `unit`, with its title,
/// the y axis from 0 to a round maximum and a legend giving each line's latest value.
pub fn chart(id: &str, title: &str, unit: &str, window_s: f64, series: &[Series]) -> Markup {
    let y_max = nice_ceiling(
        series
            .iter()
            .flat_map(|s| s.points.iter().filter(|(t, _)| *t <= window_s))
            .filter_map(|(_, v)| *v)
            .fold(0.0, f64::max),
    );
    let empty = series
        .iter()
        .all(|s| s.points.iter().all(|(_, v)| v.is_none()));
    let plot_bottom = HEIGHT - BOTTOM;
    html! {
        figure.chart id=(id) {
            figcaption { (title) " " span.unit { "(" (unit) ")" } }
            svg viewBox=(format!("0 0 {WIDTH} {HEIGHT}")) role="img" aria-label=(title) {
                @for i in 0..=2 {
                    @let v = y_max * f64::from(i) / 2.0;
                    @let y = TOP + (plot_bottom - TOP) * (1.0 - f64::from(i) / 2.0);
                    line.grid x1=(LEFT) x2=(WIDTH - RIGHT) y1=(y) y2=(y) {}
                    text.tick x=(LEFT - 6.0) y=(y + 4.0) text-anchor="end" { (compact(v)) }
                }
                text.tick x=(LEFT) y=(HEIGHT - 6.0) { "-" (compact(window_s / 60.0)) " min" }
                text.tick x=(WIDTH - RIGHT) y=(HEIGHT - 6.0) text-anchor="end" { "now" }
                @for s in series {
                    @for points in lines(&s.points, window_s, y_max) {
                        polyline class=(format!("line {}", s.class)) points=(points) {}
                    }
                }
                @if empty {
                    text.empty x=(WIDTH / 2.0) y=(HEIGHT / 2.0) text-anchor="middle" {
                        "no samples yet"
                    }
                }
            }
            ul.legend {
                @for s in series {
                    li class=(s.class) {
                        (s.name) ": "
                        @match s.points.iter().rev().find_map(|(_, v)| *v) {
                            Some(v) => { (compact(v)) " " (unit) }
                            None => { "–" }
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axes_end_on_round_numbers() {
        for (x, want) in [
            (0.0, 1.0),
            (-3.0, 1.0),
            (f64::NAN, 1.0),
            (0.3, 0.5),
            (1.0, 1.0),
            (1.01, 2.0),
            (7.0, 10.0),
            (120.0, 200.0),
            (4999.0, 5000.0),
        ] {
            assert_eq!(nice_ceiling(x), want, "{x}");
        }
    }

    #[test]
    fn numbers_are_short() {
        for (x, want) in [
            (0.0, "0"),
            (0.126, "0.13"),
            (2.5, "2.5"),
            (12.34, "12.3"),
            (512.0, "512"),
            (1500.0, "1.5k"),
            (25_000.0, "25k"),
            (3_200_000.0, "3.2M"),
        ] {
            assert_eq!(compact(x), want, "{x}");
        }
    }

    #[test]
    fn lines_scale_to_the_plot_and_break_at_gaps() {
        // 60 s window, y up to 10: t = 60 s is the left edge, t = 0 the right one.
        let points = [
            (60.0, Some(0.0)),
            (0.0, Some(10.0)),
            (0.0, None),
            (30.0, Some(5.0)),
            (90.0, Some(1.0)),
        ];
        let runs = lines(&points, 60.0, 10.0);
        assert_eq!(runs, ["52.0,148.0 592.0,10.0", "322.0,79.0"]);
    }

    #[test]
    fn a_chart_escapes_its_text_and_says_when_it_is_empty() {
        let html = chart(
            "c",
            "<b>load</b>",
            "/s",
            600.0,
            &[Series {
                name: "events",
                class: "s-1",
                points: vec![(10.0, None)],
            }],
        )
        .into_string();
        assert!(html.contains("&lt;b&gt;load&lt;/b&gt;"), "{html}");
        assert!(html.contains("no samples yet"), "{html}");
        let html = chart(
            "c",
            "load",
            "/s",
            600.0,
            &[Series {
                name: "events",
                class: "s-1",
                points: vec![(20.0, Some(3.0)), (10.0, Some(4.0))],
            }],
        )
        .into_string();
        assert!(html.contains("<polyline class=\"line s-1\""), "{html}");
        assert!(html.contains("events: 4 /s"), "{html}");
        assert!(html.contains(">5</text>"), "the axis ends at 5: {html}");
    }
}
