//! Aspect-preserving resize onto a grey canvas: mirrors `letterbox_image`, `embed_image` and `fill_image`
//! in Darknet's `src/image.c` (used by `detector test` with `-letter_box` or `letter_box=1` in `[net]`).

use super::resize::resize_image;
use super::Image;

/// The resized size inside a `w x h` letterbox, as `letterbox_image` computes it: the side whose scale
/// factor is smaller (compared in float: `(float)w/im_w < (float)h/im_h`) is set to the target, the other is
/// scaled with truncating integer arithmetic (`im_h*w/im_w` or `im_w*h/im_h`).
pub fn letterbox_size(im_w: usize, im_h: usize, w: usize, h: usize) -> (usize, usize) {
    if im_w == 0 || im_h == 0 {
        return (w, h);
    }
    if (w as f32 / im_w as f32) < (h as f32 / im_h as f32) {
        (w, im_h * w / im_w)
    } else {
        (im_w * h / im_h, h)
    }
}

/// `embed_image(source, dest, dx, dy)`: copies `source` into `dest` with its top-left corner at `(dx, dy)`;
/// pixels falling outside `dest` are dropped (Darknet's `set_pixel` bounds check).
pub fn embed_image(source: &Image, dest: &mut Image, dx: i64, dy: i64) {
    for k in 0..source.c.min(dest.c) {
        for y in 0..source.h {
            for x in 0..source.w {
                dest.set(dx + x as i64, dy + y as i64, k, source.get(x, y, k));
            }
        }
    }
}

/// `letterbox_image(im, w, h)`: resize with [`resize_image`] to [`letterbox_size`], then paste centred at
/// `((w-new_w)/2, (h-new_h)/2)` (integer division) on a `w x h` canvas filled with 0.5.
pub fn letterbox_image(im: &Image, w: usize, h: usize) -> Image {
    let (new_w, new_h) = letterbox_size(im.w, im.h, w, h);
    let resized = resize_image(im, new_w, new_h);
    let mut boxed = Image::filled(w, h, im.c, 0.5);
    let dx = (w as i64 - new_w as i64) / 2;
    let dy = (h as i64 - new_h as i64) / 2;
    embed_image(&resized, &mut boxed, dx, dy);
    boxed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_follows_the_c_integer_formulas() {
        // bus.jpg 810x1080 into 416x416: height limits, new_w = 810*416/1080 = 312 (311.99.. truncated).
        assert_eq!(letterbox_size(810, 1080, 416, 416), (312, 416));
        // dog.jpg 768x576 into 416x416: width limits, new_h = 576*416/768 = 312.
        assert_eq!(letterbox_size(768, 576, 416, 416), (416, 312));
        // zidane.jpg 1280x720 into 608x608: 720*608/1280 = 342.
        assert_eq!(letterbox_size(1280, 720, 608, 608), (608, 342));
        // Equal ratios take the `else` branch: new_w = im_w*h/im_h.
        assert_eq!(letterbox_size(200, 100, 400, 200), (400, 200));
        // 333x500 into 416x320: 416/333 = 1.249 > 320/500 = 0.64 -> new_w = 333*320/500 = 213.
        assert_eq!(letterbox_size(333, 500, 416, 320), (213, 320));
    }

    #[test]
    fn letterbox_pastes_the_stretched_image_centred_on_grey() {
        // A 6x3 image into 8x8: width limits, new = (8, 3*8/6 = 4), offset ((8-8)/2, (8-4)/2) = (0, 2).
        let data: Vec<f32> = (0..6 * 3 * 3).map(|i| i as f32 / 64.0).collect();
        let im = Image::from_data(6, 3, 3, data).unwrap();
        let out = letterbox_image(&im, 8, 8);
        let inner = resize_image(&im, 8, 4);
        assert_eq!((out.w, out.h, out.c), (8, 8, 3));
        for k in 0..3 {
            for y in 0..8 {
                for x in 0..8 {
                    let expect = if (2..6).contains(&y) {
                        inner.get(x, y - 2, k)
                    } else {
                        0.5
                    };
                    assert_eq!(out.get(x, y, k), expect, "x={x} y={y} k={k}");
                }
            }
        }
    }

    #[test]
    fn odd_margins_round_down_on_the_left() {
        // 10x4 into 7x7: width limits, new = (7, 4*7/10 = 2), dy = (7-2)/2 = 2, rows 2..4 are image.
        let im = Image::filled(10, 4, 1, 0.25);
        let out = letterbox_image(&im, 7, 7);
        let rows: Vec<f32> = (0..7).map(|y| out.get(3, y, 0)).collect();
        assert_eq!(rows, vec![0.5, 0.5, 0.25, 0.25, 0.5, 0.5, 0.5]);
    }
}
