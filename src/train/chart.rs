//! The training chart (Darknet's `chart.png`).

use std::path::Path;

use anyhow::{Context, Result};

use crate::train::checkpoint::TrainerState;

/// The loss chart (Darknet's `chart.png` from `draw_train_chart`/`draw_train_loss`): average loss (blue,
/// left axis up to min(max, 20)·1.2) against the iteration, mAP@0.5 (red, right axis 0..1) where evaluated.
pub fn render_chart(state: &TrainerState, max_batches: usize) -> image::RgbImage {
    use crate::eval::plot::{line, text};
    use image::{Rgb, RgbImage};
    let (w, h) = (800i64, 500i64);
    let (l, r, t, b) = (70i64, 60i64, 40i64, 50i64);
    let mut img = RgbImage::from_pixel(w as u32, h as u32, Rgb([255, 255, 255]));
    // Darknet's chart tops out at `max_chart_loss` (default 20) so the start of training does not flatten the rest.
    let max_loss = state
        .history
        .iter()
        .map(|&(_, _, a)| a)
        .fold(0f32, f32::max)
        .clamp(1e-6, 20.0)
        * 1.2;
    let px = |it: usize| l + ((w - l - r) as f64 * it as f64 / max_batches.max(1) as f64) as i64;
    let py = |v: f64, top: f64| h - b - ((h - t - b) as f64 * (v / top).clamp(0.0, 1.0)) as i64;
    let grey = Rgb([160, 160, 160]);
    line(&mut img, (l, t), (l, h - b), grey);
    line(&mut img, (l, h - b), (w - r, h - b), grey);
    line(&mut img, (w - r, t), (w - r, h - b), grey);
    for k in 0..=4 {
        let v = max_loss as f64 * k as f64 / 4.0;
        text(
            &mut img,
            4,
            py(v, max_loss as f64) - 3,
            &format!("{v:.2}"),
            1,
            Rgb([0, 0, 0]),
        );
        text(
            &mut img,
            w - r + 6,
            py(k as f64 / 4.0, 1.0) - 3,
            &format!("{:.2}", k as f64 / 4.0),
            1,
            Rgb([200, 0, 0]),
        );
        let it = max_batches * k / 4;
        text(
            &mut img,
            px(it) - 10,
            h - b + 8,
            &it.to_string(),
            1,
            Rgb([0, 0, 0]),
        );
    }
    text(
        &mut img,
        l,
        10,
        "LOSS (BLUE: AVG)  MAP@0.5 (RED)",
        2,
        Rgb([0, 0, 0]),
    );
    text(&mut img, w / 2 - 40, h - 20, "ITERATION", 1, Rgb([0, 0, 0]));
    let mut prev: Option<(i64, i64)> = None;
    for &(it, _, a) in &state.history {
        let p = (px(it), py(a as f64, max_loss as f64));
        if let Some(q) = prev {
            line(&mut img, q, p, Rgb([0, 0, 255]));
        }
        prev = Some(p);
    }
    let mut prev: Option<(i64, i64)> = None;
    for &(it, m) in &state.maps {
        let p = (px(it), py(m, 1.0));
        if let Some(q) = prev {
            line(&mut img, q, p, Rgb([220, 0, 0]));
        }
        line(&mut img, (p.0 - 3, p.1), (p.0 + 3, p.1), Rgb([220, 0, 0]));
        prev = Some(p);
    }
    img
}

pub fn write_chart(path: &Path, state: &TrainerState, max_batches: usize) -> Result<()> {
    let img = render_chart(state, max_batches);
    let mut bytes = Vec::new();
    img.write_to(
        &mut std::io::Cursor::new(&mut bytes),
        image::ImageFormat::Png,
    )
    .context("encoding chart.png")?;
    crate::util::write_atomic(path, &bytes)
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
            maps: vec![(3, 0.5)],
            seed: 0,
            darknet_rng: false,
            cfg_hash: 0,
        };
        let img = render_chart(&st, 10);
        assert_eq!(img.dimensions(), (800, 500));
        assert!(img.pixels().any(|p| p.0 == [0, 0, 255]));
        assert!(img.pixels().any(|p| p.0 == [220, 0, 0]));
    }
}
