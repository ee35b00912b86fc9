//! Charts of one benchmark family, environments side by side, as SVG.
//!
//! [`render_svg`] turns a [`Chart`] into a standalone SVG 1.1 document. Why it looks as it does:
//!
//! - Bars are horizontal: benchmark ids such as `clock-read-pvclock` are long, and on the left
//!   they read in full, where under vertical bars they would have to be turned or cut.
//! - Each benchmark is a group with one bar per environment, in the same order and colour in
//!   every group, so an environment is found by position as well as by colour.
//!   The colours are Okabe and Ito's palette, which stays distinguishable with the common
//!   colour-vision deficiencies.
//! - A bar is the median; its whisker runs from low to high, so a difference that lies within
//!   the spread is seen as such. The median is also printed at the bar's end, because a length
//!   on a log axis cannot be read precisely.
//! - The axis is linear, from zero, unless the medians span more than [`LOG_SCALE_MIN_RATIO`];
//!   then it is logarithmic with a tick per decade. Emulation (`tcg/*`) against hardware
//!   virtualization is often such a case. A log axis has no place for zero or negative values:
//!   their bars are left out and the value is printed alone.
//! - The plot has the same width in every chart, so the charts of a report line up; the
//!   label column, the legend and the height follow from the text and from the number of
//!   groups and series.
//! - All text is monospace. The layout has to know how wide a text is without any font at
//!   hand, and monospace fonts advance every character by the same 0.6 em.
//!
//! The SVG is written by hand rather than with `plotters` (`svg_backend`, no default
//! features). That crate builds from pure Rust and writes text as `<text>` with no font files,
//! but it has no grouped horizontal bars: bars, whiskers, printed medians and `n/a` marks would
//! all be custom elements anyway. What it would add, the axis and the legend, it places from
//! its own text-width guess (in a trial the legend and the last tick label were cut off at the
//! edge) and with ticks of its own choosing, where these are chosen and tested here.

use std::fmt::{self, Write as _};

/// Above this ratio between the largest and the smallest positive median, the axis is
/// logarithmic. On a linear axis the smallest bar would then be under 2% of [`PLOT_WIDTH`],
/// about 10 px: too short to compare with its neighbours or to show its whisker.
pub const LOG_SCALE_MIN_RATIO: f64 = 50.0;

/// Width of the plot area in pixels, the same in every chart.
const PLOT_WIDTH: f64 = 480.0;

/// Values must be zero or have a magnitude within these bounds. That is far beyond any
/// benchmark reading, and it keeps every axis computation finite.
const SMALLEST_MAGNITUDE: f64 = 1e-30;
const LARGEST_MAGNITUDE: f64 = 1e30;

/// Okabe and Ito, "Color Universal Design" (2008), in the order they are handed out, then
/// grey and two of Paul Tol's muted colours: a full matrix with KVM has eight environments.
/// Black is left out because it would hide the whisker; yellow comes late because it is
/// faint on white.
const PALETTE: [&str; 10] = [
    "#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#999999",
    "#882255", "#117733",
];

/// A linear axis gets about this many intervals: enough to measure a bar against, few enough
/// that tick labels stay far apart.
const LINEAR_TARGET_INTERVALS: f64 = 5.0;
/// At most this many intervals on a log axis; wider ranges tick every second, third ... decade,
/// so that the labels (up to 7 characters) stay apart on [`PLOT_WIDTH`].
const MAX_LOG_INTERVALS: u32 = 8;

const FONT_SIZE: f64 = 12.0;
const TITLE_FONT_SIZE: f64 = 16.0;
/// Advance of one character in em: 0.6 in the common monospace fonts (DejaVu Sans Mono,
/// Liberation Mono, Menlo, Courier New), with some slack.
const CHAR_WIDTH_EM: f64 = 0.62;
/// From a text's vertical centre to its baseline, in em: half the height of a capital.
const CENTRE_TO_BASELINE_EM: f64 = 0.35;

const MARGIN: f64 = 16.0;
const SECTION_GAP: f64 = 12.0;
const TEXT_PAD: f64 = 6.0;
const BAR_HEIGHT: f64 = 14.0;
const BAR_GAP: f64 = 2.0;
const GROUP_GAP: f64 = 14.0;
const WHISKER_CAP_HEIGHT: f64 = 8.0;
const TICK_LENGTH: f64 = 5.0;
const LEGEND_SWATCH: f64 = 12.0;
const LEGEND_ROW_HEIGHT: f64 = 18.0;
const LEGEND_ENTRY_GAP: f64 = 20.0;

const TEXT_COLOUR: &str = "#222222";
const MUTED_TEXT_COLOUR: &str = "#888888";
const AXIS_COLOUR: &str = "#666666";
const GRID_COLOUR: &str = "#DDDDDD";

/// Printed where an environment has no measurement for a benchmark.
const NOT_MEASURED: &str = "n/a";

/// One benchmark family: one group of bars per benchmark, one bar per environment.
#[derive(Clone, Debug, PartialEq)]
pub struct Chart {
    pub title: String,
    /// What the values measure, shown under the axis, e.g. "ns per read" or "MiB/s".
    pub unit: String,
    /// The environments, e.g. "kvm/microvm"; each gets a colour.
    pub series: Vec<String>,
    pub groups: Vec<Group>,
}

/// One benchmark's results across the environments.
#[derive(Clone, Debug, PartialEq)]
pub struct Group {
    /// The benchmark id, e.g. "clock-read-hpet".
    pub label: String,
    /// One per series, in the chart's order; `None` where it was not measured.
    pub values: Vec<Option<Value>>,
}

/// A measurement: the median and the spread around it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Value {
    pub median: f64,
    pub low: f64,
    pub high: f64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scale {
    Linear,
    Log10,
}

