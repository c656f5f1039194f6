//! Annotated output image: mirrors the image part of `draw_detections_v3`, `get_color`, `draw_box`,
//! `draw_box_width`, `draw_weighted_label` and `save_image` (`src/image.c`).
//!
//! Boxes, colours, line width and drawing order are Darknet's. Deliberate difference: label glyphs come
//! from an embedded 8x8 bitmap font (public-domain `font8x8`) scaled by an integer factor, instead of
//! Darknet's `data/labels/*.png` alphabet; the label layout (coloured box, black text, 0.7 blend, placed
//! above the box's top-left corner when it fits) follows `get_label_v3` / `draw_weighted_label`.

// Channel index loops mirror the C (`for k < 3: data[k*w*h + ...] = rgb[k]`).
#![allow(clippy::needless_range_loop)]

use std::path::Path;

use anyhow::{bail, Context, Result};
use image::ImageEncoder;

use super::Image;

/// Darknet's `colors[6][3]` palette (magenta, blue, cyan, green, yellow, red).
const COLORS: [[f32; 3]; 6] = [
    [1.0, 0.0, 1.0],
    [0.0, 0.0, 1.0],
    [0.0, 1.0, 1.0],
    [0.0, 1.0, 0.0],
    [1.0, 1.0, 0.0],
    [1.0, 0.0, 0.0],
];

/// `get_color(c, x, max)`: channel `c` of a colour interpolated along the palette at `x/max`.
pub fn get_color(c: usize, x: usize, max: usize) -> f32 {
    let mut ratio = (x as f32 / max.max(1) as f32) * 5.0;
    let i = ratio.floor() as usize;
    let j = ratio.ceil() as usize;
    ratio -= i as f32;
    let (i, j) = (i.min(5), j.min(5));
    (1.0 - ratio) * COLORS[i][c] + ratio * COLORS[j][c]
}

/// The RGB colour `draw_detections_v3` uses for `class_id`: `offset = class_id*123457 % classes`, red =
/// `get_color(2, ..)`, green = `get_color(1, ..)`, blue = `get_color(0, ..)`.
pub fn class_color(class_id: usize, classes: usize) -> [f32; 3] {
    let classes = classes.max(1);
    // C computes `int * int`; wrapping in i32 keeps its result for huge class ids.
    let offset = ((class_id as i32).wrapping_mul(123457) % classes as i32).unsigned_abs() as usize;
    [
        get_color(2, offset, classes),
        get_color(1, offset, classes),
        get_color(0, offset, classes),
    ]
}

/// `draw_box`: a one-pixel rectangle outline, corners clamped into the image.
pub fn draw_box(im: &mut Image, x1: i64, y1: i64, x2: i64, y2: i64, rgb: [f32; 3]) {
    if im.w == 0 || im.h == 0 {
        return;
    }
    let clamp_x = |v: i64| v.clamp(0, im.w as i64 - 1);
    let clamp_y = |v: i64| v.clamp(0, im.h as i64 - 1);
    let (x1, x2, y1, y2) = (clamp_x(x1), clamp_x(x2), clamp_y(y1), clamp_y(y2));
    let channels = im.c.min(3);
    for k in 0..channels {
        for x in x1..=x2 {
            im.set(x, y1, k, rgb[k]);
            im.set(x, y2, k, rgb[k]);
        }
        for y in y1..=y2 {
            im.set(x1, y, k, rgb[k]);
            im.set(x2, y, k, rgb[k]);
        }
    }
}

/// `draw_box_width`: `width` nested outlines, each one pixel further inside.
pub fn draw_box_width(
    im: &mut Image,
    x1: i64,
    y1: i64,
    x2: i64,
    y2: i64,
    width: i64,
    rgb: [f32; 3],
) {
    for i in 0..width {
        draw_box(im, x1 + i, y1 + i, x2 - i, y2 - i, rgb);
    }
}

/// A label image as `get_label_v3` builds it: white background, black glyphs, a border of `h*0.05` pixels.
/// `size` is Darknet's alphabet size index (`(int)(im.h*.02)/10`, capped at 7); glyphs are 8x8 scaled by
/// `size + 1`.
fn render_label(text: &str, size: usize) -> Image {
    let scale = size.min(7) + 1;
    let glyph = 8 * scale;
    let text_w = glyph * text.chars().count();
    let border = (glyph as f32 * 0.05) as usize;
    let (w, h) = (text_w + 2 * border, glyph + 2 * border);
    let mut label = Image::filled(w, h, 3, 1.0);
    for (n, ch) in text.chars().enumerate() {
        let code = ch as usize;
        let rows = if code < 128 {
            font8x8::legacy::BASIC_LEGACY[code]
        } else {
            font8x8::legacy::BASIC_LEGACY[b'?' as usize]
        };
        for (gy, bits) in rows.iter().enumerate() {
            for gx in 0..8 {
                if bits & (1 << gx) == 0 {
                    continue;
                }
                for sy in 0..scale {
                    for sx in 0..scale {
                        let x = border + n * glyph + gx * scale + sx;
                        let y = border + gy * scale + sy;
                        for k in 0..3 {
                            label.set(x as i64, y as i64, k, 0.0);
                        }
                    }
                }
            }
        }
    }
    label
}

