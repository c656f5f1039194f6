//! Darknet's `load_data_detection` (src/data.c 1041, `#ifdef OPENCV` branch): one batch of augmented
//! detector training samples, drawing from the random stream in exactly Darknet's order (see
//! docs/augmentation/load_data_detection.md and the reference README in shared/reference/augment).
//!
//! Deliberate differences: an image that cannot be loaded is an error (Darknet skips it and leaves the
//! sample empty); only mosaic (`mixup = 3`) and no-mixup are supported (not the 2-image blend
//! `mixup = 1`), blur and gaussian noise are not implemented (they draw from OpenCV's RNG), `track = 0`,
//! `contrastive = 0`, `mosaic_bound = 0`.

use super::augment::crop::mean_u8;
use super::augment::{fused, image_data_augmentation, mosaic, to_chw_f32, PixelCrop};
pub use super::augment::{CropRect, ImageDraws};
use super::decode::{load_rgb, RgbImage};
use super::rand::{
    rand_int, rand_precalc_random, rand_scale, rand_uniform_strong, random_float, random_gen,
    DarknetRand,
};
use super::truth::{
    fill_truth_detection, read_boxes, replace_image_to_label, BoxCorrection, BoxLabel, TruthLimits,
    TruthRow, TRUTH_SIZE,
};
use crate::dataset::Resolver;
use anyhow::{bail, Result};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

/// Wall time (seconds) per stage of [`load_data_detection_timed`], summed over calls: where a loader
/// spends its time (`bench --loader`). `other` is the rest of `total` (random draws, crop rectangles,
/// allocation of the batch).
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
pub struct StageTimes {
    /// Reading and decoding images (`load_image_mat_cv`), or the cache lookup.
    pub decode: f64,
    /// Crop with mean fill, 8-bit resize and flip.
    pub crop_resize: f64,
    /// HSV jitter (RGB->HSV, scaling, HSV->RGB).
    pub hsv: f64,
    /// Mosaic assembly (quadrant copies).
    pub mosaic: f64,
    /// 8-bit HWC to float CHW (`mat_to_image`).
    pub to_float: f64,
    /// Labels: reading, `fill_truth_detection`, `blend_truth_mosaic`, the y rows.
    pub truth: f64,
    pub total: f64,
}

impl StageTimes {
    /// `total` minus the named stages.
    pub fn other(&self) -> f64 {
        (self.total
            - self.decode
            - self.crop_resize
            - self.hsv
            - self.mosaic
            - self.to_float
            - self.truth)
            .max(0.0)
    }

    /// Adds `other`'s times to these.
    pub fn add(&mut self, other: &StageTimes) {
        self.decode += other.decode;
        self.crop_resize += other.crop_resize;
        self.hsv += other.hsv;
        self.mosaic += other.mosaic;
        self.to_float += other.to_float;
        self.truth += other.truth;
        self.total += other.total;
    }
}

/// Seconds since `t`, and `t` reset to now (one clock read per stage boundary).
#[inline]
pub(crate) fn lap(t: &mut Instant) -> f64 {
    let now = Instant::now();
    let d = now.duration_since(*t).as_secs_f64();
    *t = now;
    d
}

/// The augmentation parameters of `load_data_detection`, from explicit fields (the cfg's `[net]`
/// `width`, `height`, `hue`, `saturation`, `exposure`, `flip`, `mosaic`, `letter_box`, `max_boxes`
/// (`[yolo]`), `jitter`, `resize`, `classes`).
#[derive(Clone, Debug, PartialEq)]
pub struct AugmentConfig {
    pub w: usize,
    pub h: usize,
    pub jitter: f32,
    pub hue: f32,
    pub saturation: f32,
    pub exposure: f32,
    pub flip: bool,
    pub mosaic: bool,
    pub letter_box: bool,
    pub resize: f32,
    pub max_boxes: usize,
    pub classes: usize,
}

impl Default for AugmentConfig {
    /// Darknet's defaults for a 416x416 COCO detector (jitter=.3, hue=.1, saturation=exposure=1.5, flip).
    fn default() -> Self {
        Self {
            w: 416,
            h: 416,
            jitter: 0.3,
            hue: 0.1,
            saturation: 1.5,
            exposure: 1.5,
            flip: true,
            mosaic: false,
            letter_box: false,
            resize: 1.0,
            max_boxes: 200,
            classes: 80,
        }
    }
}

