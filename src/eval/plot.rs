//! Precision/recall curve PNGs (`--plots <dir>`): one per class from Darknet's ranks, and one pooled over all
//! classes. Drawn with the `image` crate (a built-in 5×7 font for the titles), so no font files are needed.
//! Blue: precision at each rank; red: the interpolated envelope (max precision at recall >= r) whose area
//! is Darknet's `points 0` AP. Not a Darknet output (Darknet draws no PR plots).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use image::{Rgb, RgbImage};

use super::darknet_map::PrPoint;
use super::EvalOutcome;

const W: u32 = 640;
const H: u32 = 480;
const LEFT: i64 = 60;
const RIGHT: i64 = 20;
const TOP: i64 = 40;
const BOTTOM: i64 = 50;

/// Rows of a 5×7 glyph (bit 4 = leftmost column); lower case draws as upper case, unknown as a box.
fn glyph(c: char) -> [u8; 7] {
    match c.to_ascii_uppercase() {
        '0' => [0x0E, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0E],
        '1' => [0x04, 0x0C, 0x04, 0x04, 0x04, 0x04, 0x0E],
        '2' => [0x0E, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1F],
        '3' => [0x1F, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0E],
        '4' => [0x02, 0x06, 0x0A, 0x12, 0x1F, 0x02, 0x02],
        '5' => [0x1F, 0x10, 0x1E, 0x01, 0x01, 0x11, 0x0E],
        '6' => [0x06, 0x08, 0x10, 0x1E, 0x11, 0x11, 0x0E],
        '7' => [0x1F, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08],
        '8' => [0x0E, 0x11, 0x11, 0x0E, 0x11, 0x11, 0x0E],
        '9' => [0x0E, 0x11, 0x11, 0x0F, 0x01, 0x02, 0x0C],
        'A' => [0x0E, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11],
        'B' => [0x1E, 0x11, 0x11, 0x1E, 0x11, 0x11, 0x1E],
        'C' => [0x0E, 0x11, 0x10, 0x10, 0x10, 0x11, 0x0E],
        'D' => [0x1C, 0x12, 0x11, 0x11, 0x11, 0x12, 0x1C],
        'E' => [0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x1F],
        'F' => [0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x10],
        'G' => [0x0E, 0x11, 0x10, 0x17, 0x11, 0x11, 0x0F],
        'H' => [0x11, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11],
        'I' => [0x0E, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0E],
        'J' => [0x07, 0x02, 0x02, 0x02, 0x02, 0x12, 0x0C],
        'K' => [0x11, 0x12, 0x14, 0x18, 0x14, 0x12, 0x11],
        'L' => [0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x1F],
        'M' => [0x11, 0x1B, 0x15, 0x15, 0x11, 0x11, 0x11],
        'N' => [0x11, 0x11, 0x19, 0x15, 0x13, 0x11, 0x11],
        'O' => [0x0E, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E],
        'P' => [0x1E, 0x11, 0x11, 0x1E, 0x10, 0x10, 0x10],
        'Q' => [0x0E, 0x11, 0x11, 0x11, 0x15, 0x12, 0x0D],
        'R' => [0x1E, 0x11, 0x11, 0x1E, 0x14, 0x12, 0x11],
        'S' => [0x0F, 0x10, 0x10, 0x0E, 0x01, 0x01, 0x1E],
        'T' => [0x1F, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04],
        'U' => [0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E],
        'V' => [0x11, 0x11, 0x11, 0x11, 0x11, 0x0A, 0x04],
        'W' => [0x11, 0x11, 0x11, 0x15, 0x15, 0x15, 0x0A],
        'X' => [0x11, 0x11, 0x0A, 0x04, 0x0A, 0x11, 0x11],
        'Y' => [0x11, 0x11, 0x11, 0x0A, 0x04, 0x04, 0x04],
        'Z' => [0x1F, 0x01, 0x02, 0x04, 0x08, 0x10, 0x1F],
        '.' => [0, 0, 0, 0, 0, 0x0C, 0x0C],
        ':' => [0, 0x0C, 0x0C, 0, 0x0C, 0x0C, 0],
        '=' => [0, 0, 0x1F, 0, 0x1F, 0, 0],
        '-' => [0, 0, 0, 0x1F, 0, 0, 0],
        '_' => [0, 0, 0, 0, 0, 0, 0x1F],
        '%' => [0x18, 0x19, 0x02, 0x04, 0x08, 0x13, 0x03],
        '(' => [0x02, 0x04, 0x08, 0x08, 0x08, 0x04, 0x02],
        ')' => [0x08, 0x04, 0x02, 0x02, 0x02, 0x04, 0x08],
        '/' => [0, 0x01, 0x02, 0x04, 0x08, 0x10, 0],
        ',' => [0, 0, 0, 0, 0x0C, 0x04, 0x08],
        '@' => [0x0E, 0x11, 0x01, 0x0D, 0x15, 0x15, 0x0E],
        ' ' => [0; 7],
        _ => [0x1F, 0x11, 0x11, 0x11, 0x11, 0x11, 0x1F],
    }
}

