//! Scatter plot of box sizes and anchors, the counterpart of Darknet's `show_acnhors` (`src/image_opencv.cpp`,
//! an OpenCV window): here a PNG drawn with `plotters` ([`crate::plot`]). x is the box width, y the box height,
//! both from 0 to the network size; each box is a dot coloured by its closest anchor; each anchor is a black
//! cross plus the outline of the anchor rectangle from the origin in its colour.

use std::path::Path;

use anyhow::Result;
use plotters::prelude::*;

use crate::plot::{drawing_error, palette, render, write_png, Area, FONT};

const SIZE: u32 = 800;

/// Draws the plot; returns the pixel of the first anchor (for tests).
fn draw(
    area: &Area,
    boxes: &[[f32; 2]],
    anchors: &[[f32; 2]],
    width: u32,
    height: u32,
) -> Result<(i32, i32)> {
    let title = format!(
        "{} boxes, {} anchors (network {width}x{height})",
        boxes.len(),
        anchors.len()
    );
    let mut chart = ChartBuilder::on(area)
        .caption(title, (FONT, 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(65)
        .build_cartesian_2d(0f32..width as f32, 0f32..height as f32)
        .map_err(drawing_error)?;
    chart
        .configure_mesh()
        .x_desc("box width (network pixels)")
        .y_desc("box height (network pixels)")
        .label_style((FONT, 13))
        .axis_desc_style((FONT, 15))
        .draw()
        .map_err(drawing_error)?;
    let clamp = |b: [f32; 2]| {
        (
            b[0].clamp(0.0, width as f32),
            b[1].clamp(0.0, height as f32),
        )
    };
    let dots = boxes.iter().map(|&b| {
        let c = palette(super::closest_center(b, anchors));
        Circle::new(clamp(b), 2, c.filled())
    });
    chart.draw_series(dots).map_err(drawing_error)?;
    for (i, &a) in anchors.iter().enumerate() {
        let (x, y) = clamp(a);
        let outline = [(0.0, y), (x, y), (x, 0.0)];
        chart
            .draw_series(LineSeries::new(outline, palette(i).stroke_width(2)))
            .map_err(drawing_error)?;
        chart
            .draw_series(std::iter::once(Cross::new(
                (x, y),
                7,
                BLACK.stroke_width(3),
            )))
            .map_err(drawing_error)?;
    }
    let first = anchors.first().copied().map_or((0.0, 0.0), clamp);
    Ok(chart.backend_coord(&first))
}

/// Draws the plot into an 800×800 image.
pub fn render_plot(
    boxes: &[[f32; 2]],
    anchors: &[[f32; 2]],
    width: u32,
    height: u32,
) -> Result<image::RgbImage> {
    Ok(render(SIZE, SIZE, |a| draw(a, boxes, anchors, width, height))?.0)
}

/// Renders and writes the PNG atomically.
pub fn write_plot(
    path: &Path,
    boxes: &[[f32; 2]],
    anchors: &[[f32; 2]],
    width: u32,
    height: u32,
) -> Result<()> {
    write_png(path, &render_plot(boxes, anchors, width, height)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anchor_cross_and_coloured_boxes() {
        let boxes = [[10.0, 10.0], [200.0, 300.0], [210.0, 290.0]];
        let anchors = [[100.0, 120.0], [205.0, 295.0]];
        let (img, (x, y)) = render(SIZE, SIZE, |a| draw(a, &boxes, &anchors, 416, 416)).unwrap();
        // The first anchor's centre is black (its cross).
        assert_eq!(img.get_pixel(x as u32, y as u32).0, [0, 0, 0]);
        // Boxes closest to anchor 0 and anchor 1 get the first two palette colours.
        for c in [[31, 119, 180], [255, 127, 14]] {
            assert!(img.pixels().any(|p| p.0 == c), "{c:?} missing");
        }
    }
}
