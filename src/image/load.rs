//! Image loading: mirrors `load_image` / `load_image_stb` in Darknet's `src/image.c` (CPU build without
//! OpenCV, which is how `darknet detector test` decodes images there).
//!
//! Decoding uses `stb_image_rust`, a pure-Rust port of stb_image 2.27. Darknet vendors stb_image 2.30, whose
//! JPEG/PNG decoding paths differ from 2.27 only in error handling; on Darknet's sample images (dog, eagle,
//! giraffe, horses, person, scream, bus, zidane) the decoded 8-bit RGB is bit-identical to Darknet's
//! stb_image, whereas the `image` crate's JPEG decoder (zune-jpeg) differs by up to 4 levels on 1-11% of the
//! samples (see docs/preprocessing.md).
//!
//! Deliberate difference: Darknet returns a blank 10x10 image (and appends to `bad.list`) when decoding
//! fails; we return an error naming the file and stb_image's reason.

use std::path::Path;
use std::sync::Mutex;

use super::resize::resize_image;
use super::Image;

/// An image that could not be loaded: which file (or in-memory source) and why.
#[derive(Debug, thiserror::Error)]
#[error("{origin}: {kind}")]
pub struct LoadError {
    pub origin: String,
    pub kind: LoadErrorKind,
}

/// Why an image could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadErrorKind {
    #[error("cannot read it: {0}")]
    Io(std::io::Error),
    #[error("cannot load an image with {0} channels (stb_image supports 0..=4)")]
    Channels(usize),
    #[error("file too large for stb_image")]
    TooLarge,
    /// stb_image's failure reason.
    #[error("cannot decode image (stb_image: {0})")]
    Decode(String),
    #[error("cannot decode image (decoder failed on corrupt data)")]
    Corrupt,
}

type Result<T> = std::result::Result<T, LoadError>;

fn fail<T>(origin: &str, kind: LoadErrorKind) -> Result<T> {
    Err(LoadError {
        origin: origin.to_string(),
        kind,
    })
}

/// stb_image_rust keeps its failure reason (and a few option flags) in `static mut` globals, so decodes
/// are serialised to keep the reason read after a failure the one written by that decode.
static STB_LOCK: Mutex<()> = Mutex::new(());

/// One 8-bit sample to float as `load_image_stb` does: `(float)data[i]/255.`, a division in double rounded
/// to float.
#[inline]
pub fn unit_from_u8(v: u8) -> f32 {
    (f64::from(v) / 255.0) as f32
}

/// Decodes an encoded image (JPEG, PNG, BMP, TGA, GIF first frame, PSD) held in memory, like
/// `load_image_stb(filename, channels)`: `channels` = 0 keeps the file's channel count, otherwise stb_image
/// converts to that many channels (1 = grey, 3 = RGB, 4 = RGBA). `origin` names the source in errors.
pub fn decode_image(bytes: &[u8], channels: usize, origin: &str) -> Result<Image> {
    if channels > 4 {
        return fail(origin, LoadErrorKind::Channels(channels));
    }
    let Ok(len) = i32::try_from(bytes.len()) else {
        return fail(origin, LoadErrorKind::TooLarge);
    };
    let (w, h, c, pixels) = {
        let _guard = STB_LOCK
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        // The port is machine-translated C; a panic inside it (e.g. an arithmetic overflow check on a
        // corrupt file) must become an error, never abort the caller.
        let decoded = std::panic::catch_unwind(|| stb_decode(bytes, len, channels as i32));
        match decoded {
            Ok(Ok(v)) => v,
            Ok(Err(kind)) => return fail(origin, kind),
            Err(_) => return fail(origin, LoadErrorKind::Corrupt),
        }
    };
    let c = if channels > 0 { channels } else { c };
    Ok(interleaved_to_planar(&pixels, w, h, c))
}

/// `(w, h, channels in file, interleaved pixels)`.
type StbPixels = (usize, usize, usize, Vec<u8>);

/// Runs stb_image on `bytes`, returning `(w, h, channels in file, interleaved pixels)` with
/// `req_comp` channels per pixel (file's count when 0), or stb_image's failure reason.
fn stb_decode(
    bytes: &[u8],
    len: i32,
    req_comp: i32,
) -> std::result::Result<StbPixels, LoadErrorKind> {
    let (mut w, mut h, mut comp) = (0i32, 0i32, 0i32);
    // SAFETY: the pointer/length pair describes `bytes`, which outlives the call; the out-pointers are
    // valid locals; the returned buffer is owned by us and released with `stbi_image_free`.
    unsafe {
        let ptr = stb_image_rust::stbi_load_from_memory(
            bytes.as_ptr(),
            len,
            &mut w,
            &mut h,
            &mut comp,
            req_comp,
        );
        if ptr.is_null() {
            let reason = stb_image_rust::stbi__g_failure_reason;
            return Err(LoadErrorKind::Decode(if reason.is_empty() {
                "unknown error".to_string()
            } else {
                reason.to_string()
            }));
        }
        let per_pixel = if req_comp > 0 { req_comp } else { comp };
        if w <= 0 || h <= 0 || per_pixel <= 0 {
            stb_image_rust::stbi_image_free(ptr);
            return Err(LoadErrorKind::Decode(format!(
                "invalid decoded size {w}x{h}x{per_pixel}"
            )));
        }
        let n = w as usize * h as usize * per_pixel as usize;
        let pixels = std::slice::from_raw_parts(ptr, n).to_vec();
        stb_image_rust::stbi_image_free(ptr);
        Ok((w as usize, h as usize, comp as usize, pixels))
    }
}