fn put(img: &mut RgbImage, x: i64, y: i64, c: Rgb<u8>) {
    if x >= 0 && y >= 0 && (x as u32) < img.width() && (y as u32) < img.height() {
        img.put_pixel(x as u32, y as u32, c);
    }
}

/// Text at `(x, y)` (top-left), each font pixel drawn as `scale`×`scale`.
pub(crate) fn text(img: &mut RgbImage, x: i64, y: i64, s: &str, scale: i64, c: Rgb<u8>) {
    for (i, ch) in s.chars().enumerate() {
        let g = glyph(ch);
        let x0 = x + i as i64 * 6 * scale;
        for (row, bits) in g.iter().enumerate() {
            for col in 0..5 {
                if bits & (0x10 >> col) != 0 {
                    for dy in 0..scale {
                        for dx in 0..scale {
                            put(img, x0 + col * scale + dx, y + row as i64 * scale + dy, c);
                        }
                    }
                }
            }
        }
    }
}

/// Bresenham line, 2 px thick.
pub(crate) fn line(img: &mut RgbImage, (x0, y0): (i64, i64), (x1, y1): (i64, i64), c: Rgb<u8>) {
    let (dx, dy) = ((x1 - x0).abs(), -(y1 - y0).abs());
    let (sx, sy) = (if x0 < x1 { 1 } else { -1 }, if y0 < y1 { 1 } else { -1 });
    let (mut x, mut y, mut err) = (x0, y0, dx + dy);
    loop {
        put(img, x, y, c);
        put(img, x + 1, y, c);
        put(img, x, y + 1, c);
        if x == x1 && y == y1 {
            break;
        }
        let e2 = 2 * err;
        if e2 >= dy {
            err += dy;
            x += sx;
        }
        if e2 <= dx {
            err += dx;
            y += sy;
        }
    }
}

fn to_px(recall: f64, precision: f64) -> (i64, i64) {
    let pw = (W as i64 - LEFT - RIGHT) as f64;
    let ph = (H as i64 - TOP - BOTTOM) as f64;
    (
        LEFT + (recall.clamp(0.0, 1.0) * pw).round() as i64,
        TOP + ((1.0 - precision.clamp(0.0, 1.0)) * ph).round() as i64,
    )
}

