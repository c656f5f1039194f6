//! Regenerates a Darknet augmentation reference case (shared/reference/augment/<case>) and compares
//! draw by draw: rand() values, y (bit-exact) and X (exact), as `candle-darknet augment --reference` and
//! tests/augment.rs report.

use super::detection::{load_data_detection, AugmentConfig, DetectionBatch, Sources};
use super::rand::{GlibcRand, Recorder};
use anyhow::{bail, Context, Result};
use serde::Serialize;
use std::path::{Path, PathBuf};

/// The first draw where our stream and the reference log differ.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Divergence {
    pub index: usize,
    pub ours: Option<u32>,
    pub reference: Option<u32>,
    pub our_tag: String,
    pub reference_tag: String,
}

/// Result of regenerating one case.
#[derive(Clone, Debug, Serialize)]
pub struct CaseReport {
    pub case: String,
    pub draws_ours: usize,
    pub draws_reference: usize,
    /// draws whose tag (meaning) differs from the reference's, counted over the common prefix.
    pub tag_mismatches: usize,
    pub first_divergence: Option<Divergence>,
    pub y_floats: usize,
    pub y_differing: usize,
    pub x_floats: usize,
    pub x_differing: usize,
    pub x_max_abs_diff: f32,
    /// y bit-exact, X exact and every draw aligned.
    pub pass: bool,
}

/// The fields of a case's manifest.json that drive the call.
#[derive(Clone, Debug)]
pub struct CaseSpec {
    pub seed: u32,
    pub n: usize,
    pub paths: Vec<String>,
    pub cfg: AugmentConfig,
}

fn field<'a>(m: &'a serde_json::Value, k: &str, file: &Path) -> Result<&'a serde_json::Value> {
    m.get(k)
        .with_context(|| format!("{}: missing key {k:?}", file.display()))
}

fn num(m: &serde_json::Value, k: &str, file: &Path) -> Result<f64> {
    let v = field(m, k, file)?;
    v.as_f64()
        .or_else(|| v.as_bool().map(|b| b as u8 as f64))
        .with_context(|| format!("{}: key {k:?} is not a number", file.display()))
}

/// Reads `manifest.json` of a case directory.
pub fn read_case_spec(case_dir: &Path) -> Result<CaseSpec> {
    let file = case_dir.join("manifest.json");
    let text = std::fs::read_to_string(&file)
        .with_context(|| format!("cannot read {}", file.display()))?;
    let m: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{}: invalid JSON", file.display()))?;
    let paths = field(&m, "paths", &file)?
        .as_array()
        .with_context(|| format!("{}: \"paths\" is not a list", file.display()))?
        .iter()
        .map(|p| {
            p.as_str()
                .map(str::to_string)
                .with_context(|| format!("{}: bad path entry", file.display()))
        })
        .collect::<Result<Vec<_>>>()?;
    let cfg = AugmentConfig {
        w: num(&m, "net_w", &file)? as usize,
        h: num(&m, "net_h", &file)? as usize,
        jitter: num(&m, "jitter", &file)? as f32,
        hue: num(&m, "hue", &file)? as f32,
        saturation: num(&m, "saturation", &file)? as f32,
        exposure: num(&m, "exposure", &file)? as f32,
        flip: num(&m, "flip", &file)? != 0.0,
        mosaic: num(&m, "mosaic", &file)? != 0.0,
        letter_box: num(&m, "letter_box", &file)? != 0.0,
        resize: num(&m, "resize", &file)? as f32,
        max_boxes: num(&m, "max_boxes", &file)? as usize,
        classes: num(&m, "classes", &file)? as usize,
    };
    if num(&m, "blur", &file)? != 0.0 || num(&m, "gaussian_noise", &file)? != 0.0 {
        bail!(
            "{}: blur / gaussian_noise are not implemented",
            file.display()
        );
    }
    Ok(CaseSpec {
        seed: num(&m, "seed", &file)? as u32,
        n: num(&m, "n", &file)? as usize,
        paths,
        cfg,
    })
}

/// Reads `rand_log.tsv`: (value, tag) per draw.
pub fn read_rand_log(case_dir: &Path) -> Result<Vec<(u32, String)>> {
    let file = case_dir.join("rand_log.tsv");
    let text = std::fs::read_to_string(&file)
        .with_context(|| format!("cannot read {}", file.display()))?;
    let mut out = Vec::new();
    for (ln, line) in text.lines().enumerate().skip(1) {
        let cols: Vec<&str> = line.split('\t').collect();
        if cols.len() < 6 {
            bail!(
                "{}:{}: expected 6 tab-separated columns",
                file.display(),
                ln + 1
            );
        }
        let v: u32 = cols[1]
            .parse()
            .with_context(|| format!("{}:{}: bad value", file.display(), ln + 1))?;
        out.push((v, cols[5].to_string()));
    }
    Ok(out)
}

/// Reads a little-endian float32 file.
pub fn read_f32_file(file: &Path) -> Result<Vec<f32>> {
    let b = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    if b.len() % 4 != 0 {
        bail!(
            "{}: size {} is not a multiple of 4",
            file.display(),
            b.len()
        );
    }
    Ok(b.chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect())
}