/// Why a chart cannot be drawn.
#[derive(Clone, Debug, PartialEq)]
pub enum ChartError {
    /// A group does not have exactly one value per series.
    ValueCount {
        group: String,
        expected: usize,
        found: usize,
    },
    /// A value is NaN, infinite, or outside the plottable magnitudes.
    Unplottable {
        group: String,
        series: String,
        value: f64,
    },
    /// `low <= median <= high` does not hold.
    UnorderedSpread {
        group: String,
        series: String,
        value: Value,
    },
    /// More series than distinguishable colours.
    TooManySeries { count: usize },
}

impl fmt::Display for ChartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChartError::ValueCount {
                group,
                expected,
                found,
            } => write!(
                f,
                "benchmark {group} has {found} values but the chart has {expected} environments; \
                 give one value (or None) per environment"
            ),
            ChartError::Unplottable {
                group,
                series,
                value,
            } => write!(
                f,
                "benchmark {group} on {series}: {value} is not a finite number of magnitude \
                 {SMALLEST_MAGNITUDE:e} to {LARGEST_MAGNITUDE:e} (or 0)"
            ),
            ChartError::UnorderedSpread {
                group,
                series,
                value,
            } => write!(
                f,
                "benchmark {group} on {series}: expected low <= median <= high, found low {} \
                 median {} high {}",
                value.low, value.median, value.high
            ),
            ChartError::TooManySeries { count } => write!(
                f,
                "{count} environments in one chart, but only {} colours tell apart; \
                 split the chart",
                PALETTE.len()
            ),
        }
    }
}

impl std::error::Error for ChartError {}

impl Chart {
    /// Logarithmic when the positive medians span more than [`LOG_SCALE_MIN_RATIO`]; zero and
    /// negative medians have no say, as a log axis cannot show them anyway.
    pub fn scale(&self) -> Scale {
        match positive_range(self.values().map(|value| value.median)) {
            Some((smallest, largest)) if largest / smallest > LOG_SCALE_MIN_RATIO => Scale::Log10,
            _ => Scale::Linear,
        }
    }

    fn values(&self) -> impl Iterator<Item = &Value> {
        self.groups
            .iter()
            .flat_map(|group| group.values.iter().flatten())
    }

    fn validate(&self) -> Result<(), ChartError> {
        if self.series.len() > PALETTE.len() {
            return Err(ChartError::TooManySeries {
                count: self.series.len(),
            });
        }
        for group in &self.groups {
            if group.values.len() != self.series.len() {
                return Err(ChartError::ValueCount {
                    group: group.label.clone(),
                    expected: self.series.len(),
                    found: group.values.len(),
                });
            }
            for (series, value) in self.series.iter().zip(&group.values) {
                let Some(value) = value else { continue };
                let numbers = [value.low, value.median, value.high];
                if let Some(&bad) = numbers.iter().find(|number| !is_plottable(**number)) {
                    return Err(ChartError::Unplottable {
                        group: group.label.clone(),
                        series: series.clone(),
                        value: bad,
                    });
                }
                if !(value.low <= value.median && value.median <= value.high) {
                    return Err(ChartError::UnorderedSpread {
                        group: group.label.clone(),
                        series: series.clone(),
                        value: *value,
                    });
                }
            }
        }
        Ok(())
    }
}

fn is_plottable(number: f64) -> bool {
    number == 0.0 || (SMALLEST_MAGNITUDE..=LARGEST_MAGNITUDE).contains(&number.abs())
}

/// The smallest and largest of the positive finite numbers, if there are any.
fn positive_range(numbers: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
    numbers
        .filter(|number| *number > 0.0 && number.is_finite())
        .fold(None, |range, number| match range {
            None => Some((number, number)),
            Some((smallest, largest)) => Some((smallest.min(number), largest.max(number))),
        })
}

/// Renders the chart as a standalone SVG document.
pub fn render_svg(chart: &Chart) -> Result<String, ChartError> {
    chart.validate()?;
    let axis = Axis::for_chart(chart);
    let layout = Layout::new(chart, &axis);
    let mut svg = String::new();
    write_svg(&mut svg, chart, &axis, &layout).expect("formatting into a String cannot fail");
    Ok(svg)
}

/// The value axis: its range and where its ticks go.
#[derive(Debug, PartialEq)]
struct Axis {
    scale: Scale,
    min: f64,
    max: f64,
    ticks: Vec<f64>,
}

impl Axis {
    /// An axis that holds every median and both ends of every spread (on a log axis, every
    /// positive one).
    fn for_chart(chart: &Chart) -> Axis {
        let numbers = || {
            chart
                .values()
                .flat_map(|value| [value.low, value.median, value.high])
        };
        match (chart.scale(), positive_range(numbers())) {
            (Scale::Log10, Some((smallest, largest))) => Axis::log10(smallest, largest),
            _ => {
                let lowest = numbers().fold(0.0, f64::min);
                let highest = numbers().fold(0.0, f64::max);
                Axis::linear(lowest, highest)
            }
        }
    }

    /// From a multiple of a 1, 2 or 5 step at or below `lowest` and zero to one at or above
    /// `highest` and zero.
    fn linear(lowest: f64, highest: f64) -> Axis {
        let lowest = lowest.min(0.0);
        let highest = highest.max(0.0);
        // Nothing but zeros still gets an axis to put its ticks on.
        let highest = if highest > lowest { highest } else { 1.0 };
        let span = highest - lowest;
        let step = nice_step(span / LINEAR_TARGET_INTERVALS);
        // The slack keeps a quotient such as 0.6 / 0.2 = 2.9999999999999996 from adding a tick.
        let first = (lowest / step + 1e-9).floor() as i64;
        let last = (highest / step - 1e-9).ceil() as i64;
        Axis {
            scale: Scale::Linear,
            min: first as f64 * step,
            max: last as f64 * step,
            ticks: (first..=last).map(|i| i as f64 * step).collect(),
        }
    }