/// Renders one precision/recall curve with `title` above it.
pub fn render_pr_curve(title: &str, points: &[PrPoint]) -> RgbImage {
    let mut img = RgbImage::from_pixel(W, H, Rgb([255, 255, 255]));
    let grid = Rgb([225, 225, 225]);
    let black = Rgb([0, 0, 0]);
    for i in 0..=10 {
        let v = i as f64 / 10.0;
        let (x, y0) = to_px(v, 0.0);
        let (_, y1) = to_px(v, 1.0);
        line(&mut img, (x, y0), (x, y1), grid);
        let (x0, y) = to_px(0.0, v);
        let (x1, _) = to_px(1.0, v);
        line(&mut img, (x0, y), (x1, y), grid);
    }
    let (ox, oy) = to_px(0.0, 0.0);
    let (ex, ty) = to_px(1.0, 1.0);
    line(&mut img, (ox, oy), (ex, oy), black);
    line(&mut img, (ox, oy), (ox, ty), black);
    for v in [0.0, 0.5, 1.0] {
        let (x, _) = to_px(v, 0.0);
        text(&mut img, x - 8, oy + 8, &format!("{v:.1}"), 1, black);
        let (_, y) = to_px(0.0, v);
        text(&mut img, ox - 24, y - 3, &format!("{v:.1}"), 1, black);
    }
    text(&mut img, (W as i64) / 2 - 18, oy + 24, "RECALL", 1, black);
    text(&mut img, 4, TOP - 14, "PRECISION", 1, black);
    text(&mut img, LEFT, 8, title, 2, black);
    // Envelope: max precision at recall >= r, from the right.
    let mut env: Vec<f64> = points.iter().map(|p| p.precision).collect();
    for i in (0..env.len().saturating_sub(1)).rev() {
        env[i] = env[i].max(env[i + 1]);
    }
    let raw: Vec<(i64, i64)> = points
        .iter()
        .map(|p| to_px(p.recall, p.precision))
        .collect();
    for w in raw.windows(2) {
        line(&mut img, w[0], w[1], Rgb([70, 110, 220]));
    }
    let mut prev: Option<(f64, f64)> = None;
    for (p, &e) in points.iter().zip(&env) {
        if let Some((r0, e0)) = prev {
            line(
                &mut img,
                to_px(r0, e0),
                to_px(p.recall, e0),
                Rgb([220, 40, 40]),
            );
            line(
                &mut img,
                to_px(p.recall, e0),
                to_px(p.recall, e),
                Rgb([220, 40, 40]),
            );
        } else {
            line(
                &mut img,
                to_px(0.0, e),
                to_px(p.recall, e),
                Rgb([220, 40, 40]),
            );
        }
        prev = Some((p.recall, e));
    }
    img
}

fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

fn write_png(path: &Path, img: &RgbImage) -> Result<()> {
    let mut buf = std::io::Cursor::new(Vec::new());
    img.write_to(&mut buf, image::ImageFormat::Png)
        .with_context(|| format!("encoding {}", path.display()))?;
    crate::util::write_atomic(path, buf.get_ref())
}

/// Writes `pr_overall.png` and `pr_class_<id>_<name>.png` for every class into `dir`; returns the paths.
pub fn write_pr_plots(dir: &Path, outcome: &EvalOutcome) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let d = &outcome.report.darknet;
    let mut written = Vec::new();
    let p = dir.join("pr_overall.png");
    let title = format!("ALL CLASSES MAP@{:.2}={:.2}%", d.iou_thresh, d.map * 100.0);
    write_png(&p, &render_pr_curve(&title, &outcome.overall_curve))?;
    written.push(p);
    for (k, curve) in outcome.class_curves.iter().enumerate() {
        let name = outcome.classes.get(k).map(String::as_str).unwrap_or("");
        let ap = d.per_class.get(k).map(|c| c.ap).unwrap_or(0.0);
        let p = dir.join(format!("pr_class_{k:03}_{}.png", sanitize(name)));
        write_png(
            &p,
            &render_pr_curve(&format!("{k} {name} AP={:.2}%", ap * 100.0), curve),
        )?;
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
        let img = render_pr_curve("T", &pts);
        // The envelope at precision 1 over recall 0..0.5 is red.
        let (x, y) = to_px(0.25, 1.0);
        assert_eq!(img.get_pixel(x as u32, y as u32), &Rgb([220, 40, 40]));
    }
}
