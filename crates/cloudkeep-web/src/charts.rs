//! Charts as SVG written on the server: deterministic (the same figures
//! give the same bytes, so they are snapshot-tested), styled by classes
//! only (the Content-Security-Policy forbids inline styles), and
//! accessible: `role="img"` with a title and a description, and every
//! chart has a [`Table`] of the same figures that pages show beside it.

use std::fmt::Write;

/// How a chart's values read.
#[derive(Debug, Clone, PartialEq)]
pub enum Unit {
    Money(String),
    Percent,
    Count,
}

impl Unit {
    pub fn format(&self, v: f64) -> String {
        match self {
            Unit::Money(currency) => crate::format::money(v, currency),
            Unit::Percent => crate::format::percent(v),
            Unit::Count => crate::format::count(v.max(0.0).round() as u64),
        }
    }

    /// Axis labels: shorter than `format` (no cents on large amounts).
    fn tick(&self, v: f64) -> String {
        match self {
            Unit::Money(_) if v.abs() >= 1000.0 => {
                let k = v / 1000.0;
                if (k - k.round()).abs() < 1e-9 {
                    format!("{}k", k.round() as i64)
                } else {
                    format!("{k:.1}k")
                }
            }
            Unit::Money(_) => trim(v),
            Unit::Percent => format!("{}%", trim(v * 100.0)),
            Unit::Count => crate::format::count(v.max(0.0).round() as u64),
        }
    }
}