impl AugmentConfig {
    /// Rejects what Darknet rejects (`letter_box` with `mosaic`, data.c 1052) and degenerate sizes.
    pub fn validate(&self) -> Result<()> {
        if self.mosaic && self.letter_box {
            bail!("letter_box=1 together with mosaic=1 is not supported (as in Darknet)");
        }
        if self.w == 0 || self.h == 0 || self.max_boxes == 0 {
            bail!("network size and max_boxes must be positive");
        }
        Ok(())
    }
}

/// What happened to one image of one pass (the arguments of Darknet's `image_data_augmentation` and the
/// truth array from `fill_truth_detection`), for comparisons and display.
#[derive(Clone, Debug, PartialEq)]
pub struct PieceRecord {
    pub pass: usize,
    pub sample: usize,
    pub path: String,
    pub src_w: usize,
    pub src_h: usize,
    pub pleft: i32,
    pub ptop: i32,
    pub swidth: i32,
    pub sheight: i32,
    pub flip: bool,
    pub dhue: f32,
    pub dsat: f32,
    pub dexp: f32,
    pub truth: Vec<TruthRow>,
    pub mosaic: Option<mosaic::MosaicShifts>,
    /// The crop was degenerate and the whole image was used instead (Darknet prints "WARNING: invalid
    /// resize"; we report it here and the caller warns).
    pub whole_image: bool,
}

/// One batch: `x` is n x 3 x h x w (CHW, RGB, `u8*(1/255.f)`), `y` is n x max_boxes x 6 (unused rows 0).
#[derive(Clone, Debug)]
pub struct DetectionBatch {
    pub n: usize,
    pub w: usize,
    pub h: usize,
    pub max_boxes: usize,
    pub x: Vec<f32>,
    pub y: Vec<f32>,
    /// Whether the mosaic coin left mosaic on for this batch.
    pub mosaic: bool,
    pub pieces: Vec<PieceRecord>,
    /// Samples whose image or label file could not be read, replaced by another draw (see
    /// [`Sources::strict`]): `(path, reason)`, in the order met.
    pub skipped: Vec<(String, String)>,
}

impl DetectionBatch {
    /// The images whose crop was degenerate (Darknet's "invalid resize" warning), one entry per piece.
    pub fn invalid_resizes(&self) -> impl Iterator<Item = &str> {
        self.pieces
            .iter()
            .filter(|p| p.whole_image)
            .map(|p| p.path.as_str())
    }

    /// X as a candle tensor `[n, 3, h, w]` and y as `[n, max_boxes, 6]` on `device`.
    pub fn to_tensors(
        &self,
        device: &candle_core::Device,
    ) -> candle_core::Result<(candle_core::Tensor, candle_core::Tensor)> {
        let x = candle_core::Tensor::from_slice(&self.x, (self.n, 3, self.h, self.w), device)?;
        let y = candle_core::Tensor::from_slice(&self.y, (self.n, self.max_boxes, 6), device)?;
        Ok((x, y))
    }
}

/// Resolves Darknet's path strings (as written in the training list) by the dataset module's rule and
/// caches decoded images and label files (both are read-only during training).
pub struct Sources {
    pub resolver: Resolver,
    cache: bool,
    images: HashMap<String, Arc<Decoded>>,
    labels: HashMap<String, Arc<Vec<BoxLabel>>>,
    /// The pixel kernels' buffers, reused from sample to sample.
    scratch: fused::Scratch,
    /// Run the pixel operations one by one, each as its own pass over a whole image (the straightforward
    /// path the fused one is tested against, and the "before" of `augment --bench --stepwise`).
    pub stepwise: bool,
    /// Stop at the first image or label file that cannot be read (undecodable or truncated image, unreadable
    /// file, malformed label line). Without it the sample is skipped and another path drawn in its place
    /// (see [`load_data_detection`]). On by default; the training loader sets it from `--strict`.
    pub strict: bool,
}

/// A decoded training image and its `cv::mean` colour (the crop's padding), computed once with it.
#[derive(Debug)]
pub struct Decoded {
    pub img: RgbImage,
    pub mean: [u8; 3],
}

impl Sources {
    /// Relative paths resolve under `root` (after the working directory, see [`crate::dataset`]); with
    /// `cache`, each image is decoded once.
    pub fn new(root: impl Into<PathBuf>, cache: bool) -> Self {
        Self::with_resolver(Resolver::under(root), cache)
    }

