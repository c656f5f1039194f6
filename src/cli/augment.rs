//! `candle-darknet augment`: regenerate a Darknet augmentation reference case and compare draw by draw
//! (`--reference`), or write augmented training samples with their boxes as PNG (`--data`), like
//! Darknet's `-show_imgs`.

use anyhow::{bail, Context, Result};
use candle_darknet::data::bench::{bench_loader, LoaderBenchConfig, LoaderBenchReport};
use candle_darknet::data::decode::RgbImage;
use candle_darknet::data::loader::{BatchLoader, LoaderConfig, RngMode};
use candle_darknet::data::reference::compare_case;
use candle_darknet::data::AugmentConfig;
use candle_darknet::dataset::ImageList;
use candle_darknet::limits;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(clap::Args)]
pub struct AugmentArgs {
    /// A reference case directory (shared/reference/augment/<case>) to regenerate and compare.
    #[arg(long, conflicts_with = "data")]
    reference: Option<PathBuf>,
    /// Directory under which the case's `pub/...` paths resolve (`make augment-root` builds one in
    /// target/augment_root).
    #[arg(long, default_value = ".")]
    root: PathBuf,
    /// Print the comparison as JSON.
    #[arg(long)]
    json: bool,
    /// A Darknet .data file (its `train` list and `classes`) or an image list file, one path per line.
    #[arg(long, required_unless_present = "reference")]
    data: Option<PathBuf>,
    /// srand() seed.
    #[arg(long, default_value_t = 1)]
    seed: u32,
    /// Samples per batch (Darknet's n).
    #[arg(long, default_value_t = 4, value_parser = super::bounds::batch)]
    batch: usize,
    /// Number of batches to draw (the mosaic coin is drawn per batch, so about half use mosaic).
    #[arg(long, default_value_t = 1, value_parser = super::bounds::positive)]
    batches: usize,
    /// Enable mosaic (Darknet `mosaic=1`).
    #[arg(long)]
    mosaic: bool,
    /// letter_box=1 (not with --mosaic).
    #[arg(long)]
    letter_box: bool,
    /// Network width and height.
    #[arg(long, default_value_t = 416, value_parser = super::bounds::side)]
    size: usize,
    /// Use Darknet's single glibc rand() stream on one thread (reproduces `load_data_detection` called
    /// batch after batch from one thread); otherwise each batch has its own seeded stream.
    #[arg(long)]
    darknet_rng: bool,
    /// Loader worker threads (without --darknet-rng).
    #[arg(long, default_value_t = 2, value_parser = super::bounds::workers)]
    workers: usize,
    /// Output directory for the PNG files.
    #[arg(long, default_value = "aug_out")]
    out: PathBuf,
    /// Measure the loader instead (images/s and time per stage) over every combination of
    /// --bench-sizes, --bench-mosaic and --bench-threads, on the --data image list.
    #[arg(long)]
    bench: bool,
    /// Network sizes for --bench.
    #[arg(long, value_delimiter = ',', default_value = "416,608")]
    bench_sizes: Vec<usize>,
    /// mosaic settings for --bench (0, 1 or 0,1; with 1 the per-batch coin enables it for about half the
    /// batches, as in Darknet).
    #[arg(long, value_delimiter = ',', default_value = "0,1")]
    bench_mosaic: Vec<u8>,
    /// Thread counts for --bench (default 1, 2 and the number of cores).
    #[arg(long, value_delimiter = ',')]
    bench_threads: Vec<usize>,
    /// Timed seconds per --bench row.
    #[arg(long, default_value_t = 3.0)]
    bench_seconds: f64,
    /// Untimed warm-up seconds per --bench row.
    #[arg(long, default_value_t = 1.0)]
    warmup_seconds: f64,
    /// Keep decoded images in memory (--bench; training keeps them).
    #[arg(long)]
    cache_images: bool,
    /// --bench the step-by-step pixel path (one pass per operation, as before the fused kernel).
    #[arg(long)]
    stepwise: bool,
}

pub fn run(args: AugmentArgs) -> Result<()> {
    if let Some(case) = &args.reference {
        return run_reference(case, &args.root, args.json);
    }
    let data = args
        .data
        .as_ref()
        .context("--data or --reference is required")?;
    if args.bench {
        return run_bench(data, &args);
    }
    run_show(data, &args)
}