fn trim(v: f64) -> String {
    let s = format!("{v:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// The same figures as a chart, for a `<table>` beside it.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    pub caption: String,
    pub columns: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

#[derive(Debug, Clone)]
pub struct Series {
    pub name: String,
    /// One value per x label; `None` where there is none (a gap).
    pub values: Vec<Option<f64>>,
    /// Drawn dashed (a forecast, a projection).
    pub dashed: bool,
}

/// Lines over labelled x positions (days, months), with an optional
/// horizontal reference (a budget).
#[derive(Debug, Clone)]
pub struct LineChart {
    /// Prefix of the element ids (unique within the page).
    pub id: String,
    pub title: String,
    pub description: String,
    /// What the x labels are ("Day", "Month"): the table's first column.
    pub x_name: String,
    pub x_labels: Vec<String>,
    pub series: Vec<Series>,
    pub unit: Unit,
    pub reference: Option<(String, f64)>,
}

/// A shaded range behind a line chart's lines (the range a value is
/// expected in): a low and a high per x label, `None` where there is none.
#[derive(Debug, Clone)]
pub struct Band {
    pub name: String,
    pub low: Vec<Option<f64>>,
    pub high: Vec<Option<f64>>,
}

/// A run of x labels marked behind the lines (an incident's days), both
/// ends included.
#[derive(Debug, Clone)]
pub struct Span {
    pub name: String,
    pub first: usize,
    pub last: usize,
}

const W: f64 = 640.0;
const H: f64 = 240.0;
const LEFT: f64 = 56.0;
const RIGHT: f64 = 12.0;
const TOP: f64 = 12.0;
const BOTTOM: f64 = 28.0;

/// A round axis maximum at or above `max`: 1, 2, 2.5 or 5 times a power of ten.
pub fn nice_max(max: f64) -> f64 {
    if max <= 0.0 || !max.is_finite() {
        return 1.0;
    }
    let power = 10f64.powf(max.log10().floor());
    for step in [1.0, 2.0, 2.5, 5.0, 10.0] {
        if step * power >= max * (1.0 - 1e-12) {
            return step * power;
        }
    }
    10.0 * power
}

fn num(v: f64) -> String {
    // One decimal is finer than a pixel; fixed, so output is byte-stable.
    let s = format!("{v:.1}");
    s.strip_suffix(".0").map(str::to_string).unwrap_or(s)
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn open_svg(out: &mut String, id: &str, title: &str, description: &str, height: f64) {
    let id = esc(id);
    let _ = write!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img" viewBox="0 0 {w} {h}" aria-labelledby="{id}-title {id}-desc"><title id="{id}-title">{t}</title><desc id="{id}-desc">{d}</desc>"#,
        w = num(W),
        h = num(height),
        t = esc(title),
        d = esc(description),
    );
}

impl LineChart {
    fn top(&self, band: Option<&Band>) -> f64 {
        let data = self
            .series
            .iter()
            .flat_map(|s| s.values.iter().flatten().copied())
            .chain(
                band.into_iter()
                    .flat_map(|b| b.high.iter().flatten().copied()),
            )
            .fold(0.0f64, f64::max);
        nice_max(data.max(self.reference.as_ref().map(|r| r.1).unwrap_or(0.0)))
    }

    pub fn svg(&self) -> String {
        self.svg_with(None, None)
    }

    /// The chart with a band behind its lines (an expected range) and a
    /// span of days marked (an incident).
    pub fn svg_with(&self, band: Option<&Band>, span: Option<&Span>) -> String {
        let mut out = String::new();
        open_svg(&mut out, &self.id, &self.title, &self.description, H);
        let top = self.top(band);
        let plot_w = W - LEFT - RIGHT;
        let plot_h = H - TOP - BOTTOM;
        let n = self.x_labels.len().max(1);
        let x = |i: usize| {
            if n == 1 {
                LEFT + plot_w / 2.0
            } else {
                LEFT + plot_w * i as f64 / (n - 1) as f64
            }
        };
        let y = |v: f64| TOP + plot_h * (1.0 - v / top);
        // Grid and y axis: five steps.
        for step in 0..=4 {
            let v = top * step as f64 / 4.0;
            let _ = write!(
                out,
                r#"<line class="grid-line" x1="{l}" x2="{r}" y1="{yv}" y2="{yv}"/><text x="{tx}" y="{ty}" text-anchor="end">{label}</text>"#,
                l = num(LEFT),
                r = num(W - RIGHT),
                yv = num(y(v)),
                tx = num(LEFT - 6.0),
                ty = num(y(v) + 4.0),
                label = esc(&self.unit.tick(v)),
            );
        }
        let _ = write!(
            out,
            r#"<line class="axis" x1="{l}" x2="{r}" y1="{b}" y2="{b}"/>"#,
            l = num(LEFT),
            r = num(W - RIGHT),
            b = num(TOP + plot_h),
        );
        // At most about eight x labels, evenly spaced, always the last; a
        // spaced label closer to the last than the spacing gives way, so none
        // overlap.
        let every = n.div_ceil(8).max(1);
        for (i, label) in self.x_labels.iter().enumerate() {
            let spaced = i % every == 0 && n - 1 - i >= every;
            if spaced || i == n - 1 {
                // The last label ends at the plot's right edge rather than
                // centring on its point, where the margin would clip it.
                let last = n > 1 && i == n - 1;
                let _ = write!(
                    out,
                    r#"<text x="{tx}" y="{ty}" text-anchor="{anchor}">{label}</text>"#,
                    tx = num(if last { x(i) + RIGHT - 2.0 } else { x(i) }),
                    anchor = if last { "end" } else { "middle" },
                    ty = num(H - 8.0),
                    label = esc(label),
                );
            }
        }
        if let Some(span) = span.filter(|s| s.first <= s.last && s.last < n) {
            // Half a step either side of the span's days (the plot's edge at most).
            let half = if n > 1 {
                plot_w / (n - 1) as f64 / 2.0
            } else {
                plot_w / 2.0
            };
            let x1 = (x(span.first) - half).max(LEFT);
            let x2 = (x(span.last) + half).min(W - RIGHT);
            let _ = write!(
                out,
                r#"<rect class="span" x="{x}" y="{y}" width="{w}" height="{h}"><title>{name}</title></rect>"#,
                x = num(x1),
                y = num(TOP),
                w = num(x2 - x1),
                h = num(plot_h),
                name = esc(&span.name),
            );
        }
        if let Some(band) = band {
            // One polygon per run of days that have both ends: along the
            // highs, then back along the lows.
            let mut runs: Vec<Vec<(usize, f64, f64)>> = vec![Vec::new()];
            for i in 0..n {
                match (
                    band.low.get(i).copied().flatten(),
                    band.high.get(i).copied().flatten(),
                ) {
                    (Some(lo), Some(hi)) => {
                        if let Some(r) = runs.last_mut() {
                            r.push((i, lo, hi));
                        }
                    }
                    _ => runs.push(Vec::new()),
                }
            }
            for run in runs.iter().filter(|r| !r.is_empty()) {
                let points: Vec<String> = run
                    .iter()
                    .map(|(i, _, hi)| format!("{},{}", num(x(*i)), num(y(*hi))))
                    .chain(
                        run.iter()
                            .rev()
                            .map(|(i, lo, _)| format!("{},{}", num(x(*i)), num(y(lo.max(0.0))))),
                    )
                    .collect();
                let _ = write!(
                    out,
                    r#"<polygon class="band" points="{}"><title>{}</title></polygon>"#,
                    points.join(" "),
                    esc(&band.name),
                );
            }
        }
        if let Some((name, v)) = &self.reference {
            let _ = write!(
                out,
                r#"<line class="budget" x1="{l}" x2="{r}" y1="{yv}" y2="{yv}"><title>{name}: {value}</title></line>"#,
                l = num(LEFT),
                r = num(W - RIGHT),
                yv = num(y(*v)),
                name = esc(name),
                value = esc(&self.unit.format(*v)),
            );
        }
        for (k, s) in self.series.iter().enumerate() {
            let class = format!(
                "line series-{}{}",
                k % 4,
                if s.dashed { " dashed" } else { "" }
            );
            // A gap breaks the line into runs.
            let mut runs: Vec<Vec<(usize, f64)>> = vec![Vec::new()];
            for (i, v) in s.values.iter().enumerate() {
                match v {
                    Some(v) => runs.last_mut().map(|r| r.push((i, *v))).unwrap_or(()),
                    None => runs.push(Vec::new()),
                }
            }
            for run in runs.iter().filter(|r| !r.is_empty()) {
                let points: Vec<String> = run
                    .iter()
                    .map(|(i, v)| format!("{},{}", num(x(*i)), num(y(*v))))
                    .collect();
                let _ = write!(
                    out,
                    r#"<polyline class="{class}" points="{}"/>"#,
                    points.join(" ")
                );
            }
            for (i, v) in s.values.iter().enumerate() {
                if let Some(v) = v {
                    let _ = write!(
                        out,
                        r#"<circle class="series-{c}" cx="{cx}" cy="{cy}" r="2.5"><title>{name}, {label}: {value}</title></circle>"#,
                        c = k % 4,
                        cx = num(x(i)),
                        cy = num(y(*v)),
                        name = esc(&s.name),
                        label = esc(self.x_labels.get(i).map(String::as_str).unwrap_or("")),
                        value = esc(&self.unit.format(*v)),
                    );
                }
            }
        }
        // The legend, when there is more than one thing to tell apart.
        if self.series.len() > 1 || self.reference.is_some() || band.is_some() {
            let mut lx = LEFT + 8.0;
            if let Some(band) = band {
                let _ = write!(
                    out,
                    r#"<rect class="band" x="{x}" y="{y}" width="10" height="10"/><text x="{tx}" y="{ty}">{name}</text>"#,
                    x = num(lx),
                    y = num(TOP + 2.0),
                    tx = num(lx + 14.0),
                    ty = num(TOP + 11.0),
                    name = esc(&band.name),
                );
                lx += 24.0 + 6.5 * band.name.chars().count() as f64;
            }
            for (k, s) in self.series.iter().enumerate() {
                let _ = write!(
                    out,
                    r#"<rect class="bar series-{c}" x="{x}" y="{y}" width="10" height="10"/><text x="{tx}" y="{ty}">{name}</text>"#,
                    c = k % 4,
                    x = num(lx),
                    y = num(TOP + 2.0),
                    tx = num(lx + 14.0),
                    ty = num(TOP + 11.0),
                    name = esc(&s.name),
                );
                lx += 24.0 + 6.5 * s.name.chars().count() as f64;
            }
            if let Some((name, _)) = &self.reference {
                let _ = write!(
                    out,
                    r#"<line class="budget" x1="{x1}" x2="{x2}" y1="{y}" y2="{y}"/><text x="{tx}" y="{ty}">{name}</text>"#,
                    x1 = num(lx),
                    x2 = num(lx + 10.0),
                    y = num(TOP + 7.0),
                    tx = num(lx + 14.0),
                    ty = num(TOP + 11.0),
                    name = esc(name),
                );
            }
        }
        out.push_str("</svg>");
        out
    }

    pub fn table(&self) -> Table {
        let mut columns = vec![self.x_name.clone()];
        columns.extend(self.series.iter().map(|s| s.name.clone()));
        Table {
            caption: self.title.clone(),
            columns,
            rows: self
                .x_labels
                .iter()
                .enumerate()
                .map(|(i, label)| {
                    let mut row = vec![label.clone()];
                    row.extend(self.series.iter().map(|s| {
                        s.values
                            .get(i)
                            .copied()
                            .flatten()
                            .map(|v| self.unit.format(v))
                            .unwrap_or_else(|| "—".into())
                    }));
                    row
                })
                .collect(),
        }
    }
}

/// Horizontal bars, one per labelled value, largest first as given.
#[derive(Debug, Clone)]
pub struct BarChart {
    pub id: String,
    pub title: String,
    pub description: String,
    pub bars: Vec<(String, f64)>,
    pub unit: Unit,
}

const BAR_ROW: f64 = 26.0;
const LABEL_W: f64 = 190.0;
const VALUE_W: f64 = 96.0;

impl BarChart {
    pub fn svg(&self) -> String {
        let height = (self.bars.len().max(1) as f64) * BAR_ROW + 8.0;
        let mut out = String::new();
        open_svg(&mut out, &self.id, &self.title, &self.description, height);
        let max = self
            .bars
            .iter()
            .map(|(_, v)| *v)
            .fold(0.0f64, f64::max)
            .max(f64::MIN_POSITIVE);
        let room = W - LABEL_W - VALUE_W;
        for (i, (label, v)) in self.bars.iter().enumerate() {
            let top = 4.0 + i as f64 * BAR_ROW;
            let width = (room * v.max(0.0) / max).max(if *v > 0.0 { 1.0 } else { 0.0 });
            let shown: String = if label.chars().count() > 28 {
                format!("{}…", label.chars().take(27).collect::<String>())
            } else {
                label.clone()
            };
            let value = self.unit.format(*v);
            let _ = write!(
                out,
                r#"<text x="{lx}" y="{ty}" text-anchor="end">{shown}</text><rect class="bar series-0" x="{bx}" y="{by}" width="{bw}" height="{bh}"><title>{label}: {value}</title></rect><text x="{vx}" y="{ty}">{value}</text>"#,
                lx = num(LABEL_W - 8.0),
                ty = num(top + BAR_ROW / 2.0 + 3.0),
                shown = esc(&shown),
                bx = num(LABEL_W),
                by = num(top + 4.0),
                bw = num(width),
                bh = num(BAR_ROW - 8.0),
                label = esc(label),
                value = esc(&value),
                vx = num(LABEL_W + width + 6.0),
            );
        }
        out.push_str("</svg>");
        out
    }

    pub fn table(&self, label_column: &str, value_column: &str) -> Table {
        Table {
            caption: self.title.clone(),
            columns: vec![label_column.into(), value_column.into()],
            rows: self
                .bars
                .iter()
                .map(|(l, v)| vec![l.clone(), self.unit.format(*v)])
                .collect(),
        }
    }
}

/// A budget's month as one bar: spend so far (solid), the month-end
/// forecast (a lighter bar behind it), the amount as a line and each
/// threshold as a tick. Small, for lists; the figures are written beside
/// it by the page.
#[derive(Debug, Clone)]
pub struct BudgetBar {
    pub id: String,
    pub title: String,
    pub description: String,
    pub amount: f64,
    pub actual: f64,
    pub forecast: f64,
    /// Percentages of the amount (actual and forecast thresholds alike).
    pub thresholds: Vec<f64>,
}

const BUDGET_W: f64 = 320.0;
const BUDGET_H: f64 = 30.0;

impl BudgetBar {
    pub fn svg(&self) -> String {
        let id = esc(&self.id);
        let mut out = String::new();
        let _ = write!(
            out,
            r#"<svg xmlns="http://www.w3.org/2000/svg" class="chart budget-bar" role="img" viewBox="0 0 {w} {h}" aria-labelledby="{id}-title {id}-desc"><title id="{id}-title">{t}</title><desc id="{id}-desc">{d}</desc>"#,
            w = num(BUDGET_W),
            h = num(BUDGET_H),
            t = esc(&self.title),
            d = esc(&self.description),
        );
        // The scale reaches a little past the largest of the three, so the
        // amount's line is never at the very edge.
        let top = self
            .amount
            .max(self.actual)
            .max(self.forecast)
            .max(f64::MIN_POSITIVE)
            * 1.1;
        let x = |v: f64| num(2.0 + (BUDGET_W - 4.0) * (v.max(0.0) / top).min(1.0));
        let _ = write!(
            out,
            r#"<rect class="track" x="2" y="8" width="{w}" height="14"/><rect class="forecast-bar" x="2" y="8" width="{f}" height="14"/><rect class="bar series-0" x="2" y="8" width="{a}" height="14"/>"#,
            w = num(BUDGET_W - 4.0),
            f = num((BUDGET_W - 4.0) * (self.forecast.max(0.0) / top).min(1.0)),
            a = num((BUDGET_W - 4.0) * (self.actual.max(0.0) / top).min(1.0)),
        );
        for t in &self.thresholds {
            let v = self.amount * t / 100.0;
            let _ = write!(
                out,
                r#"<line class="threshold" x1="{x}" x2="{x}" y1="4" y2="26"/>"#,
                x = x(v),
            );
        }
        let _ = write!(
            out,
            r#"<line class="budget" x1="{x}" x2="{x}" y1="1" y2="29"/></svg>"#,
            x = x(self.amount),
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axis_maxima_are_round() {
        assert_eq!(nice_max(0.0), 1.0);
        assert_eq!(nice_max(0.93), 1.0);
        assert_eq!(nice_max(1.2), 2.0);
        assert_eq!(nice_max(2.2), 2.5);
        assert_eq!(nice_max(4100.0), 5000.0);
        assert_eq!(nice_max(5000.0), 5000.0);
        assert_eq!(nice_max(7000.0), 10_000.0);
    }

    #[test]
    fn the_last_x_label_never_overlaps_the_one_before() {
        let mut chart = trend();
        chart.x_labels = (1..=30).map(|d| format!("Nov {d}")).collect();
        chart.series[0].values = vec![Some(1.0); 30];
        chart.series.truncate(1);
        let svg = chart.svg();
        // Every fourth day is labelled, but day 29 gives way to day 30.
        assert!(
            svg.contains(">Nov 25<") && svg.contains(">Nov 30<"),
            "{svg}"
        );
        assert!(!svg.contains(">Nov 29<"), "{svg}");
    }

    fn trend() -> LineChart {
        LineChart {
            id: "trend".into(),
            title: "Daily cost".into(),
            description: "Cost per day, 1 to 4 December, with the budget's daily share.".into(),
            x_name: "Day".into(),
            x_labels: vec![
                "Dec 1".into(),
                "Dec 2".into(),
                "Dec 3".into(),
                "Dec 4".into(),
            ],
            series: vec![
                Series {
                    name: "Actual".into(),
                    values: vec![Some(120.0), Some(135.5), None, Some(90.25)],
                    dashed: false,
                },
                Series {
                    name: "Forecast".into(),
                    values: vec![None, None, Some(110.0), Some(112.0)],
                    dashed: true,
                },
            ],
            unit: Unit::Money("USD".into()),
            reference: Some(("Budget".into(), 150.0)),
        }
    }

    #[test]
    fn a_line_chart_is_the_same_svg_for_the_same_figures() {
        let chart = trend();
        assert_eq!(chart.svg(), trend().svg());
        insta::assert_snapshot!("line_chart", chart.svg());
        insta::assert_debug_snapshot!("line_chart_table", chart.table());
    }

    #[test]
    fn a_band_and_a_span_sit_behind_the_lines() {
        let mut chart = trend();
        chart.reference = None;
        let band = Band {
            name: "Expected range".into(),
            low: vec![None, Some(100.0), Some(-5.0), Some(95.0)],
            high: vec![None, Some(140.0), Some(150.0), Some(160.0)],
        };
        let span = Span {
            name: "The incident".into(),
            first: 2,
            last: 3,
        };
        let svg = chart.svg_with(Some(&band), Some(&span));
        assert_eq!(svg, chart.svg_with(Some(&band), Some(&span)));
        assert!(svg.contains(r#"<polygon class="band""#), "{svg}");
        assert!(svg.contains(r#"<rect class="span""#), "{svg}");
        // Behind the lines: drawn before the first of them.
        assert!(svg.find("class=\"band\"") < svg.find("<polyline"), "{svg}");
        assert!(!svg.contains("style="));
        insta::assert_snapshot!("band_chart", svg);
    }

    #[test]
    fn a_budget_bar_marks_the_amount_and_its_thresholds() {
        let bar = BudgetBar {
            id: "b1".into(),
            title: "Platform: 50% spent".into(),
            description: "$500.00 of $1,000.00 spent; forecast $1,200.00".into(),
            amount: 1000.0,
            actual: 500.0,
            forecast: 1200.0,
            thresholds: vec![80.0, 100.0],
        };
        let svg = bar.svg();
        assert_eq!(svg, bar.clone().svg());
        assert!(svg.contains(r#"role="img""#) && !svg.contains("style="));
        insta::assert_snapshot!("budget_bar", svg);
    }

    #[test]
    fn a_bar_chart_names_every_bar_and_escapes_labels() {
        let chart = BarChart {
            id: "services".into(),
            title: "Top services".into(),
            description: "Cost by service this month.".into(),
            bars: vec![
                ("Virtual Machines".into(), 2400.0),
                ("Storage <blob> & files".into(), 600.5),
                ("A service with a name far longer than the room".into(), 0.0),
            ],
            unit: Unit::Money("EUR".into()),
        };
        let svg = chart.svg();
        assert!(svg.contains(r#"role="img""#));
        assert!(svg.contains("Storage &lt;blob&gt; &amp; files"));
        assert!(!svg.contains("style="), "no inline styles under the CSP");
        insta::assert_snapshot!("bar_chart", svg);
        assert_eq!(
            chart.table("Service", "Cost").rows[1],
            vec!["Storage <blob> & files".to_string(), "€600.50".to_string()]
        );
    }
}