    /// Paths resolve as `resolver` says (an [`crate::dataset::ImageList`]'s own).
    pub fn with_resolver(resolver: Resolver, cache: bool) -> Self {
        Self {
            resolver,
            cache,
            images: HashMap::new(),
            labels: HashMap::new(),
            scratch: fused::Scratch::default(),
            stepwise: false,
            strict: true,
        }
    }

    /// `load_image_mat_cv(path)`: the decoded RGB image (with its mean colour).
    pub fn image(&mut self, path: &str) -> Result<Arc<Decoded>> {
        if let Some(img) = self.images.get(path) {
            return Ok(img.clone());
        }
        let img = load_rgb(&self.resolver.resolve(path))?;
        // The step-by-step path computes the mean in its crop, per sample, as before.
        let mean = if self.stepwise { [0; 3] } else { mean_u8(&img) };
        let img = Arc::new(Decoded { img, mean });
        if self.cache {
            self.images.insert(path.to_string(), img.clone());
        }
        Ok(img)
    }

    /// `read_boxes(replace_image_to_label(path))`; class ids must be below `classes`.
    pub fn labels(&mut self, image_path: &str, classes: usize) -> Result<Arc<Vec<BoxLabel>>> {
        if let Some(b) = self.labels.get(image_path) {
            return Ok(b.clone());
        }
        let label_path = replace_image_to_label(image_path);
        let file = self.resolver.resolve(&label_path);
        let b = Arc::new(read_boxes(&label_path, &file, classes)?);
        if self.cache {
            self.labels.insert(image_path.to_string(), b.clone());
        }
        Ok(b)
    }
}

/// The reason prefix of a skipped sample whose image could not be read ([`DetectionBatch::skipped`]).
pub const IMAGE_SKIP: &str = "image: ";
/// The reason prefix of a skipped sample whose label file could not be read.
pub const LABEL_SKIP: &str = "labels: ";

/// The replacement of an unreadable sample: `random_gen() % paths.len()`, as `get_random_paths_custom`.
fn redraw<'a, R: DarknetRand + ?Sized>(rng: &mut R, paths: &'a [String], path: &mut &'a String) {
    rng.label(format_args!("replacement of {path}"));
    *path = &paths[(random_gen(rng) % paths.len() as u32) as usize];
}

/// The path actually used for a sample, its image and its labels.
type ReadableSample<'a> = (&'a String, Arc<Decoded>, Arc<Vec<BoxLabel>>);

/// Draws after which a sample whose image or labels keep failing stops the batch (all bad, or nearly).
const MAX_REPLACEMENT_DRAWS: usize = 100;

/// The image and labels of `path`, or, when one cannot be read and [`Sources::strict`] is off, of another
/// path drawn with `random_gen() % paths.len()` (as `get_random_paths_custom` draws), recorded in `skipped`.
/// Darknet keeps training past an unreadable image (OpenCV's loader prints "Cannot load image" and goes
/// on); drawing a replacement keeps every sample a real image. The replacement draw comes from the same
/// stream, so with a bad file the draws that follow (and so `--darknet-rng`'s sequence) shift by one per
/// skip; with no bad file nothing changes.
fn readable_sample<'a, R: DarknetRand + ?Sized>(
    rng: &mut R,
    sources: &mut Sources,
    paths: &'a [String],
    first: &'a String,
    cfg: &AugmentConfig,
    skipped: &mut Vec<(String, String)>,
) -> Result<ReadableSample<'a>> {
    let mut path = first;
    for _ in 0..MAX_REPLACEMENT_DRAWS {
        let img = match sources.image(path) {
            Ok(img) => img,
            Err(e) if sources.strict => return Err(e),
            Err(e) => {
                skipped.push((path.clone(), format!("{IMAGE_SKIP}{e:#}")));
                redraw(rng, paths, &mut path);
                continue;
            }
        };
        match sources.labels(path, cfg.classes) {
            Ok(boxes) => return Ok((path, img, boxes)),
            Err(e) if sources.strict => return Err(e),
            Err(e) => skipped.push((path.clone(), format!("{LABEL_SKIP}{e:#}"))),
        }
        redraw(rng, paths, &mut path);
    }
    let (last, why) = skipped.last().cloned().unwrap_or_default();
    bail!("{MAX_REPLACEMENT_DRAWS} images in a row could not be read; the last: {last}: {why}")
}

