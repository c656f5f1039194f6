//! `cv::flip(src, dst, 1)`: horizontal mirror, applied by `image_data_augmentation` (image_opencv.cpp
//! 1236) after the resize.

use crate::data::decode::RgbImage;

/// Mirrors the image left-right: dst(x, y) = src(w-1-x, y).
pub fn flip_horizontal(img: &RgbImage) -> RgbImage {
    let mut out = img.clone();
    for y in 0..img.h {
        for x in 0..img.w {
            let s = (y * img.w + img.w - 1 - x) * 3;
            let d = (y * img.w + x) * 3;
            out.data[d..d + 3].copy_from_slice(&img.data[s..s + 3]);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mirrors_rows() {
        let img = RgbImage {
            w: 3,
            h: 1,
            data: (0..9).collect(),
        };
        assert_eq!(flip_horizontal(&img).data, vec![6, 7, 8, 3, 4, 5, 0, 1, 2]);
    }
}
