//! The pixel operations of Darknet's `image_data_augmentation` (src/image_opencv.cpp 1205), each a
//! reproduction of the OpenCV 8-bit routine it calls: crop with mean fill, `cv::resize` INTER_LINEAR,
//! `cv::flip`, RGB<->HSV jitter; plus the mosaic assembly of `load_data_detection`.

pub mod crop;
pub mod flip;
pub mod hsv;
pub mod mosaic;
pub mod resize;

use super::decode::RgbImage;

/// Darknet's `image_data_augmentation` (image_opencv.cpp 1205) without blur/noise: crop the rectangle
/// (`pleft`, `ptop`, `swidth`, `sheight`) with mean padding, resize to `w`x`h` (8-bit INTER_LINEAR),
/// flip horizontally, then HSV jitter if any of `dhue != 0`, `dsat != 1`, `dexp != 1`.
#[allow(clippy::too_many_arguments)]
pub fn image_data_augmentation(
    img: &RgbImage,
    w: usize,
    h: usize,
    pleft: i32,
    ptop: i32,
    swidth: i32,
    sheight: i32,
    flip: bool,
    dhue: f32,
    dsat: f32,
    dexp: f32,
) -> RgbImage {
    let sized = if pleft == 0 && ptop == 0 && swidth as usize == img.w && sheight as usize == img.h
    {
        resize::resize_linear_u8(img, w, h)
    } else {
        let cropped = crop::crop_mean_fill(img, pleft, ptop, swidth, sheight);
        resize::resize_linear_u8(&cropped, w, h)
    };
    let mut sized = if flip {
        flip::flip_horizontal(&sized)
    } else {
        sized
    };
    if dsat != 1.0 || dexp != 1.0 || dhue != 0.0 {
        hsv::hsv_jitter(&mut sized, dhue, dsat, dexp);
    }
    sized
}

/// Darknet's `mat_to_image` (image_opencv.cpp 349): planar CHW float32, `u8 * (1/255.f)` (the `-Ofast`
/// build multiplies by the reciprocal; `u8 / 255.f` differs by 1 ulp in places).
pub fn to_chw_f32(img: &RgbImage, out: &mut [f32]) {
    let plane = img.w * img.h;
    let k = 1.0f32 / 255.0;
    for (p, px) in img.data.chunks_exact(3).enumerate() {
        out[p] = px[0] as f32 * k;
        out[plane + p] = px[1] as f32 * k;
        out[2 * plane + p] = px[2] as f32 * k;
    }
}