/// Draws the per-image numbers in Darknet's order: resize_r1, resize_r2, r1..r4 (`random_float`), flip
/// (`random_gen()%2`, only if enabled), r_scale (unused), dhue = `rand_uniform_strong(-hue, hue)`,
/// dsat = `rand_scale(saturation)`, dexp = `rand_scale(exposure)`: 13 draws with flip on.
pub fn draw_image_params<R: DarknetRand + ?Sized>(
    rng: &mut R,
    cfg: &AugmentConfig,
    pass: usize,
    i: usize,
) -> ImageDraws {
    let f = |rng: &mut R, name: &str| {
        rng.label(format_args!("pass{pass}.img{i}.{name}"));
        random_float(rng)
    };
    let resize_r1 = f(rng, "resize_r1");
    let resize_r2 = f(rng, "resize_r2");
    let r = [
        f(rng, "r1_left"),
        f(rng, "r2_right"),
        f(rng, "r3_top"),
        f(rng, "r4_bot"),
    ];
    rng.label(format_args!("pass{pass}.img{i}.flip"));
    let flip = cfg.flip && random_gen(rng) % 2 != 0;
    f(rng, "r_scale(unused)");
    rng.label(format_args!("pass{pass}.img{i}.dhue"));
    let dhue = rand_uniform_strong(rng, -cfg.hue, cfg.hue);
    rng.label(format_args!("pass{pass}.img{i}.dsat"));
    let dsat = rand_scale(rng, cfg.saturation);
    rng.label(format_args!("pass{pass}.img{i}.dexp"));
    let dexp = rand_scale(rng, cfg.exposure);
    ImageDraws {
        resize_r1,
        resize_r2,
        r,
        flip,
        dhue,
        dsat,
        dexp,
    }
}

/// data.c 1106-1203: jitter offsets `int(r*(2d) - d)` with `d = int(o*jitter)`, plus the resize offsets
/// (sharing resize_r1 between left/top and resize_r2 between right/bottom), then the letter_box correction.
pub fn crop_rect(cfg: &AugmentConfig, ow: usize, oh: usize, d: &ImageDraws) -> CropRect {
    let (owf, ohf) = (ow as f32, oh as f32);
    let dw = (owf * cfg.jitter) as i32;
    let dh = (ohf * cfg.jitter) as i32;
    let mut resize_down = cfg.resize;
    let mut resize_up = cfg.resize;
    if resize_down > 1.0 {
        resize_down = 1.0 / resize_down;
    }
    let min_rdw = (owf * (1.0 - 1.0 / resize_down) / 2.0) as i32;
    let min_rdh = (ohf * (1.0 - 1.0 / resize_down) / 2.0) as i32;
    if resize_up < 1.0 {
        resize_up = 1.0 / resize_up;
    }
    let max_rdw = (owf * (1.0 - 1.0 / resize_up) / 2.0) as i32;
    let max_rdh = (ohf * (1.0 - 1.0 / resize_up) / 2.0) as i32;
    let pr = |lo: i32, hi: i32, r: f32| rand_precalc_random(lo as f32, hi as f32, r);
    let mut pleft = pr(-dw, dw, d.r[0]) as i32;
    let mut pright = pr(-dw, dw, d.r[1]) as i32;
    let mut ptop = pr(-dh, dh, d.r[2]) as i32;
    let mut pbot = pr(-dh, dh, d.r[3]) as i32;
    let (max_w, max_h) = if cfg.resize < 1.0 {
        (0, 0)
    } else {
        (max_rdw, max_rdh)
    };
    pleft = (pleft as f32 + pr(min_rdw, max_w, d.resize_r1)) as i32;
    pright = (pright as f32 + pr(min_rdw, max_w, d.resize_r2)) as i32;
    ptop = (ptop as f32 + pr(min_rdh, max_h, d.resize_r1)) as i32;
    pbot = (pbot as f32 + pr(min_rdh, max_h, d.resize_r2)) as i32;
    if cfg.letter_box {
        let img_ar = owf / ohf;
        let net_ar = cfg.w as f32 / cfg.h as f32;
        if img_ar / net_ar > 1.0 {
            let delta_h = (owf / net_ar - ohf) / 2.0;
            ptop = (ptop as f32 - delta_h) as i32;
            pbot = (pbot as f32 - delta_h) as i32;
        } else {
            let delta_w = (ohf * net_ar - owf) / 2.0;
            pleft = (pleft as f32 - delta_w) as i32;
            pright = (pright as f32 - delta_w) as i32;
        }
    }
    CropRect {
        pleft,
        pright,
        ptop,
        pbot,
    }
}