/// `load_image_stb`'s copy loop: interleaved `src[k + c*x + c*w*y]` to planar `dst[x + w*y + w*h*k]`,
/// each sample divided by 255.
fn interleaved_to_planar(pixels: &[u8], w: usize, h: usize, c: usize) -> Image {
    let mut im = Image::new(w, h, c);
    let plane = w * h;
    for k in 0..c {
        let dst = &mut im.data[k * plane..(k + 1) * plane];
        for (i, d) in dst.iter_mut().enumerate() {
            *d = unit_from_u8(pixels[k + c * i]);
        }
    }
    im
}

/// `load_image(filename, 0, 0, channels)`: reads and decodes a file at its own size.
pub fn load_image(path: &Path, channels: usize) -> Result<Image> {
    let origin = path.display().to_string();
    match std::fs::read(path) {
        Ok(bytes) => decode_image(&bytes, channels, &origin),
        Err(e) => fail(&origin, LoadErrorKind::Io(e)),
    }
}

/// `load_image(filename, w, h, channels)`: decodes, then stretches with [`resize_image`] when `w` and `h`
/// are both non-zero and differ from the decoded size.
pub fn load_image_resized(path: &Path, w: usize, h: usize, channels: usize) -> Result<Image> {
    let im = load_image(path, channels)?;
    if w != 0 && h != 0 && (w != im.w || h != im.h) {
        return Ok(resize_image(&im, w, h));
    }
    Ok(im)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_from_u8_matches_float_reciprocal_product() {
        // -Ofast may turn `/255.` into a multiply by the double reciprocal; both give the same floats.
        for v in 0..=255u8 {
            let by_recip = (f64::from(v) * (1.0 / 255.0)) as f32;
            assert_eq!(unit_from_u8(v), by_recip, "value {v}");
        }
        assert_eq!(unit_from_u8(0), 0.0);
        assert_eq!(unit_from_u8(255), 1.0);
    }

    #[test]
    fn corrupt_and_truncated_inputs_are_errors() {
        let err = decode_image(b"not an image at all", 3, "garbage.jpg").unwrap_err();
        assert!(err.to_string().contains("garbage.jpg"), "{err}");
        // A JPEG that stops after its SOI/APP0 start.
        let err = decode_image(&[0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10], 3, "cut.jpg").unwrap_err();
        assert!(err.to_string().contains("cut.jpg"), "{err}");
        assert!(matches!(
            decode_image(&[], 3, "empty.jpg").unwrap_err().kind,
            LoadErrorKind::Decode(_)
        ));
        assert!(matches!(
            decode_image(b"x", 5, "five.jpg").unwrap_err().kind,
            LoadErrorKind::Channels(5)
        ));
        let e = load_image(Path::new("no/such.png"), 3).unwrap_err();
        assert!(
            matches!(e.kind, LoadErrorKind::Io(_)) && e.origin == "no/such.png",
            "{e}"
        );
    }

    #[test]
    fn png_round_trip_is_exact() {
        // A 3x2 RGB PNG written by the `image` crate decodes to the same bytes /255.
        let raw: Vec<u8> = (0..18u8).map(|i| i * 13).collect();
        let mut png = Vec::new();
        image::codecs::png::PngEncoder::new(&mut png)
            .write_image(&raw, 3, 2, image::ExtendedColorType::Rgb8)
            .unwrap();
        let im = decode_image(&png, 3, "mem.png").unwrap();
        assert_eq!((im.w, im.h, im.c), (3, 2, 3));
        for y in 0..2 {
            for x in 0..3 {
                for k in 0..3 {
                    assert_eq!(im.get(x, y, k), unit_from_u8(raw[(y * 3 + x) * 3 + k]));
                }
            }
        }
        let grey = decode_image(&png, 1, "mem.png").unwrap();
        assert_eq!(grey.c, 1);
        let native = decode_image(&png, 0, "mem.png").unwrap();
        assert_eq!(native.c, 3);
    }

    use image::ImageEncoder;
}