    /// From the decade at or below `smallest` to the one at or above `largest`, both positive.
    fn log10(smallest: f64, largest: f64) -> Axis {
        let first = decade_at_or_below(smallest);
        let decades = (decade_at_or_above(largest) - first).max(1).unsigned_abs();
        let stride = decades.div_ceil(MAX_LOG_INTERVALS);
        let intervals = decades.div_ceil(stride);
        let exponents = (0..=intervals).map(|i| first + (i * stride) as i32);
        let ticks: Vec<f64> = exponents.map(|exponent| 10f64.powi(exponent)).collect();
        Axis {
            scale: Scale::Log10,
            min: ticks[0],
            max: ticks[ticks.len() - 1],
            ticks,
        }
    }

    /// Where `number` lies between `min` (0) and `max` (1); `None` if the scale has no place
    /// for it.
    fn fraction(&self, number: f64) -> Option<f64> {
        let fraction = match self.scale {
            Scale::Linear => (number - self.min) / (self.max - self.min),
            Scale::Log10 if number > 0.0 => {
                (number / self.min).log10() / (self.max / self.min).log10()
            }
            Scale::Log10 => return None,
        };
        Some(fraction.clamp(0.0, 1.0))
    }

    /// Where bars start: zero on a linear axis, the left end on a log axis.
    fn bar_base(&self) -> f64 {
        match self.scale {
            Scale::Linear => 0.0,
            Scale::Log10 => self.min,
        }
    }
}

/// The smallest of 1, 2, 5 or 10 times a power of ten that is at least `raw`.
fn nice_step(raw: f64) -> f64 {
    let magnitude = 10f64.powi(raw.log10().floor() as i32);
    // The slack lets 2.0000000000000004 count as 2.
    let normalized = raw / magnitude - 1e-9;
    let multiple = [1.0, 2.0, 5.0]
        .into_iter()
        .find(|multiple| normalized <= *multiple)
        .unwrap_or(10.0);
    multiple * magnitude
}

/// Splits Rust's `{:e}` form of a number, such as "1.23e-4", into mantissa and exponent.
fn split_scientific(text: &str) -> (&str, i32) {
    let (mantissa, exponent) = text
        .split_once('e')
        .expect("the {:e} format always has an exponent");
    let exponent = exponent
        .parse()
        .expect("the {:e} format writes the exponent as an integer");
    (mantissa, exponent)
}

/// The decimal exponent of a positive number, and whether the number is that power of ten.
/// Read from Rust's shortest round-trip form, so that 1e-5 counts as a power of ten although
/// its `log10` need not come out as an integer.
fn decimal_exponent(number: f64) -> (i32, bool) {
    let text = format!("{number:e}");
    let (mantissa, exponent) = split_scientific(&text);
    (exponent, mantissa == "1")
}

fn decade_at_or_below(number: f64) -> i32 {
    decimal_exponent(number).0
}

fn decade_at_or_above(number: f64) -> i32 {
    match decimal_exponent(number) {
        (exponent, true) => exponent,
        (exponent, false) => exponent + 1,
    }
}

/// `number` to 3 significant digits with a k, M or G suffix and no trailing zeros: "0.5",
/// "12", "1.23k", "100M". Outside 0.001 to 999G it switches to "1.23e-4" and "1.5e12".
fn format_compact(number: f64) -> String {
    if number == 0.0 {
        return "0".to_owned();
    }
    let sign = if number < 0.0 { "-" } else { "" };
    // Rounding through the exponent format keeps 999.6 from printing as "1000" instead of "1k".
    let rounded = format!("{:.2e}", number.abs());
    let (mantissa, exponent) = split_scientific(&rounded);
    let digits = mantissa.replace('.', "");
    let body = match exponent {
        0..=11 => {
            let suffix = ["", "k", "M", "G"][(exponent / 3) as usize];
            let (whole, fraction) = digits.split_at((exponent % 3) as usize + 1);
            format!("{}{suffix}", join_decimal(whole, fraction))
        }
        -3..=-1 => {
            let zeros = "0".repeat((-exponent - 1) as usize);
            join_decimal("0", &format!("{zeros}{digits}"))
        }
        _ => {
            let (whole, fraction) = digits.split_at(1);
            format!("{}e{exponent}", join_decimal(whole, fraction))
        }
    };
    format!("{sign}{body}")
}

/// "12" and "30" make "12.3"; a fraction of only zeros is left out.
fn join_decimal(whole: &str, fraction: &str) -> String {
    let fraction = fraction.trim_end_matches('0');
    if fraction.is_empty() {
        whole.to_owned()
    } else {
        format!("{whole}.{fraction}")
    }
}

fn text_width(text: &str, font_size: f64) -> f64 {
    text.chars().count() as f64 * CHAR_WIDTH_EM * font_size
}

fn widest(widths: impl Iterator<Item = f64>) -> f64 {
    widths.fold(0.0, f64::max)
}

/// Where everything goes, in pixels from the top left.
struct Layout {
    width: f64,
    height: f64,
    /// Top left of each series' legend swatch.
    legend: Vec<(f64, f64)>,
    plot_left: f64,
    plot_top: f64,
    plot_bottom: f64,
    /// Where bars start.
    base: f64,
    /// Rows of bars in each group: one even without series, so that group labels never
    /// overlap.
    bars_per_group: usize,
    tick_label_baseline: f64,
    unit_centre: f64,
    unit_baseline: f64,
}