/// `draw_weighted_label(a, r, c, label, rgb, alpha)`: blends `label*rgb` over the image at row `r`, column
/// `c`, moved up by the label height when that stays inside the image.
fn draw_weighted_label(im: &mut Image, r: i64, c: i64, label: &Image, rgb: [f32; 3], alpha: f32) {
    let h = label.h as i64;
    let r = if r - h >= 0 { r - h } else { r };
    for j in 0..label.h {
        let y = j as i64 + r;
        if y >= im.h as i64 {
            break;
        }
        for i in 0..label.w {
            let x = i as i64 + c;
            if x >= im.w as i64 {
                break;
            }
            if x < 0 || y < 0 {
                continue;
            }
            for k in 0..label.c.min(im.c) {
                let v1 = label.get(i, j, k);
                let v2 = im.get(x as usize, y as usize, k);
                im.set(x, y, k, v1 * rgb[k] * alpha + v2 * (1.0 - alpha));
            }
        }
    }
}

/// One detection as `draw_detections_v3` draws it: a box of width `max(1, (int)(im.h*.002))` around the
/// relative box `(x, y, w, h)` (centre and size, clamped into the image) in `rgb` (grey outlines for one-channel
/// images), and `text` on a label of colour `rgb` blended at 0.7 above its top-left corner. The order and the
/// text come from `detect::draw_detections`.
pub fn draw_labelled_box(im: &mut Image, bbox: [f32; 4], rgb: [f32; 3], text: &str) {
    let width = ((im.h as f64 * 0.002) as i64).max(1);
    let label_size = ((im.h as f64 * 0.02) as usize) / 10;
    let [x, y, w, h] = bbox.map(f64::from);
    // `(b.x - b.w / 2.)*im.w` in double, truncated to int.
    let left = ((x - w / 2.0) * im.w as f64) as i64;
    let right = ((x + w / 2.0) * im.w as f64) as i64;
    let top = ((y - h / 2.0) * im.h as f64) as i64;
    let bot = ((y + h / 2.0) * im.h as f64) as i64;
    let left = left.max(0);
    let right = right.min(im.w as i64 - 1);
    let top = top.max(0);
    let bot = bot.min(im.h as i64 - 1);
    if im.c == 1 {
        draw_box_width_bw(im, left, top, right, bot, width, 0.8);
    } else {
        draw_box_width(im, left, top, right, bot, width, rgb);
    }
    let label = render_label(text, label_size);
    draw_weighted_label(im, top + width, left, &label, rgb, 0.7);
}

/// `draw_box_width_bw` for grey images: outlines of `brightness` (or `1-brightness` when `width` is even).
fn draw_box_width_bw(
    im: &mut Image,
    x1: i64,
    y1: i64,
    x2: i64,
    y2: i64,
    width: i64,
    brightness: f32,
) {
    let v = if width % 2 == 1 {
        brightness
    } else {
        1.0 - brightness
    };
    for i in 0..width {
        draw_box(im, x1 + i, y1 + i, x2 - i, y2 - i, [v, v, v]);
    }
}

/// `save_image`: writes 8-bit pixels (`(unsigned char)(255*v)`) atomically; the format follows the file
/// extension: `.jpg`/`.jpeg` (quality 80, Darknet's `save_image` default), `.png` or `.bmp`.
pub fn save_image(im: &Image, path: &Path) -> Result<()> {
    let color = match im.c {
        1 => image::ExtendedColorType::L8,
        3 => image::ExtendedColorType::Rgb8,
        4 => image::ExtendedColorType::Rgba8,
        c => bail!("{}: cannot save an image with {c} channels", path.display()),
    };
    let (w, h) = (u32::try_from(im.w)?, u32::try_from(im.h)?);
    let pixels = im.to_interleaved_u8();
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(|e| e.to_ascii_lowercase())
        .unwrap_or_default();
    crate::util::write_atomic_with(path, |f| {
        match ext.as_str() {
            "jpg" | "jpeg" => {
                if im.c == 4 {
                    bail!("JPEG cannot hold an alpha channel");
                }
                image::codecs::jpeg::JpegEncoder::new_with_quality(f, 80)
                    .write_image(&pixels, w, h, color)?
            }
            "png" => image::codecs::png::PngEncoder::new(f).write_image(&pixels, w, h, color)?,
            "bmp" => image::codecs::bmp::BmpEncoder::new(f).write_image(&pixels, w, h, color)?,
            other => bail!("unsupported image extension {other:?} (use .jpg, .png or .bmp)"),
        }
        Ok(())
    })
    .with_context(|| format!("saving image {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colours_follow_get_color() {
        // 80 classes: class 0 -> offset 0 -> magenta (r=1, g=0, b=1).
        assert_eq!(class_color(0, 80), [1.0, 0.0, 1.0]);
        // class 1 -> offset 123457 % 80 = 17 -> palette position 1.0625; red reads palette channel 2,
        // blue channel 0 (the palette is stored BGR).
        let c = class_color(1, 80);
        assert!(
            (c[0] - 1.0).abs() < 1e-6 && (c[1] - 0.0625).abs() < 1e-6 && c[2].abs() < 1e-6,
            "{c:?}"
        );
    }
}
