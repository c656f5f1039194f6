//! Precision/recall curve PNGs (`--plots <dir>`): one per class from Darknet's ranks, and one pooled over all
//! classes, drawn with `plotters` ([`crate::plot`]). Blue: precision at each rank; red: the interpolated
//! envelope (max precision at recall >= r) whose area is Darknet's `points 0` AP. Not a Darknet output
//! (Darknet draws no PR plots).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use image::RgbImage;
use plotters::prelude::*;

use super::darknet_map::PrPoint;
use super::EvalOutcome;
use crate::plot::{drawing_error, render, write_png, FONT};

const W: u32 = 640;
const H: u32 = 480;
/// Precision at each rank.
pub const RAW_COLOR: RGBColor = RGBColor(70, 110, 220);
/// The interpolated envelope.
pub const ENVELOPE_COLOR: RGBColor = RGBColor(220, 40, 40);

/// The interpolated envelope as a step line: max precision at recall >= r, from recall 0 to the last point.
fn envelope_steps(points: &[PrPoint]) -> Vec<(f64, f64)> {
    let mut env: Vec<f64> = points.iter().map(|p| p.precision).collect();
    for i in (0..env.len().saturating_sub(1)).rev() {
        env[i] = env[i].max(env[i + 1]);
    }
    let mut steps = Vec::with_capacity(2 * env.len());
    let mut r0 = 0.0;
    for (p, &e) in points.iter().zip(&env) {
        steps.push((r0, e));
        steps.push((p.recall, e));
        r0 = p.recall;
    }
    steps
}

/// Renders one precision/recall curve with `title` above it; also returns where (recall, precision) =
/// `probe` lands in pixels (for tests).
fn render_with_probe(
    title: &str,
    points: &[PrPoint],
    probe: (f64, f64),
) -> Result<(RgbImage, (i32, i32))> {
    render(W, H, |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(title, (FONT, 20))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(50)
            .build_cartesian_2d(0f64..1f64, 0f64..1.02f64)
            .map_err(drawing_error)?;
        chart
            .configure_mesh()
            .x_desc("recall")
            .y_desc("precision")
            .x_labels(11)
            .y_labels(11)
            .label_style((FONT, 13))
            .axis_desc_style((FONT, 15))
            .draw()
            .map_err(drawing_error)?;
        let raw = points.iter().map(|p| (p.recall, p.precision));
        chart
            .draw_series(LineSeries::new(raw, RAW_COLOR.stroke_width(2)))
            .map_err(drawing_error)?
            .label("precision at each rank")
            .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], RAW_COLOR.stroke_width(2)));
        let env = envelope_steps(points);
        chart
            .draw_series(LineSeries::new(env, ENVELOPE_COLOR.stroke_width(2)))
            .map_err(drawing_error)?
            .label("interpolated (area = AP)")
            .legend(|(x, y)| {
                PathElement::new([(x, y), (x + 20, y)], ENVELOPE_COLOR.stroke_width(2))
            });
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerLeft)
            .label_font((FONT, 13))
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()
            .map_err(drawing_error)?;
        Ok(chart.backend_coord(&probe))
    })
}

/// Renders one precision/recall curve with `title` above it.
pub fn render_pr_curve(title: &str, points: &[PrPoint]) -> Result<RgbImage> {
    Ok(render_with_probe(title, points, (0.0, 0.0))?.0)
}

fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

/// Writes `pr_overall.png` and `pr_class_<id>_<name>.png` for every class into `dir`; returns the paths.
pub fn write_pr_plots(dir: &Path, outcome: &EvalOutcome) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let d = &outcome.report.darknet;
    let mut written = Vec::new();
    let p = dir.join("pr_overall.png");
    let title = format!(
        "all classes: mAP@{:.2} = {:.2} %",
        d.iou_thresh,
        d.map * 100.0
    );
    write_png(&p, &render_pr_curve(&title, &outcome.overall_curve)?)?;
    written.push(p);
    for (k, curve) in outcome.class_curves.iter().enumerate() {
        let name = outcome.classes.get(k).map(String::as_str).unwrap_or("");
        let ap = d.per_class.get(k).map(|c| c.ap).unwrap_or(0.0);
        let p = dir.join(format!("pr_class_{k:03}_{}.png", sanitize(name)));
        let title = format!("class {k} {name}: AP = {:.2} %", ap * 100.0);
        write_png(&p, &render_pr_curve(&title, curve)?)?;
        written.push(p);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_curve_pixels() {
        let pts = [
            PrPoint {
                recall: 0.5,
                precision: 1.0,
                prob: 0.9,
            },
            PrPoint {
                recall: 1.0,
                precision: 0.5,
                prob: 0.5,
            },
        ];
        // The envelope at precision 1 over recall 0..0.5 is red; the raw line from (0.5, 1) to (1, 0.5) blue.
        let (img, (x, y)) = render_with_probe("T", &pts, (0.25, 1.0)).unwrap();
        assert_eq!(img.get_pixel(x as u32, y as u32).0, [220, 40, 40]);
        let (img2, (x, y)) = render_with_probe("T", &pts, (0.75, 0.75)).unwrap();
        assert_eq!(img2.get_pixel(x as u32, y as u32).0, [70, 110, 220]);
        assert_eq!(img, img2);
    }
}
