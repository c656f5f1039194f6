//! Charts as PNG files with `plotters` (PR curves, the training loss/mAP chart, the anchor scatter): its bitmap
//! backend draws into memory, text uses the DejaVu Sans subset bundled in `assets/` (no fontconfig, freetype or
//! system fonts), and the PNG is encoded with the `image` crate and written atomically. Darknet's own
//! detection drawing (`draw_detections`) stays pixel-exact in [`crate::image::draw`]; these charts have no
//! Darknet counterpart to match.

use std::path::Path;
use std::sync::Once;

use anyhow::{anyhow, Context, Result};
use plotters::coord::Shift;
use plotters::prelude::*;

/// The drawing area a chart is drawn on.
pub type Area<'a> = DrawingArea<BitMapBackend<'a>, Shift>;

/// The font family every chart uses (the bundled font).
pub const FONT: &str = "sans-serif";

/// ASCII (plus a few signs) of DejaVu Sans 2.37, subset with fonttools; licence in assets/.
static FONT_TTF: &[u8] = include_bytes!("../assets/DejaVuSans-ascii.ttf");

fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        plotters::style::register_font(FONT, FontStyle::Normal, FONT_TTF)
            .unwrap_or_else(|_| panic!("the bundled font assets/DejaVuSans-ascii.ttf is invalid"));
    });
}

/// A plotters error (which borrows the backend) as an owned error.
pub fn drawing_error<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow!("drawing a chart: {e:?}")
}

/// Draws a `width`×`height` chart on white with `draw`, returning the image and what `draw` returned.
pub fn render<T>(
    width: u32,
    height: u32,
    draw: impl FnOnce(&Area) -> Result<T>,
) -> Result<(image::RgbImage, T)> {
    register_font();
    let mut buf = vec![255u8; width as usize * height as usize * 3];
    let out = {
        let root = BitMapBackend::with_buffer(&mut buf, (width, height)).into_drawing_area();
        let out = draw(&root)?;
        root.present().map_err(drawing_error)?;
        out
    };
    let img =
        image::RgbImage::from_raw(width, height, buf).context("internal: chart buffer size")?;
    Ok((img, out))
}

/// Encodes `img` as PNG and writes it atomically.
pub fn write_png(path: &Path, img: &image::RgbImage) -> Result<()> {
    let mut bytes = Vec::new();
    img.write_to(
        &mut std::io::Cursor::new(&mut bytes),
        image::ImageFormat::Png,
    )
    .with_context(|| format!("encoding {}", path.display()))?;
    crate::util::write_atomic(path, &bytes)
}

/// The tab10 palette (matplotlib's default cycle).
pub fn palette(i: usize) -> RGBColor {
    const P: [(u8, u8, u8); 10] = [
        (31, 119, 180),
        (255, 127, 14),
        (44, 160, 44),
        (214, 39, 40),
        (148, 103, 189),
        (140, 86, 75),
        (227, 119, 194),
        (127, 127, 127),
        (188, 189, 34),
        (23, 190, 207),
    ];
    let (r, g, b) = P[i % P.len()];
    RGBColor(r, g, b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_drawn_with_the_bundled_font() {
        let (img, ()) = render(120, 40, |root| {
            root.draw(&Text::new("mAP 0.5", (5, 5), (FONT, 20)))
                .map_err(drawing_error)
        })
        .unwrap();
        let dark = img
            .pixels()
            .filter(|p| p.0.iter().all(|&v| v < 128))
            .count();
        assert!(dark > 30, "{dark} dark pixels: no text drawn");
    }
}