/// data.c 1206-1219: moves mosaic piece `pass` towards its corner (left/right roles swapped with flip).
pub fn move_to_corner(c: &mut CropRect, pass: usize, flip: bool) {
    let horizontal_to_right = matches!(
        (pass, flip),
        (0, false) | (2, false) | (1, true) | (3, true)
    );
    if horizontal_to_right {
        c.pright += c.pleft;
        c.pleft = 0;
    } else {
        c.pleft += c.pright;
        c.pright = 0;
    }
    if pass < 2 {
        c.pbot += c.ptop;
        c.ptop = 0;
    } else {
        c.ptop += c.pbot;
        c.pbot = 0;
    }
}

/// `load_data_detection` (data.c 1041) for `n` samples drawn from `paths` (the list strings exactly as
/// Darknet gets them: they name the label files and seed the track ids), with the random stream `rng`.
pub fn load_data_detection<R: DarknetRand + ?Sized>(
    rng: &mut R,
    sources: &mut Sources,
    paths: &[String],
    n: usize,
    cfg: &AugmentConfig,
) -> Result<DetectionBatch> {
    load_data_detection_timed(rng, sources, paths, n, cfg, &mut StageTimes::default())
}

/// [`load_data_detection`], adding the time spent in each stage to `times`.
pub fn load_data_detection_timed<R: DarknetRand + ?Sized>(
    rng: &mut R,
    sources: &mut Sources,
    paths: &[String],
    n: usize,
    cfg: &AugmentConfig,
    times: &mut StageTimes,
) -> Result<DetectionBatch> {
    let start = Instant::now();
    let mut t = start;
    cfg.validate()?;
    if paths.is_empty() {
        bail!("load_data_detection: empty image list");
    }
    let (w, h) = (cfg.w, cfg.h);
    rng.label(format_args!("random_index"));
    let _random_index = random_gen(rng);
    rng.label(format_args!("mosaic_or_mixup_coin (even->disable)"));
    let use_mosaic = random_gen(rng) % 2 != 0 && cfg.mosaic;
    let mut cuts = Vec::new();
    if use_mosaic {
        for i in 0..n {
            rng.label(format_args!("cut_x[{i}]"));
            let cx = rand_int(
                rng,
                (w as f32 * 0.2f32) as i32,
                (w as f32 * (1.0f32 - 0.2f32)) as i32,
            );
            rng.label(format_args!("cut_y[{i}]"));
            let cy = rand_int(
                rng,
                (h as f32 * 0.2f32) as i32,
                (h as f32 * (1.0f32 - 0.2f32)) as i32,
            );
            cuts.push((cx, cy));
        }
    }
    let passes = if use_mosaic { 4 } else { 1 };
    let plane = w * h;
    let mut x = vec![0f32; n * 3 * plane];
    let mut y = vec![0f32; n * cfg.max_boxes * TRUTH_SIZE];
    // In mosaic the four quadrants of a sample tile it, so every pixel of x is written once.
    let mut rows: Vec<Vec<TruthRow>> = vec![Vec::new(); n];
    let mut canvases: Vec<RgbImage> = Vec::new();
    if use_mosaic && sources.stepwise {
        canvases = (0..n).map(|_| RgbImage::filled(w, h, [0, 0, 0])).collect();
    }
    let mut pieces = Vec::new();
    let mut skipped = Vec::new();
    for pass in 0..passes {
        // get_random_paths_custom (data.c 81): with replacement, independently per pass.
        let mut chosen = Vec::with_capacity(n);
        for i in 0..n {
            rng.label(format_args!("pass{pass}.path[{i}]"));
            chosen.push(&paths[(random_gen(rng) % paths.len() as u32) as usize]);
        }
        for (i, path) in chosen.into_iter().enumerate() {
            times.decode += lap(&mut t);
            let (path, img, boxes) = readable_sample(rng, sources, paths, path, cfg, &mut skipped)?;
            times.decode += lap(&mut t);
            let (ow, oh) = (img.img.w, img.img.h);
            let d = draw_image_params(rng, cfg, pass, i);
            let mut c = crop_rect(cfg, ow, oh, &d);
            if use_mosaic {
                rng.label(format_args!(
                    "pass{pass}.img{i}.mosaic_corner_coin (even->move)"
                ));
                if random_gen(rng) % 2 == 0 {
                    move_to_corner(&mut c, pass, d.flip);
                }
            }
            let (owi, ohi) = (ow as i32, oh as i32);
            let mut swidth = owi - c.pleft - c.pright;
            let mut sheight = ohi - c.ptop - c.pbot;
            let whole_image =
                swidth <= 0 || sheight <= 0 || owi - c.pleft <= 0 || ohi - c.ptop <= 0;
            if whole_image {
                swidth = owi;
                sheight = ohi;
                c.pleft = 0;
                c.ptop = 0;
            }
            let sx = swidth as f32 / ow as f32;
            let sy = sheight as f32 / oh as f32;
            // The -Ofast object computes ((float)pleft/ow)/sx as pleft/(sx*ow), and 1./sx as 1.0f/sx.
            let dx = c.pleft as f32 / (sx * ow as f32);
            let dy = c.ptop as f32 / (sy * oh as f32);
            lap(&mut t);
            let limits = TruthLimits {
                max_boxes: cfg.max_boxes,
                classes: cfg.classes,
                net_w: w,
                net_h: h,
            };
            let correction = BoxCorrection {
                dx,
                dy,
                s: 1.0 / sx,
                t: 1.0 / sy,
                flip: d.flip,
            };
            let truth = fill_truth_detection(rng, boxes.as_ref().clone(), &limits, &correction);
            let crop = PixelCrop {
                left: c.pleft,
                top: c.ptop,
                width: swidth,
                height: sheight,
            };
            times.truth += lap(&mut t);
            let shifts = use_mosaic.then(|| {
                let (cx, cy) = cuts[i];
                mosaic::mosaic_shifts((cx, cy), (w as i32, h as i32), (owi, ohi), &c, d.flip)
            });
            // Only the pixels that reach the sample are computed: its quadrant in mosaic, else all.
            let region = match &shifts {
                Some(m) => mosaic::quadrant_region(pass, m, w, h),
                None => fused::Region::whole(w, h),
            };
            times.mosaic += lap(&mut t);
            let xi = &mut x[i * 3 * plane..(i + 1) * 3 * plane];
            if sources.stepwise {
                let ai = image_data_augmentation(&img.img, (w, h), &crop, &d, times);
                lap(&mut t); // counted inside, by stage
                match &shifts {
                    Some(m) => {
                        mosaic::paste_quadrant(&mut canvases[i], &ai, pass, m);
                        times.mosaic += lap(&mut t);
                    }
                    None => {
                        to_chw_f32(&ai, xi);
                        times.to_float += lap(&mut t);
                    }
                }
            } else {
                let scratch = &mut sources.scratch;
                fused::augment_into(
                    &img.img,
                    img.mean,
                    (w, h),
                    &crop,
                    &d,
                    &region,
                    xi,
                    scratch,
                    times,
                );
                lap(&mut t); // counted inside, by stage
            }
            if let Some(m) = &shifts {
                mosaic::blend_truth_mosaic(
                    &mut rows[i],
                    &truth,
                    cfg.max_boxes,
                    w as i32,
                    h as i32,
                    pass,
                    m,
                );
            } else {
                rows[i] = truth.clone();
            }
            times.truth += lap(&mut t);
            pieces.push(PieceRecord {
                pass,
                sample: i,
                path: path.clone(),
                src_w: ow,
                src_h: oh,
                pleft: c.pleft,
                ptop: c.ptop,
                swidth,
                sheight,
                flip: d.flip,
                dhue: d.dhue,
                dsat: d.dsat,
                dexp: d.dexp,
                truth,
                mosaic: shifts,
                whole_image,
            });
        }
    }
    lap(&mut t);
    for (i, canvas) in canvases.iter().enumerate() {
        to_chw_f32(canvas, &mut x[i * 3 * plane..(i + 1) * 3 * plane]);
    }
    times.to_float += lap(&mut t);
    for (i, r) in rows.iter().enumerate() {
        for (k, row) in r.iter().take(cfg.max_boxes).enumerate() {
            let o = (i * cfg.max_boxes + k) * TRUTH_SIZE;
            y[o..o + TRUTH_SIZE].copy_from_slice(row);
        }
    }
    times.truth += lap(&mut t);
    times.total += start.elapsed().as_secs_f64();
    Ok(DetectionBatch {
        n,
        w,
        h,
        max_boxes: cfg.max_boxes,
        x,
        y,
        mosaic: use_mosaic,
        pieces,
        skipped,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn corner_moves_match_darknet_table() {
        let base = CropRect {
            pleft: 1,
            pright: 2,
            ptop: 3,
            pbot: 4,
        };
        let mv = |pass, flip| {
            let mut c = base;
            move_to_corner(&mut c, pass, flip);
            (c.pleft, c.pright, c.ptop, c.pbot)
        };
        assert_eq!(mv(0, false), (0, 3, 0, 7));
        assert_eq!(mv(1, false), (3, 0, 0, 7));
        assert_eq!(mv(2, false), (0, 3, 7, 0));
        assert_eq!(mv(3, false), (3, 0, 7, 0));
        assert_eq!(mv(0, true), (3, 0, 0, 7));
        assert_eq!(mv(3, true), (0, 3, 7, 0));
    }

    #[test]
    fn letter_box_with_mosaic_is_rejected() {
        let cfg = AugmentConfig {
            mosaic: true,
            letter_box: true,
            ..Default::default()
        };
        assert!(cfg.validate().is_err());
    }

    #[test]
    fn crop_rect_is_symmetric_at_half() {
        let cfg = AugmentConfig::default();
        let d = ImageDraws {
            resize_r1: 0.5,
            resize_r2: 0.5,
            r: [0.5; 4],
            flip: false,
            dhue: 0.0,
            dsat: 1.0,
            dexp: 1.0,
        };
        assert_eq!(
            crop_rect(&cfg, 100, 100, &d),
            CropRect {
                pleft: 0,
                pright: 0,
                ptop: 0,
                pbot: 0
            }
        );
        let d0 = ImageDraws { r: [0.0; 4], ..d };
        assert_eq!(
            crop_rect(&cfg, 100, 100, &d0),
            CropRect {
                pleft: -30,
                pright: -30,
                ptop: -30,
                pbot: -30
            }
        );
    }

    #[test]
    fn crop_rect_resize_and_letter_box_offsets() {
        let half = ImageDraws {
            resize_r1: 0.0,
            resize_r2: 1.0,
            r: [0.5; 4],
            flip: false,
            dhue: 0.0,
            dsat: 1.0,
            dexp: 1.0,
        };
        // resize=2: min_rd = int(100*(1-2)/2) = -50 (resize_r1 = 0), max_rd = int(100*(1-1/2)/2) = 25 (resize_r2 = 1).
        let cfg = AugmentConfig {
            resize: 2.0,
            ..Default::default()
        };
        assert_eq!(
            crop_rect(&cfg, 100, 100, &half),
            CropRect {
                pleft: -50,
                pright: 25,
                ptop: -50,
                pbot: 25
            }
        );
        // letter_box, 200x100 image into 416x416: delta_h = (200/1 - 100)/2 = 50 taken from top and bottom.
        let mid = ImageDraws {
            resize_r1: 0.5,
            resize_r2: 0.5,
            ..half
        };
        let lb = AugmentConfig {
            letter_box: true,
            ..Default::default()
        };
        assert_eq!(
            crop_rect(&lb, 200, 100, &mid),
            CropRect {
                pleft: 0,
                pright: 0,
                ptop: -50,
                pbot: -50
            }
        );
    }

    #[test]
    fn batch_converts_to_tensors() {
        let b = DetectionBatch {
            n: 1,
            w: 2,
            h: 2,
            max_boxes: 1,
            x: (0..12).map(|v| v as f32).collect(),
            y: vec![0.5, 0.5, 0.1, 0.1, 3.0, 0.0],
            mosaic: false,
            pieces: Vec::new(),
            skipped: Vec::new(),
        };
        let (x, y) = b.to_tensors(&candle_core::Device::Cpu).unwrap();
        assert_eq!(x.dims(), &[1, 3, 2, 2]);
        assert_eq!(y.dims(), &[1, 1, 6]);
    }
}
