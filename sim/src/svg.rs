//! A timeline picture of one run, as SVG, for people (`sim run … --svg FILE`).
//!
//! - One row per peer, coloured by how visible the peer is (green: every peer that should see it
//!   alive does; amber: some do; red: none do; dark grey: crashed but still seen alive by
//!   someone; grey: crashed). With an `orderer:` section, one lane per ordering-service node
//!   below the peers (blue while it runs, grey while it is down).
//! - With an orderer, each row also draws its ledger height over time (a black line, all rows on
//!   one scale: a row's top is the highest height of the run) with the height at the end on the
//!   right, and each failover (a peer's deliver client moving to another orderer node) as a
//!   purple diamond on the peer's row, dashed down to the node's lane.
//! - The timeline's events as vertical lines, numbered and labelled above the rows (labels that
//!   would overlap go to another line), listed again in the legend with their times.
//! - Membership convergence as a blue dashed line (where it held to the end), and each time it
//!   diverged again after converging as a red dashed line.
//!
//! The picture is a pure function of the scenario and the outcome, formatted with fixed
//! precision: the same seed draws the same bytes. It does not scale text to fit; long labels may
//! run past the right edge of the time axis into the margin.

use std::fmt::Write as _;
use std::time::Duration;

use crate::run::Outcome;
use crate::scenario::{Event, Scenario, duration_text};

const ROW: f64 = 22.0;
const LEFT: f64 = 170.0;
const WIDTH: f64 = 900.0;
/// Room right of the time axis for the heights at the end.
const RIGHT: f64 = 70.0;
/// The first line of event labels.
const LABELS_TOP: f64 = 40.0;
const LABEL_LINE: f64 = 14.0;
/// The width of one character of the 11px monospace labels, to keep labels from overlapping.
const CHAR_WIDTH: f64 = 6.7;

const FAILOVER: &str = "#6a1b9a";
const CONVERGED: &str = "#1565c0";
const DIVERGED: &str = "#c62828";
const ORDERER_UP: &str = "#90caf9";
const DOWN: &str = "#bbbbbb";

fn x(at: Duration, total: Duration) -> f64 {
    LEFT + WIDTH * at.as_secs_f64().min(total.as_secs_f64()) / total.as_secs_f64().max(0.001)
}

/// One row's band from `x0` to `x1` (at least half a pixel wide).
fn band(body: &mut String, x0: f64, x1: f64, y: f64, fill: &str) {
    let _ = writeln!(
        body,
        r#"<rect x="{x0:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="{fill}"/>"#,
        y + 3.0,
        (x1 - x0).max(0.5),
        ROW - 6.0
    );
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// The colour of an event's line, by kind: red for hosts going down, green for coming up,
/// orange and teal for cuts and heals, purple for holds, slate for message loss, blue for
/// channel config updates.
fn colour(event: &Event) -> &'static str {
    match event {
        Event::Crash(_) | Event::Kill(_) => "#c62828",
        Event::Restart(_) | Event::Start(_) => "#2e7d32",
        Event::Partition(_) | Event::PartitionOneway(_) => "#ef6c00",
        Event::Heal(_) => "#00838f",
        Event::Hold(_) | Event::Release(_) => "#8e24aa",
        Event::Loss(_) => "#455a64",
        Event::AddAnchor(_) | Event::RemoveOrg(_) => "#1565c0",
    }
}

/// One moment of the timeline: its events described in one label.
struct Moment {
    at: Duration,
    label: String,
    colour: &'static str,
}

/// The timeline's events grouped by time (one moment's partitions in one label, see
/// [`Scenario::describe_events`]), and the end of disk faults.
fn moments(scenario: &Scenario) -> Vec<Moment> {
    let mut steps: Vec<_> = scenario.timeline.iter().collect();
    steps.sort_by_key(|s| s.at);
    let mut moments = Vec::new();
    let mut steps = steps.into_iter().peekable();
    while let Some(step) = steps.next() {
        let mut events = vec![&step.event];
        while let Some(same) = steps.next_if(|s| s.at == step.at) {
            events.push(&same.event);
        }
        moments.push(Moment { at: step.at, label: scenario.describe_events(&events).join("; "), colour: colour(&step.event) });
    }
    if let Some(until) = scenario.disk.as_ref().filter(|d| d.rates().iter().any(|(_, p)| *p > 0.0)).and_then(|d| d.until) {
        moments.push(Moment { at: until, label: "disk faults end".into(), colour: "#5d4037" });
        moments.sort_by_key(|m| m.at);
    }
    moments
}