impl Layout {
    fn new(chart: &Chart, axis: &Axis) -> Layout {
        let label_width = widest(
            chart
                .groups
                .iter()
                .map(|group| text_width(&group.label, FONT_SIZE)),
        );
        let tick_label_width = |tick: Option<&f64>| {
            tick.map_or(0.0, |tick| text_width(&format_compact(*tick), FONT_SIZE))
        };
        // A median's text goes after its bar or whisker, which may end at the plot's edge.
        let value_label_width = widest(
            chart
                .values()
                .map(|value| text_width(&format_compact(value.median), FONT_SIZE))
                .chain([text_width(NOT_MEASURED, FONT_SIZE)]),
        );
        // Tick labels are centred on their ticks, so half of the outer ones sticks out.
        let plot_left =
            MARGIN + (label_width + TEXT_PAD).max(tick_label_width(axis.ticks.first()) / 2.0);
        let plot_right = plot_left + PLOT_WIDTH;
        let content_right = plot_right
            + (TEXT_PAD + value_label_width).max(tick_label_width(axis.ticks.last()) / 2.0);

        let legend_entries: Vec<f64> = chart
            .series
            .iter()
            .map(|series| LEGEND_SWATCH + TEXT_PAD + text_width(series, FONT_SIZE))
            .collect();
        let unit_width = text_width(&chart.unit, FONT_SIZE);
        let inner_width = (content_right - MARGIN)
            .max(text_width(&chart.title, TITLE_FONT_SIZE))
            .max(unit_width)
            .max(widest(legend_entries.iter().copied()));
        let width = inner_width + 2.0 * MARGIN;

        let legend_top = MARGIN + TITLE_FONT_SIZE + SECTION_GAP;
        let mut legend = Vec::with_capacity(legend_entries.len());
        let (mut x, mut y) = (MARGIN, legend_top);
        for entry_width in legend_entries {
            if x > MARGIN && x + entry_width > MARGIN + inner_width {
                (x, y) = (MARGIN, y + LEGEND_ROW_HEIGHT);
            }
            legend.push((x, y));
            x += entry_width + LEGEND_ENTRY_GAP;
        }
        let legend_bottom = if legend.is_empty() {
            legend_top
        } else {
            y + LEGEND_ROW_HEIGHT
        };

        let bars_per_group = chart.series.len().max(1);
        let plot_top = legend_bottom + SECTION_GAP;
        let plot_bottom = plot_top + chart.groups.len() as f64 * group_height(bars_per_group);
        let tick_label_baseline = plot_bottom + TICK_LENGTH + TEXT_PAD + FONT_SIZE;
        let unit_baseline = tick_label_baseline + TEXT_PAD + FONT_SIZE;
        // Centred under the plot, unless a long unit would then stick out of the picture.
        let unit_centre = (plot_left + PLOT_WIDTH / 2.0)
            .clamp(MARGIN + unit_width / 2.0, width - MARGIN - unit_width / 2.0);
        let base = plot_left
            + PLOT_WIDTH
                * axis
                    .fraction(axis.bar_base())
                    .expect("the bar base lies on the axis");
        Layout {
            width,
            height: unit_baseline + MARGIN,
            legend,
            plot_left,
            plot_top,
            plot_bottom,
            base,
            bars_per_group,
            tick_label_baseline,
            unit_centre,
            unit_baseline,
        }
    }

    fn x(&self, axis: &Axis, number: f64) -> Option<f64> {
        axis.fraction(number)
            .map(|fraction| self.plot_left + fraction * PLOT_WIDTH)
    }

    fn group_top(&self, group: usize) -> f64 {
        self.plot_top + group as f64 * group_height(self.bars_per_group) + GROUP_GAP / 2.0
    }

    fn bar_top(&self, group: usize, series: usize) -> f64 {
        self.group_top(group) + series as f64 * (BAR_HEIGHT + BAR_GAP)
    }
}

fn group_height(bars: usize) -> f64 {
    bars as f64 * (BAR_HEIGHT + BAR_GAP) - BAR_GAP + GROUP_GAP
}

/// A coordinate, to 0.1 px: finer is invisible and only makes the file longer.
struct Px(f64);

impl fmt::Display for Px {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        debug_assert!(self.0.is_finite(), "coordinate {}", self.0);
        write!(f, "{:.1}", self.0)
    }
}

/// Text with the characters XML reserves escaped, and the ones it forbids even escaped (most
/// control characters) replaced, so that no label can break the document.
fn escape_xml(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&apos;"),
            '\t' | '\n' | '\r' => escaped.push(c),
            c if c.is_control() || c == '\u{FFFE}' || c == '\u{FFFF}' => {
                escaped.push(char::REPLACEMENT_CHARACTER)
            }
            c => escaped.push(c),
        }
    }
    escaped
}

#[derive(Clone, Copy)]
enum Anchor {
    Start,
    Middle,
    End,
}

impl Anchor {
    fn as_svg(self) -> &'static str {
        match self {
            Anchor::Start => "start",
            Anchor::Middle => "middle",
            Anchor::End => "end",
        }
    }
}

fn write_text(
    svg: &mut String,
    (x, baseline): (f64, f64),
    anchor: Anchor,
    fill: &str,
    text: &str,
) -> fmt::Result {
    writeln!(
        svg,
        r#"<text x="{}" y="{}" text-anchor="{}" fill="{fill}">{}</text>"#,
        Px(x),
        Px(baseline),
        anchor.as_svg(),
        escape_xml(text)
    )
}

fn write_line(
    svg: &mut String,
    (x1, y1): (f64, f64),
    (x2, y2): (f64, f64),
    stroke: &str,
) -> fmt::Result {
    writeln!(
        svg,
        r#"<line x1="{}" y1="{}" x2="{}" y2="{}" stroke="{stroke}"/>"#,
        Px(x1),
        Px(y1),
        Px(x2),
        Px(y2)
    )
}