/// Samples and memory bounded before the loader starts: batch × batches samples written at most
/// [`limits::MAX_AUGMENT_SAMPLES`], and the batches in flight (prefetch 2 + the one being written, each
/// `batch` float images of size², plus as many decoded 8-bit sources) within the memory budget.
fn check_augment_bounds(args: &AugmentArgs) -> Result<()> {
    let samples = args.batch as u128 * args.batches as u128;
    if samples > limits::MAX_AUGMENT_SAMPLES as u128 {
        bail!(
            "--batch {} x --batches {} = {samples} samples is beyond the limit {} (docs/limits.md)",
            args.batch,
            args.batches,
            limits::MAX_AUGMENT_SAMPLES
        );
    }
    let per_image = (args.size as u128).pow(2) * 3 * 4;
    let bytes = per_image * args.batch as u128 * 3 * 2;
    if let Some(budget) = limits::memory_budget(None) {
        if bytes > budget as u128 {
            bail!(
                "--size {} with --batch {} needs about {} for the batches in flight, more than the {} this process may use (docs/limits.md)",
                args.size,
                args.batch,
                limits::human(bytes.min(u64::MAX as u128) as u64),
                limits::human(budget)
            );
        }
    }
    Ok(())
}

fn run_reference(case: &Path, root: &Path, json: bool) -> Result<()> {
    let r = compare_case(case, root)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        println!("case {}", r.case);
        match &r.first_divergence {
            None => println!("  rand() draws: {} of {} aligned", r.draws_ours, r.draws_reference),
            Some(d) => println!(
                "  rand() draws: ours {}, reference {}; first divergence at draw {}: ours {:?} ({}), reference {:?} ({})",
                r.draws_ours, r.draws_reference, d.index, d.ours, d.our_tag, d.reference, d.reference_tag
            ),
        }
        println!(
            "  draw meanings differing from the reference tags: {}",
            r.tag_mismatches
        );
        println!(
            "  y: {} of {} floats differ (bitwise)",
            r.y_differing, r.y_floats
        );
        println!(
            "  X: {} of {} floats differ, max |dX| = {}",
            r.x_differing, r.x_floats, r.x_max_abs_diff
        );
        println!("  {}", if r.pass { "PASS" } else { "FAIL" });
    }
    if !r.pass {
        bail!("case {} does not match the reference", r.case);
    }
    Ok(())
}

/// Draws a 1-pixel rectangle (Darknet's `draw_box_width(..., 1, ...)`), clipped to the image.
fn draw_box(img: &mut RgbImage, l: i32, t: i32, r: i32, b: i32, color: [u8; 3]) {
    let (w, h) = (img.w as i32, img.h as i32);
    let mut put = |x: i32, y: i32| {
        if x >= 0 && y >= 0 && x < w && y < h {
            let i = ((y * w + x) * 3) as usize;
            img.data[i..i + 3].copy_from_slice(&color);
        }
    };
    for x in l..=r {
        put(x, t);
        put(x, b);
    }
    for y in t..=b {
        put(l, y);
        put(r, y);
    }
}

