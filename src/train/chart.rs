//! The training chart, Darknet's `chart.png` (`draw_train_chart` / `draw_train_loss` in src/image_opencv.cpp),
//! drawn with `plotters` ([`crate::plot`]): the average loss (blue, left axis) and mAP@0.5 (red, right axis,
//! 0..1) against the iteration, 0..`max_batches`.

use std::path::Path;

use anyhow::Result;
use plotters::prelude::*;

use crate::plot::{drawing_error, render, write_png, FONT};
use crate::train::checkpoint::TrainerState;

/// The average-loss line.
pub const LOSS_COLOR: RGBColor = RGBColor(0, 0, 255);
/// The mAP line and its axis.
pub const MAP_COLOR: RGBColor = RGBColor(220, 0, 0);

/// Top of the loss axis: the largest average loss capped at Darknet's `max_chart_loss` (20, so the start of
/// training does not flatten the rest), plus 20 %.
fn loss_axis_top(state: &TrainerState) -> f32 {
    let max = state
        .history
        .iter()
        .map(|&(_, _, a)| a)
        .fold(0f32, f32::max);
    max.clamp(1e-6, 20.0) * 1.2
}

/// Draws the chart; returns the pixel of the last average-loss point (for tests).
fn draw(area: &crate::plot::Area, state: &TrainerState, max_batches: usize) -> Result<(i32, i32)> {
    let top = loss_axis_top(state) as f64;
    let x_end = max_batches.max(1);
    let mut chart = ChartBuilder::on(area)
        .caption("average loss (blue) and mAP@0.5 (red)", (FONT, 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .right_y_label_area_size(50)
        .build_cartesian_2d(0..x_end, 0f64..top)
        .map_err(drawing_error)?
        .set_secondary_coord(0..x_end, 0f64..1f64);
    chart
        .configure_mesh()
        .x_desc("iteration")
        .y_desc("average loss")
        .label_style((FONT, 13))
        .axis_desc_style((FONT, 15))
        .draw()
        .map_err(drawing_error)?;
    chart
        .configure_secondary_axes()
        .y_desc("mAP@0.5")
        .label_style((FONT, 13).into_font().color(&MAP_COLOR))
        .axis_desc_style((FONT, 15).into_font().color(&MAP_COLOR))
        .draw()
        .map_err(drawing_error)?;
    let loss = state
        .history
        .iter()
        .map(|&(it, _, a)| (it, (a as f64).min(top)));
    chart
        .draw_series(LineSeries::new(loss, LOSS_COLOR.stroke_width(2)))
        .map_err(drawing_error)?;
    let maps = state.maps.iter().map(|&(it, m)| (it, m));
    chart
        .draw_secondary_series(LineSeries::new(maps.clone(), MAP_COLOR.stroke_width(2)))
        .map_err(drawing_error)?;
    chart
        .draw_secondary_series(maps.map(|p| Circle::new(p, 4, MAP_COLOR.filled())))
        .map_err(drawing_error)?;
    let last = state
        .history
        .last()
        .map_or((0, 0.0), |&(it, _, a)| (it, a as f64));
    Ok(chart.backend_coord(&last))
}

/// Renders the chart (800×500).
pub fn render_chart(state: &TrainerState, max_batches: usize) -> Result<image::RgbImage> {
    Ok(render(800, 500, |area| draw(area, state, max_batches))?.0)
}

/// Renders and writes `chart.png` atomically.
pub fn write_chart(path: &Path, state: &TrainerState, max_batches: usize) -> Result<()> {
    write_png(path, &render_chart(state, max_batches)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chart_renders() {
        let st = TrainerState {
            iteration: 3,
            seen: 3,
            avg_loss: 1.0,
            history: vec![(1, 3.0, 3.0), (2, 2.0, 2.9), (3, 1.0, 2.7)],
            maps: vec![(1, 0.1), (3, 0.5)],
            seed: 0,
            darknet_rng: false,
            cfg_hash: 0,
        };
        let (img, (x, y)) = render(800, 500, |a| draw(a, &st, 10)).unwrap();
        assert_eq!(img.dimensions(), (800, 500));
        // The loss line (2 px wide) passes through its last point; the mAP line is there too.
        let near = (-1..=1).flat_map(|dy| (-1..=1).map(move |dx| (x + dx, y + dy)));
        let blue = near.filter(|&(u, v)| img.get_pixel(u as u32, v as u32).0 == [0, 0, 255]);
        assert!(blue.count() >= 2, "no loss line at {x},{y}");
        assert!(img.pixels().any(|p| p.0 == [220, 0, 0]));
    }
}