fn write_svg(svg: &mut String, chart: &Chart, axis: &Axis, layout: &Layout) -> fmt::Result {
    let (width, height) = (Px(layout.width), Px(layout.height));
    writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" version="1.1" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="monospace" font-size="{FONT_SIZE}">"#
    )?;
    writeln!(svg, "<title>{}</title>", escape_xml(&chart.title))?;
    // Opaque, so that the dark text stays readable where the page behind is dark.
    writeln!(svg, r#"<rect width="100%" height="100%" fill="white"/>"#)?;
    writeln!(
        svg,
        r#"<text x="{}" y="{}" font-size="{TITLE_FONT_SIZE}" font-weight="bold" fill="{TEXT_COLOUR}">{}</text>"#,
        Px(MARGIN),
        Px(MARGIN + TITLE_FONT_SIZE),
        escape_xml(&chart.title)
    )?;
    write_legend(svg, chart, layout)?;
    write_axis(svg, chart, axis, layout)?;
    for (index, group) in chart.groups.iter().enumerate() {
        write_group(svg, chart, axis, layout, index, group)?;
    }
    writeln!(svg, "</svg>")
}

fn write_legend(svg: &mut String, chart: &Chart, layout: &Layout) -> fmt::Result {
    for ((series, colour), &(x, y)) in chart.series.iter().zip(PALETTE).zip(&layout.legend) {
        writeln!(
            svg,
            r#"<rect x="{}" y="{}" width="{LEGEND_SWATCH}" height="{LEGEND_SWATCH}" fill="{colour}"/>"#,
            Px(x),
            Px(y)
        )?;
        let baseline = y + LEGEND_SWATCH / 2.0 + CENTRE_TO_BASELINE_EM * FONT_SIZE;
        write_text(
            svg,
            (x + LEGEND_SWATCH + TEXT_PAD, baseline),
            Anchor::Start,
            TEXT_COLOUR,
            series,
        )?;
    }
    Ok(())
}

fn write_axis(svg: &mut String, chart: &Chart, axis: &Axis, layout: &Layout) -> fmt::Result {
    for &tick in &axis.ticks {
        let Some(x) = layout.x(axis, tick) else {
            continue;
        };
        write_line(
            svg,
            (x, layout.plot_top),
            (x, layout.plot_bottom),
            GRID_COLOUR,
        )?;
        write_line(
            svg,
            (x, layout.plot_bottom),
            (x, layout.plot_bottom + TICK_LENGTH),
            AXIS_COLOUR,
        )?;
        write_text(
            svg,
            (x, layout.tick_label_baseline),
            Anchor::Middle,
            TEXT_COLOUR,
            &format_compact(tick),
        )?;
    }
    let plot_right = layout.plot_left + PLOT_WIDTH;
    write_line(
        svg,
        (layout.plot_left, layout.plot_bottom),
        (plot_right, layout.plot_bottom),
        AXIS_COLOUR,
    )?;
    write_line(
        svg,
        (layout.base, layout.plot_top),
        (layout.base, layout.plot_bottom),
        AXIS_COLOUR,
    )?;
    write_text(
        svg,
        (layout.unit_centre, layout.unit_baseline),
        Anchor::Middle,
        TEXT_COLOUR,
        &chart.unit,
    )
}