/// Runs the case with glibc `rand()` seeded as in the manifest, images and labels under `root`
/// (where `pub/<name>.jpg` and `pub/<name>.txt` resolve). Returns the batch and the draw log.
pub fn regenerate_case(case_dir: &Path, root: &Path) -> Result<Regenerated> {
    let spec = read_case_spec(case_dir)?;
    let mut rng = Recorder::new(GlibcRand::new(spec.seed));
    let mut sources = Sources::new(root, true);
    let batch = load_data_detection(&mut rng, &mut sources, &spec.paths, spec.n, &spec.cfg)?;
    Ok((spec, batch, rng.log))
}

/// A regenerated case: its manifest, the batch and the draw log (value, meaning).
pub type Regenerated = (CaseSpec, DetectionBatch, Vec<(u32, String)>);

/// Regenerates the case and compares it with the reference files.
pub fn compare_case(case_dir: &Path, root: &Path) -> Result<CaseReport> {
    let (_spec, batch, log) = regenerate_case(case_dir, root)?;
    let reference = read_rand_log(case_dir)?;
    let mut first = None;
    let mut tag_mismatches = 0;
    for i in 0..log.len().max(reference.len()) {
        let (o, r) = (log.get(i), reference.get(i));
        if let (Some(o), Some(r)) = (o, r) {
            if o.1 != r.1 {
                tag_mismatches += 1;
            }
        }
        if first.is_none() && o.map(|x| x.0) != r.map(|x| x.0) {
            first = Some(Divergence {
                index: i,
                ours: o.map(|x| x.0),
                reference: r.map(|x| x.0),
                our_tag: o.map(|x| x.1.clone()).unwrap_or_default(),
                reference_tag: r.map(|x| x.1.clone()).unwrap_or_default(),
            });
        }
    }
    let y_ref = read_f32_file(&case_dir.join("y.bin"))?;
    let x_ref = read_f32_file(&case_dir.join("X.bin"))?;
    let y_differing = if y_ref.len() == batch.y.len() {
        y_ref
            .iter()
            .zip(&batch.y)
            .filter(|(a, b)| a.to_bits() != b.to_bits())
            .count()
    } else {
        y_ref.len().max(batch.y.len())
    };
    let (x_differing, x_max) = if x_ref.len() == batch.x.len() {
        x_ref
            .iter()
            .zip(&batch.x)
            .fold((0usize, 0f32), |(c, m), (a, b)| {
                if a.to_bits() != b.to_bits() {
                    (c + 1, m.max((a - b).abs()))
                } else {
                    (c, m)
                }
            })
    } else {
        (x_ref.len().max(batch.x.len()), f32::INFINITY)
    };
    let name = case_dir
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    Ok(CaseReport {
        case: name,
        draws_ours: log.len(),
        draws_reference: reference.len(),
        tag_mismatches,
        pass: first.is_none() && y_differing == 0 && x_differing == 0,
        first_divergence: first,
        y_floats: y_ref.len(),
        y_differing,
        x_floats: x_ref.len(),
        x_differing,
        x_max_abs_diff: x_max,
    })
}

/// The image names of the public cases and where they come from: Darknet's `data/` (shared/darknet/data)
/// or `make weights` (weights/).
pub const PUBLIC_IMAGES: [(&str, bool); 8] = [
    ("bus", true),
    ("dog", false),
    ("eagle", false),
    ("giraffe", false),
    ("horses", false),
    ("person", false),
    ("scream", false),
    ("zidane", true),
];

/// Builds `<dest>/pub/` with symlinks `<name>.jpg` (from `darknet_data` or `weights`) and `<name>.txt`
/// (from `labels`), so that the manifest's `pub/...` paths resolve under `dest`. Fails with
/// "run make weights" when bus.jpg / zidane.jpg are missing.
pub fn make_pub_root(
    darknet_data: &Path,
    weights: &Path,
    labels: &Path,
    dest: &Path,
) -> Result<PathBuf> {
    let pub_dir = dest.join("pub");
    std::fs::create_dir_all(&pub_dir)
        .with_context(|| format!("cannot create {}", pub_dir.display()))?;
    for (name, from_weights) in PUBLIC_IMAGES {
        let img = if from_weights {
            weights.join(format!("{name}.jpg"))
        } else {
            darknet_data.join(format!("{name}.jpg"))
        };
        if !img.exists() {
            if from_weights {
                bail!("{} is missing: run make weights", img.display());
            }
            bail!("{} is missing", img.display());
        }
        let lbl = labels.join(format!("{name}.txt"));
        if !lbl.exists() {
            bail!("{} is missing", lbl.display());
        }
        for (src, dst) in [
            (img, pub_dir.join(format!("{name}.jpg"))),
            (lbl, pub_dir.join(format!("{name}.txt"))),
        ] {
            let src = std::fs::canonicalize(&src)
                .with_context(|| format!("cannot resolve {}", src.display()))?;
            let _ = std::fs::remove_file(&dst);
            std::os::unix::fs::symlink(&src, &dst)
                .with_context(|| format!("cannot link {} -> {}", dst.display(), src.display()))?;
        }
    }
    Ok(dest.to_path_buf())
}
