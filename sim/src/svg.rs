//! A timeline picture of one run, as SVG: one row per peer, coloured by how visible the peer is
//! (green: every peer that should see it alive does; amber: some do; red: none do; dark grey:
//! crashed but still seen alive by someone; grey: crashed), with the
//! timeline's events marked on top and the convergence time as a blue line.

use std::fmt::Write as _;
use std::time::Duration;

use crate::run::Outcome;
use crate::scenario::{Event, Scenario};

const ROW: f64 = 22.0;
const LEFT: f64 = 130.0;
const WIDTH: f64 = 900.0;
const TOP: f64 = 40.0;

fn x(at: Duration, total: Duration) -> f64 {
    LEFT + WIDTH * at.as_secs_f64() / total.as_secs_f64().max(0.001)
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// Renders the run.
pub fn render(scenario: &Scenario, outcome: &Outcome) -> String {
    let peers = scenario.peers();
    let total = scenario.duration;
    let height = TOP + ROW * peers.len() as f64 + 80.0;
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{}" height="{height}" font-family="monospace" font-size="12" shape-rendering="crispEdges">"#,
        LEFT + WIDTH + 20.0
    );
    let _ = writeln!(svg, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(svg, r#"<text x="10" y="20" font-size="14">{} seed {}</text>"#, escape(&outcome.scenario), outcome.seed);
    for (row, peer) in peers.iter().enumerate() {
        let y = TOP + ROW * row as f64;
        let label = if peer.external { peer.name.clone() } else { format!("{} (int)", peer.name) };
        let _ = writeln!(svg, r#"<text x="10" y="{}">{}</text>"#, y + 15.0, escape(&label));
        let mut previous = Duration::ZERO;
        for (at, visibility) in &outcome.samples {
            let Some(v) = visibility.get(&peer.name) else { continue };
            let colour = if !v.running && v.seen > 0 {
                "#757575"
            } else if !v.running {
                "#bbbbbb"
            } else if v.should == 0 || v.seen == v.should {
                "#4caf50"
            } else if v.seen == 0 {
                "#e57373"
            } else {
                "#ffb74d"
            };
            let (x0, x1) = (x(previous, total), x(*at, total));
            let _ = writeln!(svg, r#"<rect x="{x0:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="{colour}"/>"#, y + 3.0, (x1 - x0).max(0.5), ROW - 6.0);
            previous = *at;
        }
    }
    for step in &scenario.timeline {
        let at = x(step.at, total);
        let (label, colour) = match &step.event {
            Event::Crash(p) => (format!("crash {p}"), "#c62828"),
            Event::Kill(p) => (format!("kill {p}"), "#c62828"),
            Event::Restart(p) => (format!("restart {p}"), "#2e7d32"),
            Event::Partition([a, b]) | Event::PartitionOneway([a, b]) => (format!("cut {a}/{b}"), "#ef6c00"),
            Event::Heal([a, b]) => (format!("heal {a}/{b}"), "#00838f"),
            Event::Hold([a, b]) => (format!("hold {a}/{b}"), "#6a1b9a"),
            Event::Release([a, b]) => (format!("release {a}/{b}"), "#6a1b9a"),
            Event::Start(p) => (format!("start {p}"), "#2e7d32"),
            Event::Loss(rate) => (format!("message loss {:.0}%", rate * 100.0), "#455a64"),
        };
        let _ = writeln!(
            svg,
            r#"<line x1="{at:.1}" y1="{}" x2="{at:.1}" y2="{:.1}" stroke="{colour}" stroke-width="1"><title>{} at {:?}</title></line>"#,
            TOP - 5.0,
            TOP + ROW * peers.len() as f64,
            escape(&label),
            step.at
        );
    }
    if let Some(after) = outcome.converged_after {
        let at = x(scenario.last_fault() + after, total);
        let _ = writeln!(
            svg,
            r##"<line x1="{at:.1}" y1="{}" x2="{at:.1}" y2="{:.1}" stroke="#1565c0" stroke-width="2" stroke-dasharray="4 3"/>"##,
            TOP - 5.0,
            TOP + ROW * peers.len() as f64
        );
    }
    let axis = TOP + ROW * peers.len() as f64 + 18.0;
    let seconds = total.as_secs().max(1);
    let step = (seconds / 10).max(1);
    for s in (0..=seconds).step_by(step as usize) {
        let at = x(Duration::from_secs(s), total);
        let _ = writeln!(svg, r#"<text x="{at:.1}" y="{axis}" text-anchor="middle">{s}s</text>"#);
    }
    let legend = axis + 22.0;
    let _ = writeln!(svg, r##"<text x="10" y="{legend}">green: seen alive by all who should · amber: by some · red: by none · blue dashed: converged</text>"##);
    let _ = writeln!(
        svg,
        r##"<text x="10" y="{}">dark grey: crashed but still seen alive · grey: crashed · (int): no external endpoint · lines: timeline events</text>"##,
        legend + 16.0
    );
    svg.push_str("</svg>\n");
    svg
}
