//! The loss and accuracy curves of every run, as one SVG with two panels.

use std::path::Path;

use plotters::prelude::*;

use super::RunResult;

const COLORS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

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
        let mut lc = ChartBuilder::on(&left)
            .caption("test loss (cross-entropy)", ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(50)
            .build_cartesian_2d(1f64..epochs, 0f64..max_loss * 1.05)
            .map_err(|x| e(&x))?;
        lc.configure_mesh().x_desc("epoch").y_desc("loss").draw().map_err(|x| e(&x))?;
        let mut ac = ChartBuilder::on(&right)
            .caption("test accuracy", ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(50)
            .build_cartesian_2d(1f64..epochs, 0f64..1f64)
            .map_err(|x| e(&x))?;
        ac.configure_mesh().x_desc("epoch").y_desc("accuracy").draw().map_err(|x| e(&x))?;
        for (i, r) in runs.iter().enumerate() {
            let color = COLORS[i % COLORS.len()];
            lc.draw_series(LineSeries::new(
                r.curve.iter().map(|c| (c.epoch as f64, c.test_loss)),
                color.stroke_width(2),
            ))
            .map_err(|x| e(&x))?
            .label(r.name.clone())
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 18, y)], color.stroke_width(2)));
            ac.draw_series(LineSeries::new(
                r.curve.iter().map(|c| (c.epoch as f64, c.test_acc)),
                color.stroke_width(2),
            ))
            .map_err(|x| e(&x))?
            .label(r.name.clone())
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 18, y)], color.stroke_width(2)));
        }
        lc.configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .position(SeriesLabelPosition::UpperRight)
            .draw()
            .map_err(|x| e(&x))?;
        ac.configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .position(SeriesLabelPosition::LowerRight)
            .draw()
            .map_err(|x| e(&x))?;
        root.present().map_err(|x| e(&x))?;
    }
    std::fs::rename(&tmp, path).map_err(|e| format!("{}: cannot rename into place: {e}", path.display()))
}