fn run_show(data: &Path, args: &AugmentArgs) -> Result<()> {
    let (list, data_cfg) = ImageList::open_train(data)?;
    if list.is_empty() {
        bail!("{}: no image paths", list.list.display());
    }
    let classes = match &data_cfg {
        Some(d) => d.classes()?,
        None => None,
    };
    let missing = list.missing_labels();
    if let Some(first) = missing.first() {
        eprintln!(
            "warning: {} label files not found (those images have no objects), e.g. {}",
            missing.len(),
            first.display()
        );
    }
    let cfg = AugmentConfig {
        w: args.size,
        h: args.size,
        mosaic: args.mosaic,
        letter_box: args.letter_box,
        classes: classes.unwrap_or(80),
        ..Default::default()
    };
    check_augment_bounds(args)?;
    let lc = LoaderConfig {
        batch: args.batch,
        workers: args.workers,
        prefetch: 2,
        seed: args.seed as u64,
        mode: if args.darknet_rng {
            RngMode::Darknet
        } else {
            RngMode::PerBatch
        },
        cache_images: false,
        start: 0,
        strict: true,
    };
    let mut loader = BatchLoader::spawn(list.paths, list.resolver, cfg, lc)?;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    for b in 0..args.batches {
        let batch = loader.next_batch()?;
        for path in batch.invalid_resizes() {
            eprintln!("warning: invalid resize of {path}; the whole image was used (as Darknet)");
        }
        let plane = batch.w * batch.h;
        for i in 0..batch.n {
            let x = &batch.x[i * 3 * plane..(i + 1) * 3 * plane];
            let mut img = RgbImage {
                w: batch.w,
                h: batch.h,
                data: vec![0; plane * 3],
            };
            for p in 0..plane {
                for c in 0..3 {
                    img.data[p * 3 + c] = (x[c * plane + p] * 255.0).round() as u8;
                }
            }
            let mut nboxes = 0;
            for t in 0..batch.max_boxes {
                let row = &batch.y[(i * batch.max_boxes + t) * 6..][..6];
                if row[0] == 0.0 {
                    break;
                }
                let (bw, bh) = (batch.w as f32, batch.h as f32);
                let l = ((row[0] - row[2] / 2.0) * bw) as i32;
                let r = ((row[0] + row[2] / 2.0) * bw) as i32;
                let t_ = ((row[1] - row[3] / 2.0) * bh) as i32;
                let bo = ((row[1] + row[3] / 2.0) * bh) as i32;
                draw_box(&mut img, l, t_, r, bo, [255, 40, 40]);
                nboxes += 1;
            }
            let name = args.out.join(format!(
                "aug_b{b}_{i}{}.png",
                if batch.mosaic { "_mosaic" } else { "" }
            ));
            let buf = image::RgbImage::from_raw(img.w as u32, img.h as u32, img.data)
                .context("internal: image buffer size")?;
            candle_darknet::util::write_atomic_with(&name, |f| {
                buf.write_to(f, image::ImageFormat::Png).map_err(Into::into)
            })?;
            println!(
                "{} ({} boxes{})",
                name.display(),
                nboxes,
                if batch.mosaic { ", mosaic" } else { "" }
            );
        }
    }
    Ok(())
}

fn run_bench(data: &Path, args: &AugmentArgs) -> Result<()> {
    let (list, data_cfg) = ImageList::open_train(data)?;
    let classes = match &data_cfg {
        Some(d) => d.classes()?,
        None => None,
    };
    let threads = if args.bench_threads.is_empty() {
        let n = std::thread::available_parallelism().map_or(1, |n| n.get());
        let mut t = vec![1, 2, n];
        t.sort_unstable();
        t.dedup();
        t
    } else {
        args.bench_threads.clone()
    };
    let cfg = LoaderBenchConfig {
        base: AugmentConfig {
            letter_box: args.letter_box,
            classes: classes.unwrap_or(80),
            ..Default::default()
        },
        sizes: args.bench_sizes.clone(),
        mosaic: args.bench_mosaic.iter().map(|&m| m != 0).collect(),
        threads,
        batch: args.batch,
        warmup: Duration::from_secs_f64(args.warmup_seconds.max(0.0)),
        duration: Duration::from_secs_f64(args.bench_seconds.max(0.0)),
        seed: args.seed,
        cache_images: args.cache_images,
        stepwise: args.stepwise,
    };
    let report = bench_loader(&list.paths, &list.resolver, &cfg)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    print_bench(&report);
    Ok(())
}

/// The report as a table: one row per configuration, images/s and the share of each stage.
fn print_bench(r: &LoaderBenchReport) {
    println!(
        "loader benchmark: {} images in the list, batch {}, srand({}) (+thread)",
        r.images_in_list, r.batch, r.seed
    );
    let names: Vec<&str> = r
        .rows
        .first()
        .map(|row| row.stage_shares().iter().map(|(n, _)| *n).collect())
        .unwrap_or_default();
    print!("| size | mosaic | threads | cache | path | images/s | mosaic batches |");
    for n in &names {
        print!(" {n} |");
    }
    println!();
    println!("|{}", "---|".repeat(7 + names.len()));
    for row in &r.rows {
        print!(
            "| {} | {} | {} | {} | {} | {:.1} | {}/{} |",
            row.size,
            row.mosaic as u8,
            row.threads,
            if row.cache_images { "yes" } else { "no" },
            if row.stepwise { "stepwise" } else { "fused" },
            row.images_per_s,
            row.mosaic_batches,
            row.batches
        );
        for (_, v) in row.stage_shares() {
            print!(" {:.1}% |", v * 100.0);
        }
        println!();
    }
}
