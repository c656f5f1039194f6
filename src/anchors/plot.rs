//! Scatter plot of box sizes and anchors, the counterpart of Darknet's `show_acnhors` (`src/image_opencv.cpp`,
//! an OpenCV window): here a PNG drawn with the `image` crate. x is the box width, y the box height (origin
//! bottom-left), both from 0 to the network size; each box is a dot coloured by its closest anchor; each
//! anchor is a black cross plus the outline of the anchor rectangle from the origin in its colour. No text
//! (no font dependency); the axes end at the network width and height.

use std::path::Path;

use anyhow::Result;
use image::{Rgb, RgbImage};

const SIZE: u32 = 800;
const MARGIN: u32 = 30;

fn palette(i: usize) -> Rgb<u8> {
    const P: [[u8; 3]; 10] = [
        [31, 119, 180],
        [255, 127, 14],
        [44, 160, 44],
        [214, 39, 40],
        [148, 103, 189],
        [140, 86, 75],
        [227, 119, 194],
        [127, 127, 127],
        [188, 189, 34],
        [23, 190, 207],
    ];
    Rgb(P[i % P.len()])
}

/// Draws the plot into an image of [`SIZE`]² pixels.
pub fn render(boxes: &[[f32; 2]], anchors: &[[f32; 2]], width: u32, height: u32) -> RgbImage {
    let mut img = RgbImage::from_pixel(SIZE, SIZE, Rgb([255, 255, 255]));
    let span = (SIZE - 2 * MARGIN) as f32;
    let to_px = |w: f32, h: f32| -> (i64, i64) {
        let x = MARGIN as f32 + (w / width as f32).clamp(0.0, 1.0) * span;
        let y = (SIZE - MARGIN) as f32 - (h / height as f32).clamp(0.0, 1.0) * span;
        (x.round() as i64, y.round() as i64)
    };
    let put = |img: &mut RgbImage, x: i64, y: i64, c: Rgb<u8>| {
        if x >= 0 && y >= 0 && (x as u32) < SIZE && (y as u32) < SIZE {
            img.put_pixel(x as u32, y as u32, c);
        }
    };
    let axis = Rgb([0, 0, 0]);
    let (x0, y0) = to_px(0.0, 0.0);
    let (x1, y1) = to_px(width as f32, height as f32);
    for x in x0..=x1 {
        put(&mut img, x, y0, axis);
    }
    for y in y1..=y0 {
        put(&mut img, x0, y, axis);
    }
    for b in boxes {
        let (x, y) = to_px(b[0], b[1]);
        let c = palette(super::closest_center(*b, anchors));
        for (dx, dy) in [(0, 0), (1, 0), (0, 1), (1, 1)] {
            put(&mut img, x + dx, y - dy, c);
        }
    }
    for (i, a) in anchors.iter().enumerate() {
        let (ax, ay) = to_px(a[0], a[1]);
        let c = palette(i);
        for x in x0..=ax {
            put(&mut img, x, ay, c);
        }
        for y in ay..=y0 {
            put(&mut img, ax, y, c);
        }
        for d in -6..=6 {
            for t in -1..=1 {
                put(&mut img, ax + d, ay + t, axis);
                put(&mut img, ax + t, ay + d, axis);
            }
        }
    }
    img
}

/// Renders and writes the PNG atomically.
pub fn write_plot(
    path: &Path,
    boxes: &[[f32; 2]],
    anchors: &[[f32; 2]],
    width: u32,
    height: u32,
) -> Result<()> {
    let img = render(boxes, anchors, width, height);
    let mut bytes = Vec::new();
    img.write_to(
        &mut std::io::Cursor::new(&mut bytes),
        image::ImageFormat::Png,
    )?;
    crate::util::write_atomic(path, &bytes)
}
