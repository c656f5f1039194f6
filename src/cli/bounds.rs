//! clap value parsers that bound command-line numbers before anything is sized or looped over by them
//! (docs/limits.md); clap's error names the flag.

use candle_darknet::limits;

fn int_in(s: &str, min: usize, max: usize) -> Result<usize, String> {
    let v: u64 = s
        .trim()
        .parse()
        .map_err(|_| format!("'{s}' is not a whole number in {min}..={max}"))?;
    if v < min as u64 || v > max as u64 {
        return Err(format!("{v} is outside {min}..={max} (docs/limits.md)"));
    }
    Ok(v as usize)
}

/// Images per forward pass or per augmentation batch.
pub fn batch(s: &str) -> Result<usize, String> {
    int_in(s, 1, limits::MAX_BATCH)
}

/// Loader or augmentation threads.
pub fn workers(s: &str) -> Result<usize, String> {
    int_in(s, 1, limits::MAX_WORKERS)
}

/// A network side in pixels.
pub fn side(s: &str) -> Result<usize, String> {
    int_in(s, 1, limits::MAX_SIDE)
}

/// An interval or count that must be at least 1 and fit Darknet's int.
pub fn positive(s: &str) -> Result<usize, String> {
    int_in(s, 1, i32::MAX as usize)
}

/// A count that may be 0 and fits Darknet's int.
pub fn count(s: &str) -> Result<usize, String> {
    int_in(s, 0, i32::MAX as usize)
}

/// `anchors -n`.
pub fn clusters(s: &str) -> Result<usize, String> {
    int_in(s, 1, limits::MAX_CLUSTERS)
}

/// `anchors --restarts`.
pub fn restarts(s: &str) -> Result<usize, String> {
    int_in(s, 1, limits::MAX_RESTARTS)
}

/// `eval --points`: 0 (area under the curve) or an N-point interpolation.
pub fn points(s: &str) -> Result<u32, String> {
    int_in(s, 0, limits::MAX_POINTS).map(|v| v as u32)
}

/// A threshold or probability: a finite number in 0..=1.
pub fn unit(s: &str) -> Result<f32, String> {
    let v: f32 = s
        .trim()
        .parse()
        .map_err(|_| format!("'{s}' is not a number in 0..=1"))?;
    if !(0.0..=1.0).contains(&v) {
        return Err(format!("{v} is outside 0..=1"));
    }
    Ok(v)
}

/// A tolerance: a finite number >= 0.
pub fn tolerance(s: &str) -> Result<f32, String> {
    let v: f32 = s
        .trim()
        .parse()
        .map_err(|_| format!("'{s}' is not a number >= 0"))?;
    if v.is_nan() || v < 0.0 {
        return Err(format!("{v} is not a number >= 0"));
    }
    Ok(v)
}

/// `--max-memory`: `8G`, `512M`, or bytes.
pub fn memory(s: &str) -> Result<u64, String> {
    limits::parse_bytes(s)
}

/// `anchors --synthetic` (benchmarking): boxes generated in memory.
pub fn synthetic(s: &str) -> Result<usize, String> {
    int_in(s, 1, 1 << 26)
}
