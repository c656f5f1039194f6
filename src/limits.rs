//! Limits on what an input (a cfg, a weights header, a label file, a JSON file or a command-line number) can make
//! us allocate or loop over, checked before the allocation or the loop. Each is far above what any real Darknet
//! cfg or dataset uses (docs/limits.md lists them with the largest real value); what stays within them but still
//! does not fit the machine is caught by the memory estimate ([`MemoryEstimate`], [`memory_budget`]).

use std::fmt;

use crate::cfg::{LayerConfig, NetworkConfig};

/// A cfg integer must fit Darknet's `int` (`atoi` beyond it is undefined in C).
pub const CFG_INT_MIN: i64 = i32::MIN as i64;
pub const CFG_INT_MAX: i64 = i32::MAX as i64;
/// Width or height of the network input and of every feature map (real: 1536 for p7; 16x that).
pub const MAX_SIDE: usize = 1 << 15;
/// Channels of the input, `filters=`, `groups=` (real: 28269 filters in yolo9000's last conv).
pub const MAX_CHANNELS: usize = 1 << 17;
/// Kernel size, dilation and explicit padding of a convolution or maxpool (real: 11 in alexnet, 13 in SPP).
pub const MAX_KERNEL: usize = 255;
/// Any stride (convolution, maxpool, upsample, reorg; real: 4 in yolov3-tiny-prn's upsample... at most 32).
pub const MAX_STRIDE: usize = 1024;
/// Anchors of one `[yolo]`/`[region]` (`num=`; real: 9, 12 in yolov3_5l) and class count (real: 9418).
pub const MAX_ANCHORS: usize = 1 << 12;
pub const MAX_CLASSES: usize = 1 << 17;
/// `max=` boxes per image in a yolo/region layer and truths per image (real: 200).
pub const MAX_BOXES: usize = 1 << 16;
/// Layers of a cfg (real: 488 in cspx-p7-mish) and references of one `[route]`.
pub const MAX_LAYERS: usize = 1 << 14;
/// Elements of one feature map of one image: i32 indices in Darknet (real: 75.5 M in p7's first layer at 1536).
pub const MAX_MAP_ELEMENTS: usize = i32::MAX as usize;
/// Images per batch (`batch=`, `--batch`; real: 64 for detectors, 256 for classifiers).
pub const MAX_BATCH: usize = 1 << 12;
/// `eval --points` (Darknet's are 0, 11 and 101).
pub const MAX_POINTS: usize = 10_001;
/// `anchors -n` (real: 9) and `--restarts` (real: 1-10).
pub const MAX_CLUSTERS: usize = 1 << 10;
pub const MAX_RESTARTS: usize = 1 << 16;
/// restarts × boxes × clusters of `anchors` (one k-means iteration's IoUs summed over the restarts; COCO's
/// 860k boxes with 9 clusters and 10 restarts is 7.7e7).
pub const MAX_KMEANS_WORK: u64 = 20_000_000_000;
/// Samples `augment` writes (batch × batches).
pub const MAX_AUGMENT_SAMPLES: usize = 1 << 20;
/// Loader threads (`--workers`).
pub const MAX_WORKERS: usize = 1 << 10;
/// Pixels of a decoded image (width × height; real photos: 24 MP for a 6000x4000 camera image, 16x that).
pub const MAX_IMAGE_PIXELS: u64 = 1 << 28;

/// A value beyond one of these limits: what, the value and the limit.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{what} = {value} is beyond the limit {limit} ({why}; docs/limits.md)")]
pub struct LimitError {
    pub what: String,
    pub value: String,
    pub limit: String,
    pub why: &'static str,
}

/// `value` for `what` if it is within `min..=max`.
pub fn check_range(
    what: &str,
    value: u64,
    min: u64,
    max: u64,
    why: &'static str,
) -> Result<usize, LimitError> {
    if value < min || value > max {
        let limit = if value < min {
            format!("{min} (minimum)")
        } else {
            max.to_string()
        };
        return Err(LimitError {
            what: what.to_string(),
            value: value.to_string(),
            limit,
            why,
        });
    }
    Ok(value as usize)
}

/// The most a cfg key may hold: the per-key limits above, else Darknet's `int`.
pub fn cfg_key_max(key: &str) -> i64 {
    let m = match key {
        "filters" | "groups" | "channels" | "out_c" => MAX_CHANNELS,
        "size" | "padding" | "dilation" => MAX_KERNEL,
        "stride" | "stride_x" | "stride_y" => MAX_STRIDE,
        "num" | "coords" => MAX_ANCHORS,
        "classes" => MAX_CLASSES,
        "max" => MAX_BOXES,
        "width" | "height" | "w" | "h" => MAX_SIDE,
        "batch" => MAX_BATCH,
        _ => return CFG_INT_MAX,
    };
    m as i64
}

/// Parses a memory size `8G`, `512M`, `64K` or plain bytes (`--max-memory`).
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let (num, mul) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let mul: u64 = match c.to_ascii_uppercase() {
                'K' => 1 << 10,
                'M' => 1 << 20,
                'G' => 1 << 30,
                'T' => 1 << 40,
                'B' => 1,
                _ => return Err(format!("bad memory size '{s}' (e.g. 8G, 512M)")),
            };
            (&t[..i], mul)
        }
        _ => (t, 1),
    };
    let v: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("bad memory size '{s}' (e.g. 8G, 512M)"))?;
    if !v.is_finite() || v <= 0.0 || v * mul as f64 > u64::MAX as f64 {
        return Err(format!("bad memory size '{s}' (a positive size, e.g. 8G)"));
    }
    Ok((v * mul as f64) as u64)
}

