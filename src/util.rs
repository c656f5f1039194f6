//! Small shared helpers: atomic file writes, devices, sizes, and the per-worker random generator that both the
//! data pipeline and Darknet's weight initialisation draw from.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};

/// Writes `bytes` to `path` atomically: a temporary file in the same directory, fsync, then rename, so a
/// crash never leaves a half-written output behind.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic_with(path, |f| f.write_all(bytes).map_err(Into::into))
}

/// Like [`write_atomic`], but the content is produced by `fill` writing into the temporary file.
pub fn write_atomic_with(
    path: &Path,
    fill: impl FnOnce(&mut std::io::BufWriter<std::fs::File>) -> Result<()>,
) -> Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir)
        .with_context(|| format!("creating directory {}", dir.display()))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp.{}", std::process::id()));
    let result = (|| -> Result<()> {
        let file =
            std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        let mut w = std::io::BufWriter::new(file);
        fill(&mut w)?;
        let file = w
            .into_inner()
            .map_err(|e| anyhow::anyhow!("flushing {}: {}", tmp.display(), e.error()))?;
        file.sync_all()
            .with_context(|| format!("syncing {}", tmp.display()))?;
        std::fs::rename(&tmp, path)
            .with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// `cpu`, `cuda` or `cuda:N` → a candle device; CUDA needs the `cuda` cargo feature.
pub fn device(name: &str) -> Result<candle_core::Device> {
    match name {
        "cpu" => Ok(candle_core::Device::Cpu),
        "cuda" | "gpu" => cuda(0),
        other => match other
            .strip_prefix("cuda:")
            .and_then(|n| n.parse::<usize>().ok())
        {
            Some(n) => cuda(n),
            None => anyhow::bail!("unknown device '{other}' (use cpu, cuda or cuda:N)"),
        },
    }
}

fn cuda(ordinal: usize) -> Result<candle_core::Device> {
    if !candle_core::utils::cuda_is_available() {
        anyhow::bail!("--device cuda: this binary was built without CUDA; rebuild with `cargo build --release --features cuda`");
    }
    candle_core::Device::new_cuda(ordinal).with_context(|| format!("opening CUDA device {ordinal}"))
}

/// Peak resident memory of this process in MiB (Linux `VmHWM`), if known.
pub fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// Parses `WxH` (or a single number for a square).
static INTERRUPT: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Asks the long loops (training, `detect`/`eval` over a dataset) to stop at their next step; the command
/// line calls it from its Ctrl-C handler. Process-wide, as the signal is.
pub fn request_interrupt() {
    INTERRUPT.store(true, std::sync::atomic::Ordering::SeqCst);
}

/// True once [`request_interrupt`] was called.
pub fn interrupted() -> bool {
    INTERRUPT.load(std::sync::atomic::Ordering::SeqCst)
}

/// `root/rel` for a path read from a manifest or a dataset file, refused when `rel` could leave `root`
/// (absolute, a drive prefix, or a `..` component), so that such a file cannot make us read elsewhere.
pub fn join_within(root: &Path, rel: impl AsRef<Path>) -> Result<std::path::PathBuf> {
    use std::path::Component;
    let rel = rel.as_ref();
    if rel.as_os_str().is_empty()
        || rel
            .components()
            .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
    {
        anyhow::bail!(
            "path {:?} must stay inside {} (no absolute paths, no '..')",
            rel,
            root.display()
        );
    }
    Ok(root.join(rel))
}

pub fn parse_size(s: &str) -> Result<(usize, usize)> {
    let parse = |v: &str| {
        v.trim()
            .parse::<usize>()
            .with_context(|| format!("--size '{s}': expected WxH, e.g. 416x416"))
    };
    let (w, h) = match s.split_once(['x', 'X']) {
        Some((w, h)) => (parse(w)?, parse(h)?),
        None => {
            let v = parse(s)?;
            (v, v)
        }
    };
    let max = crate::limits::MAX_SIDE;
    if w == 0 || h == 0 || w > max || h > max {
        anyhow::bail!("--size '{s}': width and height must be in 1..={max} (docs/limits.md)");
    }
    Ok((w, h))
}

/// A per-worker generator for training (xorshift64*), consumed in Darknet's draw order but not reproducing
/// glibc's numbers. It lives here, below both users: `data` (augmentation, through `data::rand::DarknetRand`)
/// and `weights` (`make_convolutional_layer`'s initial weights).
#[derive(Clone, Debug)]
pub struct FastRand(u64);

impl FastRand {
    /// A generator seeded with `seed` (any value; 0 is remapped).
    pub fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// One `rand()`-like draw in 0..2^31.
    #[inline]
    pub fn next_rand(&mut self) -> u32 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 33) as u32
    }

    /// `rand_uniform(min, max)` (utils.c) on this generator: `(float)rand()/RAND_MAX * (max-min) + min`.
    #[inline]
    pub fn uniform(&mut self, min: f32, max: f32) -> f32 {
        let (min, max) = if max < min { (max, min) } else { (min, max) };
        self.next_rand() as f32 / 0x7fff_ffff_u32 as f32 * (max - min) + min
    }
}

/// The seed of batch (or layer) `k` drawn from `seed` (splitmix64 of seed and index).
pub fn batch_seed(seed: u64, k: u64) -> u64 {
    let mut z = seed ^ k.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The shared data folder of the tests and tools (Darknet's cfgs and data, the reference dumps):
/// `$CANDLE_DARKNET_SHARED` when set, else `../shared` beside the checkout `checkout` (a git worktree placed
/// beside the main checkout finds the same folder).
pub fn shared_dir(checkout: &std::path::Path) -> std::path::PathBuf {
    match std::env::var_os("CANDLE_DARKNET_SHARED") {
        Some(dir) if !dir.is_empty() => dir.into(),
        _ => checkout.join("../shared"),
    }
}
