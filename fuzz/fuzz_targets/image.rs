#![no_main]
// Image headers and data: stb_image (detect's decoder) and the training decoder (libjpeg-turbo / image).
use candle_darknet::data::decode::decode_jpeg_rgb;
use candle_darknet::image::load::decode_image;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = decode_image(data, 3, "fuzz");
    let _ = decode_jpeg_rgb(data);
});