/// For each moment, the line of labels it goes on: the first line where it does not overlap
/// the label before it. Returns the lines and how many there are.
fn label_lines(moments: &[Moment], total: Duration) -> (Vec<usize>, usize) {
    let mut ends: Vec<f64> = Vec::new();
    let mut lines = Vec::new();
    for (number, moment) in moments.iter().enumerate() {
        let start = x(moment.at, total);
        let end = start + 4.0 + CHAR_WIDTH * (format!("{} {}", number + 1, moment.label).chars().count() as f64);
        let line = match ends.iter().position(|e| *e + 6.0 <= start) {
            Some(line) => line,
            None => {
                ends.push(0.0);
                ends.len() - 1
            }
        };
        ends[line] = end;
        lines.push(line);
    }
    let count = ends.len();
    (lines, count)
}

/// Renders the run.
pub fn render(scenario: &Scenario, outcome: &Outcome) -> String {
    let peers = scenario.peers();
    let nodes = scenario.orderer_nodes();
    let total = scenario.duration;
    let moments = moments(scenario);
    let (lines, line_count) = label_lines(&moments, total);
    let top = LABELS_TOP + LABEL_LINE * line_count.max(1) as f64 + 6.0;
    let rows = peers.len() + nodes.len();
    let bottom = top + ROW * rows as f64;
    let row_of = |name: &str| -> Option<f64> {
        let index = peers.iter().position(|p| p.name == name).or_else(|| nodes.iter().position(|n| n == name).map(|i| peers.len() + i))?;
        Some(top + ROW * index as f64)
    };

    let mut body = String::new();
    let _ = writeln!(body, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(body, r#"<text x="10" y="20" font-size="14">{} seed {}</text>"#, escape(&outcome.scenario), outcome.seed);

    // Rows: peers' visibility, then the orderer nodes' lanes (up or down).
    for (row, peer) in peers.iter().enumerate() {
        let y = top + ROW * row as f64;
        let label = if peer.external { peer.name.clone() } else { format!("{} (int)", peer.name) };
        let _ = writeln!(body, r#"<text x="10" y="{:.1}">{}</text>"#, y + 15.0, escape(&label));
        let mut previous = Duration::ZERO;
        for (at, visibility) in &outcome.samples {
            let Some(v) = visibility.get(&peer.name) else { continue };
            let fill = if !v.running && v.seen > 0 {
                "#757575"
            } else if !v.running {
                DOWN
            } else if v.should == 0 || v.seen == v.should {
                "#4caf50"
            } else if v.seen == 0 {
                "#e57373"
            } else {
                "#ffb74d"
            };
            let (x0, x1) = (x(previous, total), x(*at, total));
            band(&mut body, x0, x1, y, fill);
            previous = *at;
        }
    }
    for (index, node) in nodes.iter().enumerate() {
        let y = top + ROW * (peers.len() + index) as f64;
        let role = if index == 0 { "cutter" } else { "replica" };
        let _ = writeln!(body, r#"<text x="10" y="{:.1}">{} ({role})</text>"#, y + 15.0, escape(node));
        let mut previous = Duration::ZERO;
        for (at, heights) in &outcome.heights {
            let fill = if heights.contains_key(node) { ORDERER_UP } else { DOWN };
            let (x0, x1) = (x(previous, total), x(*at, total));
            band(&mut body, x0, x1, y, fill);
            previous = *at;
        }
    }

    // Ledger heights, every row on one scale.
    let highest = outcome.heights.iter().flat_map(|(_, h)| h.values().copied()).max().unwrap_or(0);
    if highest > 0 {
        let names = peers.iter().map(|p| p.name.clone()).chain(nodes.iter().cloned());
        for name in names {
            let Some(y) = row_of(&name) else { continue };
            let level = |height: u64| y + ROW - 4.0 - (ROW - 8.0) * height as f64 / highest as f64;
            // One polyline per stretch the ledger was open (a crash breaks the line).
            let mut stretches: Vec<Vec<(Duration, u64)>> = vec![Vec::new()];
            for (at, heights) in &outcome.heights {
                match heights.get(&name) {
                    Some(height) => stretches.last_mut().expect("never empty").push((*at, *height)),
                    None if stretches.last().is_some_and(|s| !s.is_empty()) => stretches.push(Vec::new()),
                    None => {}
                }
            }
            for stretch in stretches.iter().filter(|s| !s.is_empty()) {
                let points: Vec<String> =
                    stretch.iter().map(|(at, height)| format!("{:.1},{:.1}", x(*at, total), level(*height))).collect();
                let _ = writeln!(body, r#"<polyline points="{}" fill="none" stroke="black" stroke-width="1.5"/>"#, points.join(" "));
            }
            let last = outcome.heights.iter().rev().find_map(|(_, heights)| heights.get(&name));
            if let Some(last) = last {
                let _ = writeln!(body, r#"<text x="{:.1}" y="{:.1}">h {last}</text>"#, LEFT + WIDTH + 6.0, y + 15.0);
            }
        }
    }

    // Failovers: a diamond on the peer's row, dashed to the lane of the node it moved to.
    for delivery in outcome.deliveries.iter().filter(|d| d.moved) {
        let (Some(from), Some(to)) = (row_of(&delivery.peer), row_of(&delivery.node)) else { continue };
        let (at, middle, target) = (x(delivery.at, total), from + ROW / 2.0, to + ROW / 2.0);
        let title = format!("{} fails over to {} at {:.2}s", delivery.peer, delivery.node, delivery.at.as_secs_f64());
        let _ = writeln!(
            body,
            r#"<line x1="{at:.1}" y1="{middle:.1}" x2="{at:.1}" y2="{target:.1}" stroke="{FAILOVER}" stroke-width="1" stroke-dasharray="2 2"/>"#
        );
        let _ = writeln!(
            body,
            r#"<polygon points="{:.1},{middle:.1} {at:.1},{:.1} {:.1},{middle:.1} {at:.1},{:.1}" fill="{FAILOVER}"><title>{}</title></polygon>"#,
            at - 5.0,
            middle - 5.0,
            at + 5.0,
            middle + 5.0,
            escape(&title)
        );
        let _ = writeln!(
            body,
            r#"<text x="{:.1}" y="{:.1}" font-size="10" fill="{FAILOVER}">&#8594;{}</text>"#,
            at + 6.0,
            middle - 2.0,
            escape(&delivery.node)
        );
    }

    // The timeline's events: numbered labels above the rows, a line down through them.
    for (number, (moment, line)) in moments.iter().zip(&lines).enumerate() {
        let at = x(moment.at, total);
        let baseline = LABELS_TOP + LABEL_LINE * *line as f64 + 10.0;
        let label = format!("{} {}", number + 1, moment.label);
        let _ = writeln!(
            body,
            r#"<text x="{:.1}" y="{baseline:.1}" font-size="11" fill="{}">{}</text>"#,
            at + 2.0,
            moment.colour,
            escape(&label)
        );
        let _ = writeln!(
            body,
            r#"<line x1="{at:.1}" y1="{:.1}" x2="{at:.1}" y2="{bottom:.1}" stroke="{}" stroke-width="1"><title>{} at {}</title></line>"#,
            baseline - 10.0,
            moment.colour,
            escape(&moment.label),
            duration_text(moment.at)
        );
    }

    // Convergence: where it held to the end, and where it was lost again before.
    let last_fault = scenario.last_fault();
    for (_, at) in &outcome.diverged {
        let at = x(*at, total);
        let _ = writeln!(
            body,
            r#"<line x1="{at:.1}" y1="{top:.1}" x2="{at:.1}" y2="{bottom:.1}" stroke="{DIVERGED}" stroke-width="2" stroke-dasharray="4 3"/>"#
        );
        let _ = writeln!(body, r#"<text x="{:.1}" y="{:.1}" font-size="10" fill="{DIVERGED}">diverged</text>"#, at + 3.0, bottom + 10.0);
    }
    if let Some(after) = outcome.converged_after {
        let at = x(last_fault + after, total);
        let _ = writeln!(
            body,
            r#"<line x1="{at:.1}" y1="{top:.1}" x2="{at:.1}" y2="{bottom:.1}" stroke="{CONVERGED}" stroke-width="2" stroke-dasharray="4 3"/>"#
        );
        let _ = writeln!(body, r#"<text x="{:.1}" y="{:.1}" font-size="10" fill="{CONVERGED}">converged</text>"#, at + 3.0, bottom + 10.0);
    }

    // The time axis.
    let axis = bottom + 26.0;
    let seconds = total.as_secs().max(1);
    let step = (seconds / 10).max(1);
    for s in (0..=seconds).step_by(step as usize) {
        let at = x(Duration::from_secs(s), total);
        let _ = writeln!(body, r#"<text x="{at:.1}" y="{axis:.1}" text-anchor="middle">{s}s</text>"#);
    }

    let height = legend(&mut body, axis + 24.0, scenario, outcome, &moments, highest);
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{:.0}" height="{height:.0}" font-family="monospace" font-size="12" shape-rendering="crispEdges">"#,
        LEFT + WIDTH + RIGHT
    );
    svg.push_str(&body);
    svg.push_str("</svg>\n");
    svg
}

/// The legend from `y` down: what the colours and marks mean, and every event with its number
/// and time. Returns the picture's height.
fn legend(body: &mut String, mut y: f64, scenario: &Scenario, outcome: &Outcome, moments: &[Moment], highest: u64) -> f64 {
    let _ = writeln!(body, r#"<g id="legend">"#);
    let _ = writeln!(body, r#"<text x="10" y="{y:.1}" font-weight="bold">Legend</text>"#);
    y += 18.0;
    let mut swatches: Vec<(&str, String)> = vec![
        ("#4caf50", "seen alive by every peer that should".into()),
        ("#ffb74d", "seen alive by some".into()),
        ("#e57373", "by none".into()),
        ("#757575", "crashed, still seen alive".into()),
        (DOWN, "crashed (or not started)".into()),
    ];
    if !scenario.orderer_nodes().is_empty() {
        swatches.push((ORDERER_UP, "orderer node running".into()));
    }
    let mut column = 10.0;
    for (fill, text) in &swatches {
        let width = 18.0 + CHAR_WIDTH * 1.1 * text.chars().count() as f64;
        if column + width > LEFT + WIDTH {
            column = 10.0;
            y += 16.0;
        }
        let _ = writeln!(body, r#"<rect x="{column:.1}" y="{:.1}" width="12" height="10" fill="{fill}"/>"#, y - 9.0);
        let _ = writeln!(body, r#"<text x="{:.1}" y="{y:.1}">{}</text>"#, column + 16.0, escape(text));
        column += width + 14.0;
    }
    y += 18.0;
    let mut keys: Vec<String> = vec!["(int): the peer has no external endpoint (invisible outside its org)".into()];
    if highest > 0 {
        keys.push(format!(
            "black line: the row's ledger height over time (0 at the row's bottom, {highest} at its top); h N: its height at the end"
        ));
    }
    if outcome.deliveries.iter().any(|d| d.moved) {
        keys.push("purple diamond: failover, the peer's deliver client moved to another orderer node (dashed to its lane)".into());
    }
    keys.push("blue dashed: membership converged after the last fault and stayed converged".into());
    if !outcome.diverged.is_empty() {
        keys.push("red dashed: membership had converged and diverged again with no new fault".into());
    }
    keys.push("numbered lines: the timeline's events, listed below".into());
    for key in keys {
        let _ = writeln!(body, r#"<text x="10" y="{y:.1}">{}</text>"#, escape(&key));
        y += 16.0;
    }
    for (number, moment) in moments.iter().enumerate() {
        let _ = writeln!(body, r#"<rect x="10" y="{:.1}" width="12" height="3" fill="{}"/>"#, y - 5.0, moment.colour);
        let _ =
            writeln!(body, r#"<text x="28" y="{y:.1}">{}. {:.2}s {}</text>"#, number + 1, moment.at.as_secs_f64(), escape(&moment.label));
        y += 16.0;
    }
    let _ = writeln!(body, "</g>");
    y + 6.0
}