fn write_group(
    svg: &mut String,
    chart: &Chart,
    axis: &Axis,
    layout: &Layout,
    index: usize,
    group: &Group,
) -> fmt::Result {
    let bars_height = group_height(layout.bars_per_group) - GROUP_GAP;
    let centre = layout.group_top(index) + bars_height / 2.0;
    write_text(
        svg,
        (
            layout.plot_left - TEXT_PAD,
            centre + CENTRE_TO_BASELINE_EM * FONT_SIZE,
        ),
        Anchor::End,
        TEXT_COLOUR,
        &group.label,
    )?;
    let base = layout.base;
    for (series_index, (value, series)) in group.values.iter().zip(&chart.series).enumerate() {
        let top = layout.bar_top(index, series_index);
        let middle = top + BAR_HEIGHT / 2.0;
        let baseline = middle + CENTRE_TO_BASELINE_EM * FONT_SIZE;
        let at_left_edge = (layout.plot_left + TEXT_PAD, baseline);
        let Some(value) = value else {
            write_text(
                svg,
                at_left_edge,
                Anchor::Start,
                MUTED_TEXT_COLOUR,
                NOT_MEASURED,
            )?;
            continue;
        };
        let median = format_compact(value.median);
        let Some(end) = layout.x(axis, value.median) else {
            write_text(svg, at_left_edge, Anchor::Start, TEXT_COLOUR, &median)?;
            continue;
        };
        writeln!(
            svg,
            r#"<rect class="bar" x="{}" y="{}" width="{}" height="{BAR_HEIGHT}" fill="{}"><title>{}</title></rect>"#,
            Px(base.min(end)),
            Px(top),
            Px((end - base).abs()),
            PALETTE[series_index],
            escape_xml(&format!(
                "{series}: median {median} {} (low {}, high {})",
                chart.unit,
                format_compact(value.low),
                format_compact(value.high)
            ))
        )?;
        let high = layout
            .x(axis, value.high)
            .expect("high >= median, which lies on the axis");
        let low = layout.x(axis, value.low);
        // A low end that a log axis cannot show runs off the left edge, without a cap.
        write_line(
            svg,
            (low.unwrap_or(layout.plot_left), middle),
            (high, middle),
            TEXT_COLOUR,
        )?;
        for cap in low.into_iter().chain([high]) {
            let half = WHISKER_CAP_HEIGHT / 2.0;
            write_line(svg, (cap, middle - half), (cap, middle + half), TEXT_COLOUR)?;
        }
        let after = base.max(end).max(high) + TEXT_PAD;
        write_text(svg, (after, baseline), Anchor::Start, TEXT_COLOUR, &median)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spread(median: f64) -> Option<Value> {
        Some(Value {
            median,
            low: median - median.abs() * 0.1,
            high: median + median.abs() * 0.1,
        })
    }

    fn chart(series: &[&str], groups: &[(&str, Vec<Option<Value>>)]) -> Chart {
        Chart {
            title: "Clock reads".to_owned(),
            unit: "ns per read".to_owned(),
            series: series.iter().map(|name| name.to_string()).collect(),
            groups: groups
                .iter()
                .map(|(label, values)| Group {
                    label: label.to_string(),
                    values: values.clone(),
                })
                .collect(),
        }
    }

    fn medians(medians: &[f64]) -> Chart {
        chart(
            &["kvm/microvm"],
            &medians
                .iter()
                .map(|median| ("bench", vec![spread(*median)]))
                .collect::<Vec<_>>(),
        )
    }

    fn four_environments() -> Chart {
        chart(
            &["kvm/microvm", "tcg/pc", "xen-pvh", "xen-pv"],
            &[
                (
                    "clock-read-tsc",
                    vec![spread(12.0), spread(85.0), spread(14.0), None],
                ),
                (
                    "clock-read-hpet <&>\"'",
                    vec![spread(1234.0), spread(4560.0), None, spread(0.0)],
                ),
            ],
        )
    }

    /// Checks that tags nest and that every `&` starts one of the entities XML predefines.
    fn assert_well_formed(svg: &str) {
        let mut open = Vec::new();
        let mut rest = svg;
        while let Some(start) = rest.find('<') {
            let end = start + rest[start..].find('>').expect("every tag is closed");
            let tag = &rest[start + 1..end];
            if let Some(name) = tag.strip_prefix('/') {
                assert_eq!(open.pop(), Some(name), "closing tag out of order");
            } else if !tag.ends_with('/') {
                open.push(tag.split_whitespace().next().expect("a tag name"));
            }
            rest = &rest[end + 1..];
        }
        assert!(open.is_empty(), "unclosed: {open:?}");
        for (at, _) in svg.match_indices('&') {
            assert!(
                ["&amp;", "&lt;", "&gt;", "&quot;", "&apos;"]
                    .iter()
                    .any(|entity| svg[at..].starts_with(entity)),
                "bare & at {at}"
            );
        }
    }

    fn attribute(element: &str, name: &str) -> Option<f64> {
        let start = element.find(&format!(" {name}=\""))? + name.len() + 3;
        let end = start + element[start..].find('"')?;
        element[start..end].parse().ok()
    }

    /// Boxes (left, top, right, bottom) around every bar, legend swatch and text. A text's box
    /// is as wide as the layout estimates and reaches 0.8 em above its baseline and 0.2 below.
    fn boxes(svg: &str) -> Vec<(f64, f64, f64, f64)> {
        let mut boxes = Vec::new();
        for line in svg.lines() {
            if line.starts_with("<text") {
                let x = attribute(line, "x").expect("text x");
                let baseline = attribute(line, "y").expect("text y");
                let size = attribute(line, "font-size").unwrap_or(FONT_SIZE);
                let content = &line[line.find('>').unwrap() + 1..line.rfind("</text>").unwrap()];
                let unescaped = content
                    .replace("&lt;", "<")
                    .replace("&gt;", ">")
                    .replace("&quot;", "\"")
                    .replace("&apos;", "'")
                    .replace("&amp;", "&");
                let width = text_width(&unescaped, size);
                let left = if line.contains("text-anchor=\"middle\"") {
                    x - width / 2.0
                } else if line.contains("text-anchor=\"end\"") {
                    x - width
                } else {
                    x
                };
                boxes.push((
                    left,
                    baseline - 0.8 * size,
                    left + width,
                    baseline + 0.2 * size,
                ));
            } else if line.starts_with("<rect x=") || line.starts_with("<rect class=\"bar\"") {
                let x = attribute(line, "x").expect("rect x");
                let y = attribute(line, "y").expect("rect y");
                let width = attribute(line, "width").expect("rect width");
                let height = attribute(line, "height").expect("rect height");
                boxes.push((x, y, x + width, y + height));
            }
        }
        boxes
    }

    fn assert_nothing_overlaps(svg: &str) {
        let first = svg.lines().next().unwrap();
        let width = attribute(first, "width").unwrap();
        let height = attribute(first, "height").unwrap();
        let boxes = boxes(svg);
        for (i, a) in boxes.iter().enumerate() {
            assert!(
                a.0 >= 0.0 && a.1 >= 0.0 && a.2 <= width && a.3 <= height,
                "{a:?} sticks out of {width}x{height}"
            );
            for b in &boxes[i + 1..] {
                let apart = a.2 <= b.0 || b.2 <= a.0 || a.3 <= b.1 || b.3 <= a.1;
                assert!(apart, "{a:?} overlaps {b:?}");
            }
        }
    }

    fn formatted(ticks: &[f64]) -> Vec<String> {
        ticks.iter().map(|tick| format_compact(*tick)).collect()
    }

    #[test]
    fn scale_is_log_when_medians_span_more_than_the_ratio() {
        assert_eq!(medians(&[3.0, 2500.0]).scale(), Scale::Log10);
        assert_eq!(medians(&[1.0, 50.1]).scale(), Scale::Log10);
    }

    #[test]
    fn scale_is_linear_within_the_ratio() {
        assert_eq!(medians(&[10.0, 500.0]).scale(), Scale::Linear);
        assert_eq!(medians(&[310.0, 1850.0]).scale(), Scale::Linear);
        assert_eq!(medians(&[7.0]).scale(), Scale::Linear);
        assert_eq!(medians(&[]).scale(), Scale::Linear);
    }

    #[test]
    fn scale_ignores_zero_and_negative_medians() {
        assert_eq!(medians(&[0.0, 1.0, 100.0]).scale(), Scale::Log10);
        assert_eq!(medians(&[0.0, 2.0, 50.0]).scale(), Scale::Linear);
        assert_eq!(medians(&[-1000.0, 1.0, 10.0]).scale(), Scale::Linear);
        assert_eq!(medians(&[0.0, -5.0]).scale(), Scale::Linear);
    }

    #[test]
    fn scale_ignores_spreads() {
        let mut chart = medians(&[10.0, 20.0]);
        chart.groups[0].values[0] = Some(Value {
            median: 10.0,
            low: 0.01,
            high: 10_000.0,
        });
        assert_eq!(chart.scale(), Scale::Linear);
    }

    #[test]
    fn linear_ticks_are_1_2_5_steps_from_zero() {
        assert_eq!(
            formatted(&Axis::linear(0.0, 37.0).ticks),
            ["0", "10", "20", "30", "40"]
        );
        assert_eq!(
            formatted(&Axis::linear(0.0, 1.0).ticks),
            ["0", "0.2", "0.4", "0.6", "0.8", "1"]
        );
        assert_eq!(
            formatted(&Axis::linear(0.0, 1850.0).ticks),
            ["0", "500", "1k", "1.5k", "2k"]
        );
        assert_eq!(
            formatted(&Axis::linear(12.0, 14.0).ticks),
            ["0", "5", "10", "15"],
            "a linear axis starts at zero"
        );
    }

    #[test]
    fn linear_ticks_take_in_negative_values() {
        let axis = Axis::linear(-3.0, 7.0);
        assert_eq!(
            formatted(&axis.ticks),
            ["-4", "-2", "0", "2", "4", "6", "8"]
        );
        assert_eq!((axis.min, axis.max), (-4.0, 8.0));
        assert_eq!(
            formatted(&Axis::linear(-30.0, -10.0).ticks),
            ["-30", "-20", "-10", "0"]
        );
    }

    #[test]
    fn linear_ticks_of_nothing_but_zero_still_make_an_axis() {
        let axis = Axis::linear(0.0, 0.0);
        assert_eq!((axis.min, axis.max), (0.0, 1.0));
        assert_eq!(axis.ticks.len(), 6);
    }

    #[test]
    fn log_ticks_are_decades_around_the_values() {
        assert_eq!(
            formatted(&Axis::log10(3.0, 2500.0).ticks),
            ["1", "10", "100", "1k", "10k"]
        );
        assert_eq!(
            formatted(&Axis::log10(0.05, 1000.0).ticks),
            ["0.01", "0.1", "1", "10", "100", "1k"],
            "a power of ten is its own decade"
        );
        assert_eq!(formatted(&Axis::log10(1e-5, 1e-5).ticks), ["1e-5", "1e-4"]);
    }

    #[test]
    fn log_ticks_skip_decades_on_a_wide_range() {
        let axis = Axis::log10(1e-3, 1e12);
        assert_eq!(
            formatted(&axis.ticks),
            [
                "0.001", "0.1", "10", "1k", "100k", "10M", "1G", "100G", "1e13"
            ]
        );
    }

    #[test]
    fn axis_holds_the_spreads() {
        let mut chart = medians(&[10.0, 20.0]);
        chart.groups[1].values[0] = Some(Value {
            median: 20.0,
            low: -4.0,
            high: 95.0,
        });
        let axis = Axis::for_chart(&chart);
        assert_eq!(axis.scale, Scale::Linear);
        assert!(axis.min <= -4.0 && axis.max >= 95.0, "{axis:?}");

        chart.groups[0].values[0] = Some(Value {
            median: 0.35,
            low: 0.05,
            high: 0.4,
        });
        let axis = Axis::for_chart(&chart);
        assert_eq!(axis.scale, Scale::Log10);
        assert_eq!((axis.min, axis.max), (0.01, 100.0));
    }

    #[test]
    fn values_print_to_three_significant_digits() {
        let cases = [
            (0.0, "0"),
            (12.0, "12"),
            (12.34, "12.3"),
            (0.5, "0.5"),
            (1234.0, "1.23k"),
            (999.6, "1k"),
            (100_000.0, "100k"),
            (1.5e6, "1.5M"),
            (2.5e9, "2.5G"),
            (999e9, "999G"),
            (0.001_234, "0.00123"),
            (0.000_123_4, "1.23e-4"),
            (1.234e12, "1.23e12"),
            (-1234.0, "-1.23k"),
            (-0.0, "0"),
        ];
        for (number, text) in cases {
            assert_eq!(format_compact(number), text, "{number}");
        }
    }

    #[test]
    fn escaping_covers_markup_and_forbidden_characters() {
        assert_eq!(
            escape_xml("a<b>&\"'\u{1}\u{FFFF}é\t"),
            "a&lt;b&gt;&amp;&quot;&apos;\u{FFFD}\u{FFFD}é\t"
        );
    }

    #[test]
    fn svg_is_a_document_with_a_bar_per_measured_value() {
        let chart = chart(
            &["kvm/microvm", "tcg/pc", "xen-pv"],
            &[
                ("clock-read-tsc", vec![spread(12.0), spread(85.0), None]),
                ("clock-read-hpet", vec![spread(620.0), None, None]),
            ],
        );
        let svg = render_svg(&chart).unwrap();
        assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\" version=\"1.1\""));
        assert!(svg.ends_with("</svg>\n"));
        assert_well_formed(&svg);
        assert_eq!(svg.matches("<rect class=\"bar\"").count(), 3);
        assert_eq!(svg.matches(">n/a</text>").count(), 3);
        for text in [
            "kvm/microvm",
            "tcg/pc",
            "xen-pv",
            "clock-read-hpet",
            "ns per read",
            ">620<",
        ] {
            assert!(svg.contains(text), "{text}");
        }
        assert!(!svg.contains("NaN") && !svg.contains("inf"));
    }

    #[test]
    fn svg_escapes_every_text() {
        let mut chart = four_environments();
        chart.title = "Reads & <writes>".to_owned();
        chart.unit = "\"ns\"".to_owned();
        chart.series[1] = "tcg/'pc'".to_owned();
        let svg = render_svg(&chart).unwrap();
        assert_well_formed(&svg);
        for text in [
            "clock-read-hpet &lt;&amp;&gt;&quot;&apos;",
            "Reads &amp; &lt;writes&gt;",
            "&quot;ns&quot;",
            "tcg/&apos;pc&apos;",
        ] {
            assert!(svg.contains(text), "{text}");
        }
        assert!(!svg.contains("<&>") && !svg.contains("<writes>"));
    }

    #[test]
    fn log_axis_prints_the_values_it_cannot_draw() {
        let chart = chart(
            &["kvm/microvm", "tcg/pc", "xen-pv"],
            &[
                (
                    "clock-read-tsc",
                    vec![
                        spread(1.0),
                        spread(1000.0),
                        Some(Value {
                            median: -5.0,
                            low: -6.0,
                            high: -4.0,
                        }),
                    ],
                ),
                (
                    "clock-read-hpet",
                    vec![
                        Some(Value {
                            median: 2.0,
                            low: 0.0,
                            high: 3.0,
                        }),
                        spread(0.0),
                        None,
                    ],
                ),
            ],
        );
        assert_eq!(chart.scale(), Scale::Log10);
        let svg = render_svg(&chart).unwrap();
        assert_well_formed(&svg);
        assert_eq!(svg.matches("<rect class=\"bar\"").count(), 3);
        assert!(svg.contains(">-5</text>") && svg.contains(">0</text>"));
        assert!(!svg.contains("NaN") && !svg.contains("inf"));
        assert_nothing_overlaps(&svg);
    }

    #[test]
    fn extreme_magnitudes_stay_finite() {
        let exactly = |number| {
            Some(Value {
                median: number,
                low: number,
                high: number,
            })
        };
        let chart = chart(
            &["kvm/microvm", "tcg/pc", "xen-pv"],
            &[(
                "bench",
                vec![
                    exactly(SMALLEST_MAGNITUDE),
                    exactly(LARGEST_MAGNITUDE),
                    exactly(-LARGEST_MAGNITUDE),
                ],
            )],
        );
        assert_eq!(chart.scale(), Scale::Log10);
        let svg = render_svg(&chart).unwrap();
        assert_well_formed(&svg);
        assert!(!svg.contains("NaN") && !svg.contains("inf"));
    }

    #[test]
    fn nothing_overlaps() {
        assert_nothing_overlaps(&render_svg(&four_environments()).unwrap());
        assert_nothing_overlaps(&render_svg(&medians(&[-30.0, 12.0, 0.0])).unwrap());
        assert_nothing_overlaps(&render_svg(&chart(&[], &[])).unwrap());
        assert_nothing_overlaps(
            &render_svg(&chart(&[], &[("lonely", vec![]), ("b", vec![])])).unwrap(),
        );
    }

    #[test]
    fn nothing_overlaps_with_many_long_names() {
        let series = [
            "kvm/microvm-with-a-long-name",
            "kvm/pc",
            "tcg/microvm",
            "tcg/pc-with-a-long-name",
            "xen-pvh",
            "xen-pv",
            "xen-hvm-with-a-very-very-long-name-indeed",
        ];
        let groups: Vec<_> = (0..6)
            .map(|group| {
                let values = (0..series.len())
                    .map(|series| spread(123_456.0).filter(|_| (group + series) % 4 != 0))
                    .collect();
                ("block-read-throughput-with-a-rather-long-id", values)
            })
            .collect();
        let mut chart = chart(&series, &groups);
        chart.title =
            "A title much longer than the chart would otherwise be wide, to see it fit".to_owned();
        let svg = render_svg(&chart).unwrap();
        assert_eq!(
            svg.matches("<rect x=").count(),
            series.len(),
            "one legend swatch per series"
        );
        assert_nothing_overlaps(&svg);
    }

    #[test]
    fn groups_without_a_value_per_series_are_refused() {
        let mut chart = four_environments();
        chart.groups[1].values.pop();
        assert_eq!(
            render_svg(&chart),
            Err(ChartError::ValueCount {
                group: "clock-read-hpet <&>\"'".to_owned(),
                expected: 4,
                found: 3,
            })
        );
    }

    #[test]
    fn unplottable_values_are_refused() {
        for bad in [f64::NAN, f64::INFINITY, -f64::INFINITY, 1e31, 1e-31] {
            let mut chart = four_environments();
            chart.groups[0].values[2] = Some(Value {
                median: 1.0,
                low: 1.0,
                high: bad,
            });
            let error = render_svg(&chart).unwrap_err();
            assert!(
                matches!(error, ChartError::Unplottable { ref series, .. } if series == "xen-pvh"),
                "{bad}: {error:?}"
            );
        }
    }

    #[test]
    fn unordered_spreads_are_refused() {
        let mut chart = four_environments();
        chart.groups[0].values[0] = Some(Value {
            median: 5.0,
            low: 6.0,
            high: 7.0,
        });
        assert!(matches!(
            render_svg(&chart),
            Err(ChartError::UnorderedSpread { .. })
        ));
    }

    #[test]
    fn more_series_than_colours_are_refused() {
        let series = ["a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k"];
        assert_eq!(
            render_svg(&chart(&series, &[])),
            Err(ChartError::TooManySeries { count: 11 })
        );
    }
}
