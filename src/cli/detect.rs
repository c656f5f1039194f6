//! `candle-darknet detect <cfg> <weights> <inputs>...`: Darknet-style detection lines, `--json`, annotated images.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};

use candle_darknet::detect::{detections_json, draw_detections, format_detections_v3};
use candle_darknet::image::{load_image, save_image, Image};
use candle_darknet::inference::Detector;

#[derive(clap::Args)]
pub struct DetectArgs {
    /// A model name (see `models`), or a Darknet .cfg followed by its weights (.weights or .safetensors).
    pub model: String,
    /// [weights] then image files, directories of images, or .txt files listing image paths (one per line).
    #[arg(required = true)]
    pub inputs: Vec<PathBuf>,
    /// Class names file (default: coco.names for 80-class models).
    #[arg(long)]
    pub names: Option<PathBuf>,
    /// Box threshold (`detector test -thresh`).
    #[arg(long, default_value_t = 0.25, value_parser = super::bounds::unit)]
    pub thresh: f32,
    #[command(flatten)]
    pub run: super::run_args::RunArgs,
    /// Write all detections as JSON.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Directory for annotated images.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Print nothing per image (useful with --json on large sets).
    #[arg(long)]
    pub quiet: bool,
}

const IMAGE_EXTS: &[&str] = &[
    "jpg", "jpeg", "png", "bmp", "tga", "gif", "JPG", "JPEG", "PNG",
];

/// Expands files, directories (sorted, images only) and `.txt` lists into image paths (as given).
pub fn expand_inputs(inputs: &[PathBuf]) -> Result<(Vec<PathBuf>, bool)> {
    let mut out = Vec::new();
    let mut any_dir = false;
    for p in inputs {
        if p.is_dir() {
            any_dir = true;
            let mut v: Vec<PathBuf> = std::fs::read_dir(p)
                .with_context(|| format!("listing {}", p.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| {
                    f.extension()
                        .and_then(|e| e.to_str())
                        .is_some_and(|e| IMAGE_EXTS.contains(&e))
                })
                .collect();
            v.sort();
            out.extend(v);
        } else if p.extension().and_then(|e| e.to_str()) == Some("txt") {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("reading list {}", p.display()))?;
            out.extend(
                text.lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .map(PathBuf::from),
            );
        } else {
            out.push(p.clone());
        }
    }
    if out.is_empty() {
        bail!("no images found in {:?}", inputs);
    }
    Ok((out, any_dir))
}

fn out_path(dir: &Path, image: &Path) -> PathBuf {
    let stem = image
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "image".into());
    dir.join(format!("{stem}.jpg"))
}

pub fn run(a: DetectArgs) -> Result<()> {
    let device = a.run.device()?;
    let (m, inputs) = super::model_arg::resolve(&a.model, a.inputs)?;
    let load = a.run.load_options();
    let mut det = Detector::load_with(&m.cfg, &m.weights, a.names.as_deref(), &device, &load)?;
    if let (None, Some(names)) = (&a.names, m.names) {
        det.names = names;
    }
    let opts = a.run.detect_options(a.thresh);
    let (paths, any_dir) = expand_inputs(&inputs)?;
    let bar = (any_dir || paths.len() > 20).then(|| {
        let b = indicatif::ProgressBar::new(paths.len() as u64);
        b.set_style(
            indicatif::ProgressStyle::with_template(
                "{bar:40} {pos}/{len} images, {per_sec}, ETA {eta}",
            )
            .expect("valid template"),
        );
        b
    });
    let mut records = Vec::new();
    let mut failed = 0usize;
    let start = Instant::now();
    let mut interrupted = false;
    for chunk in paths.chunks(a.run.batch.max(1)) {
        if candle_darknet::util::interrupted() {
            interrupted = true;
            break;
        }
        let mut images: Vec<(PathBuf, Image)> = Vec::new();
        for p in chunk {
            match load_image(p, 3) {
                Ok(im) => images.push((p.clone(), im)),
                Err(e) => {
                    failed += 1;
                    eprintln!("error: {e:#} (skipped)");
                }
            }
        }
        if images.is_empty() {
            continue;
        }
        let ims: Vec<Image> = images.iter().map(|(_, im)| im.clone()).collect();
        let t = Instant::now();
        let dets = det.detect(&ims, &opts)?;
        let ms = t.elapsed().as_secs_f64() * 1000.0;
        for ((path, mut im), d) in images.into_iter().zip(dets) {
            if !a.quiet && bar.is_none() {
                println!(
                    "{}: Predicted in {:.3} milli-seconds.",
                    path.display(),
                    ms / ims.len() as f64
                );
                for line in format_detections_v3(&d, im.w, im.h, opts.thresh, &det.names, true) {
                    println!("{line}");
                }
            }
            records.push(detections_json(
                &path.to_string_lossy(),
                &d,
                im.w,
                im.h,
                opts.thresh,
                &det.names,
            ));
            if let Some(dir) = &a.out {
                let classes = det.names.len();
                draw_detections(&mut im, &d, opts.thresh, &det.names, classes);
                save_image(&im, &out_path(dir, &path))?;
            }
        }
        if let Some(b) = &bar {
            b.inc(chunk.len() as u64);
        }
    }
    if let Some(b) = bar {
        b.finish();
        eprintln!(
            "{} images in {:.1}s",
            records.len(),
            start.elapsed().as_secs_f64()
        );
    }
    if let Some(j) = &a.json {
        candle_darknet::util::write_atomic(j, serde_json::to_string_pretty(&records)?.as_bytes())?;
        if !a.quiet {
            println!("wrote {}", j.display());
        }
    }
    if interrupted {
        bail!(
            "interrupted (Ctrl-C) after {} of {} images; their detections were written",
            records.len() + failed,
            paths.len()
        );
    }
    if failed > 0 {
        bail!(
            "{failed} of {} images could not be read (each named above)",
            paths.len()
        );
    }
    Ok(())
}