/// What the process may allocate: the smallest of the machine's RAM (`MemTotal`), the address-space limit
/// (`RLIMIT_AS`, as `ulimit -v` sets it) and `max` (`--max-memory`). `None` when none of these is known.
pub fn memory_budget(max: Option<u64>) -> Option<u64> {
    let mem_total = std::fs::read_to_string("/proc/meminfo").ok().and_then(|t| {
        let line = t.lines().find(|l| l.starts_with("MemTotal:"))?;
        let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kb.saturating_mul(1024))
    });
    [mem_total, address_space_limit(), max]
        .into_iter()
        .flatten()
        .min()
}

#[cfg(unix)]
fn address_space_limit() -> Option<u64> {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct we pass, which lives on this stack frame.
    let ok = unsafe { libc::getrlimit(libc::RLIMIT_AS, &mut r) } == 0;
    (ok && r.rlim_cur != libc::RLIM_INFINITY).then_some(r.rlim_cur)
}

#[cfg(not(unix))]
fn address_space_limit() -> Option<u64> {
    None
}

/// Bytes a network needs, estimated from the shapes before anything is allocated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct MemoryEstimate {
    /// Images per forward pass the estimate is for.
    pub batch: usize,
    pub training: bool,
    /// Parameters as loaded (f32), with the CPU kernels' packed copy at inference, and gradients plus
    /// momentum when training.
    pub parameters: u64,
    /// Feature maps: every layer's output is kept (routes, shortcuts and `compare` read earlier ones); training
    /// also keeps the gradient and the batch-norm inputs of every map.
    pub activations: u64,
    /// The largest convolution's im2col buffer (one image).
    pub workspace: u64,
}

impl MemoryEstimate {
    pub fn total(&self) -> u64 {
        self.parameters
            .saturating_add(self.activations)
            .saturating_add(self.workspace)
    }

    /// Estimates `cfg` at its current size with `batch` images per pass.
    pub fn of(cfg: &NetworkConfig, batch: usize, training: bool) -> Self {
        let f = 4u64; // bytes per f32
        let mut params = 0u64;
        let mut maps = 0u64;
        let mut workspace = 0u64;
        for l in &cfg.layers {
            maps = maps.saturating_add(l.output.numel() as u64);
            if let LayerConfig::Convolutional(c) = &l.config {
                let per = (l.input.c / c.groups.max(1)) as u64 * (c.size as u64).pow(2);
                let n = c.filters as u64;
                let extra = if c.batch_normalize { 4 } else { 1 };
                params = params.saturating_add(n.saturating_mul(per).saturating_add(n * extra));
                let cols = per.saturating_mul((l.output.h * l.output.w) as u64);
                workspace = workspace.max(cols);
            }
        }
        let (param_copies, map_copies) = if training { (4, 4) } else { (2, 1) };
        MemoryEstimate {
            batch,
            training,
            parameters: params.saturating_mul(f * param_copies),
            activations: maps
                .saturating_mul(f * map_copies)
                .saturating_mul(batch as u64),
            workspace: workspace.saturating_mul(f),
        }
    }

    /// An error when the estimate is over `budget` (from [`memory_budget`]); `Ok` when it fits or no budget
    /// is known.
    pub fn check(&self, budget: Option<u64>, cfg: &NetworkConfig) -> Result<(), MemoryError> {
        match budget {
            Some(b) if self.total() > b => Err(MemoryError {
                cfg: cfg.file.display().to_string(),
                width: cfg.net.width,
                height: cfg.net.height,
                estimate: *self,
                budget: b,
            }),
            _ => Ok(()),
        }
    }
}

impl fmt::Display for MemoryEstimate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({} at batch {}: parameters {}, feature maps {}, workspace {})",
            human(self.total()),
            if self.training {
                "training"
            } else {
                "inference"
            },
            self.batch,
            human(self.parameters),
            human(self.activations),
            human(self.workspace)
        )
    }
}

/// A network that would not fit: the estimate and the budget.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{cfg} at {width}x{height} needs about {estimate}, more than the {} this process may use (RAM, `ulimit -v` or --max-memory); use a smaller --size/--batch or raise --max-memory (docs/limits.md)", human(*budget))]
pub struct MemoryError {
    pub cfg: String,
    pub width: usize,
    pub height: usize,
    pub estimate: MemoryEstimate,
    pub budget: u64,
}

/// Bytes as `12.3 GiB`.
pub fn human(b: u64) -> String {
    const U: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut i = 0;
    while v >= 1024.0 && i + 1 < U.len() {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", U[i])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_bytes_units() {
        assert_eq!(parse_bytes("8G").unwrap(), 8 << 30);
        assert_eq!(parse_bytes("512m").unwrap(), 512 << 20);
        assert_eq!(parse_bytes("1000").unwrap(), 1000);
        assert!(parse_bytes("-1G").is_err());
        assert!(parse_bytes("nanG").is_err());
        assert!(parse_bytes("1e30T").is_err());
        assert!(parse_bytes("8Q").is_err());
    }

    #[test]
    fn human_sizes() {
        assert_eq!(human(10), "10 B");
        assert_eq!(human(3 << 30), "3.0 GiB");
    }
}
