//! The loss and accuracy curves of every run, as one SVG with two panels.

use std::path::Path;

use plotters::prelude::*;

use super::{EpochStat, RunResult};

const COLORS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

/// The value a panel plots per epoch.
type Plotted = fn(&EpochStat) -> f64;

/// Draws test loss (left) and test accuracy (right) per epoch for every run into `path` (SVG).
pub fn curves(path: &Path, runs: &[RunResult]) -> Result<(), String> {
    let tmp = path.with_extension("svg.tmp");
    {
        let root = SVGBackend::new(&tmp, (1200, 480)).into_drawing_area();
        let e = |e: &dyn std::fmt::Display| format!("{}: cannot draw the plot: {e}", path.display());
        root.fill(&WHITE).map_err(|x| e(&x))?;
        let (left, right) = root.split_horizontally(600);
        let epochs = runs.iter().map(|r| r.curve.len()).max().unwrap_or(1).max(1) as f64;
        let max_loss = runs
            .iter()
            .flat_map(|r| r.curve.iter().map(|c| c.test_loss))
            .filter(|v| v.is_finite())
            .fold(0.1f64, f64::max);
        // per panel: caption, top of the y axis, y label, the plotted value, where the legend goes
        let panels: [(_, _, _, _, Plotted, _); 2] = [
            (
                &left,
                "test loss (cross-entropy)",
                max_loss * 1.05,
                "loss",
                |c| c.test_loss,
                SeriesLabelPosition::UpperRight,
            ),
            (&right, "test accuracy", 1.0, "accuracy", |c| c.test_acc, SeriesLabelPosition::LowerRight),
        ];
        for (area, caption, top, y_desc, value, legend) in panels {
            let mut chart = ChartBuilder::on(area)
                .caption(caption, ("sans-serif", 20))
                .margin(12)
                .x_label_area_size(36)
                .y_label_area_size(50)
                .build_cartesian_2d(1f64..epochs, 0f64..top)
                .map_err(|x| e(&x))?;
            chart.configure_mesh().x_desc("epoch").y_desc(y_desc).draw().map_err(|x| e(&x))?;
            for (i, r) in runs.iter().enumerate() {
                let color = COLORS[i % COLORS.len()];
                chart
                    .draw_series(LineSeries::new(
                        r.curve.iter().map(|c| (c.epoch as f64, value(c))),
                        color.stroke_width(2),
                    ))
                    .map_err(|x| e(&x))?
                    .label(r.name.clone())
                    .legend(move |(x, y)| PathElement::new([(x, y), (x + 18, y)], color.stroke_width(2)));
            }
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .position(legend)
                .draw()
                .map_err(|x| e(&x))?;
        }
        root.present().map_err(|x| e(&x))?;
    }
    std::fs::rename(&tmp, path).map_err(|e| format!("{}: cannot rename into place: {e}", path.display()))
}
