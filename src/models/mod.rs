//! Named models: a registry of published Darknet detectors and the resolution of a model argument to a cfg,
//! a weights file and class names. No Darknet counterpart (Darknet takes explicit cfg and weights paths).
//!
//! Resolution order of [`resolve`]:
//! 1. an existing path (a `.weights` or `.cfg` file with its sibling of the same stem, or a folder holding one
//!    `.cfg` and one `.weights`);
//! 2. a registry name found in the local models directory (`$CANDLE_DARKNET_HOME`, default
//!    `<user cache dir>/candle-darknet`), flat layout `<dir>/<name>.cfg`, `<dir>/<name>.weights`;
//! 3. the weights in the Hugging Face cache (`$HF_HOME/hub`, hf-hub's on-disk layout) when the registry lists
//!    a Hugging Face mirror;
//! 4. a download (feature `hub`): release URLs first, then the Hugging Face mirror, with a progress bar,
//!    sha256-checked before an atomic rename into the models directory. Refused when offline
//!    (`HF_HUB_OFFLINE=1` or [`ResolveOptions::offline`]).
//!
//! A file whose size or sha256 differs from the registry is never used: in the models directory it is
//! renamed `<file>.bad`; in the Hugging Face cache it is left alone and reported.

#[cfg(feature = "hub")]
mod download;
mod registry;

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};

pub use registry::{ClassNames, FileSpec, HfFile, ModelSpec, COCO_NAMES, REGISTRY};

/// Where and how [`resolve`] looks. [`ResolveOptions::from_env`] reads the environment once; tests build
/// one by hand so that they never touch the process environment.
#[derive(Clone, Debug)]
pub struct ResolveOptions {
    /// The local models directory.
    pub models_dir: PathBuf,
    /// The Hugging Face hub cache (the folder holding `models--org--name`), if any.
    pub hf_cache: Option<PathBuf>,
    /// Never touch the network.
    pub offline: bool,
    /// Show a progress bar while downloading.
    pub progress: bool,
}

impl ResolveOptions {
    /// `$CANDLE_DARKNET_HOME` or `<user cache dir>/candle-darknet`; `$HF_HOME/hub` or `~/.cache/huggingface/hub`;
    /// offline when `HF_HUB_OFFLINE` is `1`/`true`/`yes`.
    pub fn from_env() -> Self {
        let models_dir = std::env::var_os("CANDLE_DARKNET_HOME")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(default_models_dir);
        let hf_cache = match std::env::var_os("HF_HOME").filter(|v| !v.is_empty()) {
            Some(h) => Some(PathBuf::from(h).join("hub")),
            None => dirs::home_dir().map(|h| h.join(".cache").join("huggingface").join("hub")),
        };
        let offline = std::env::var("HF_HUB_OFFLINE")
            .map(|v| {
                matches!(
                    v.trim().to_ascii_lowercase().as_str(),
                    "1" | "true" | "yes" | "on"
                )
            })
            .unwrap_or(false);
        ResolveOptions {
            models_dir,
            hf_cache,
            offline,
            progress: true,
        }
    }
}

/// `<user cache dir>/candle-darknet` (e.g. `~/.cache/candle-darknet`), or `./candle-darknet-models` when the
/// platform has no cache dir.
pub fn default_models_dir() -> PathBuf {
    dirs::cache_dir()
        .map(|d| d.join("candle-darknet"))
        .unwrap_or_else(|| PathBuf::from("candle-darknet-models"))
}

/// Where a resolved file came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    Path,
    ModelsDir,
    HfCache,
    Downloaded,
}

/// A model ready to load.
#[derive(Clone, Debug)]
pub struct ResolvedModel {
    /// Registry name, `None` for a model given by path.
    pub name: Option<String>,
    pub cfg: PathBuf,
    pub weights: PathBuf,
    pub names: Option<Vec<String>>,
    /// `Some(true)` when the weights matched a known sha256, `None` when no hash is known.
    pub verified: Option<bool>,
    pub weights_origin: Origin,
    /// The models directory in use, where converted copies are kept.
    pub models_dir: PathBuf,
}

impl ResolvedModel {
    /// Where the safetensors copy of the weights lives (made on first use by the converter, then reused):
    /// `<models dir>/<name>.safetensors` for a registry model, `<weights stem>.safetensors` next to the
    /// weights for a model given by path.
    pub fn safetensors_cache_path(&self) -> PathBuf {
        match &self.name {
            Some(n) => self.models_dir.join(format!("{n}.safetensors")),
            None => self.weights.with_extension("safetensors"),
        }
    }
}

/// Looks a registry entry up by exact name.
pub fn find(name: &str) -> Option<&'static ModelSpec> {
    REGISTRY.iter().find(|m| m.name == name)
}

/// Registry names closest to `name` by edit distance (at most 3 of them, distance ≤ max(2, len/3)).
pub fn closest_names(name: &str) -> Vec<&'static str> {
    let lname = name.to_ascii_lowercase();
    let mut d: Vec<(usize, &str)> = REGISTRY
        .iter()
        .map(|m| (levenshtein(&lname, m.name), m.name))
        .collect();
    d.sort();
    let limit = (name.chars().count() / 3).max(2);
    d.into_iter()
        .filter(|(k, _)| *k <= limit)
        .take(3)
        .map(|(_, n)| n)
        .collect()
}

fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + (ca != *cb) as usize)
                .min(prev[j + 1] + 1)
                .min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// Resolves a model argument (path or registry name); see the module documentation for the order.
pub fn resolve(model: &str, opts: &ResolveOptions) -> Result<ResolvedModel> {
    let p = Path::new(model);
    if p.exists() {
        return resolve_path(p, opts);
    }
    let Some(spec) = find(model) else {
        let near = closest_names(model);
        let hint = if near.is_empty() {
            format!(
                "known models: {}",
                REGISTRY
                    .iter()
                    .map(|m| m.name)
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        } else {
            format!("did you mean {}?", near.join(", "))
        };
        bail!("'{model}' is neither an existing path nor a known model name; {hint}");
    };
    resolve_named(spec, opts)
}

fn resolve_path(p: &Path, opts: &ResolveOptions) -> Result<ResolvedModel> {
    let (cfg, weights) = if p.is_dir() {
        let mut cfgs = Vec::new();
        let mut ws = Vec::new();
        for e in std::fs::read_dir(p).with_context(|| format!("reading {}", p.display()))? {
            let f = e?.path();
            match f.extension().and_then(|e| e.to_str()) {
                Some("cfg") => cfgs.push(f),
                Some("weights") => ws.push(f),
                _ => {}
            }
        }
        if cfgs.len() != 1 || ws.len() != 1 {
            bail!(
                "{}: a model folder must hold exactly one .cfg and one .weights (found {} and {})",
                p.display(),
                cfgs.len(),
                ws.len()
            );
        }
        (cfgs.remove(0), ws.remove(0))
    } else {
        match p.extension().and_then(|e| e.to_str()) {
            Some("weights") => (p.with_extension("cfg"), p.to_path_buf()),
            Some("cfg") => (p.to_path_buf(), p.with_extension("weights")),
            _ => bail!(
                "{}: expected a .weights or .cfg file, or a folder with both",
                p.display()
            ),
        }
    };
    for f in [&cfg, &weights] {
        if !f.is_file() {
            bail!(
                "{}: not found (expected next to {})",
                f.display(),
                p.display()
            );
        }
    }
    let dir = weights.parent().map(Path::to_path_buf).unwrap_or_default();
    let stem = weights
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let names = [dir.join(format!("{stem}.names")), dir.join("coco.names")]
        .into_iter()
        .find(|f| f.is_file())
        .map(|f| crate::detect::read_names(&f))
        .transpose()?;
    Ok(ResolvedModel {
        name: None,
        cfg,
        weights,
        names,
        verified: None,
        weights_origin: Origin::Path,
        models_dir: opts.models_dir.clone(),
    })
}

fn resolve_named(spec: &ModelSpec, opts: &ResolveOptions) -> Result<ResolvedModel> {
    install_embedded_cfg(spec, opts)?;
    let (cfg, _, _) = locate(&spec.cfg, opts)?;
    let (weights, verified, origin) = locate(&spec.weights, opts)?;
    Ok(ResolvedModel {
        name: Some(spec.name.to_string()),
        cfg,
        weights,
        names: Some(spec.names.to_vec()),
        verified,
        weights_origin: origin,
        models_dir: opts.models_dir.clone(),
    })
}

/// The registry's cfg files ship inside the binary (Darknet's cfg/ at the pinned commit, in src/models/cfg/), so a
/// named model only ever downloads its weights: a missing cfg is written into the models dir.
fn install_embedded_cfg(spec: &ModelSpec, opts: &ResolveOptions) -> Result<()> {
    let local = opts.models_dir.join(spec.cfg.file);
    if local.exists() {
        return Ok(());
    }
    if let Some(text) = registry::embedded_cfg(spec.name) {
        crate::util::write_atomic(&local, text.as_bytes())?;
    }
    Ok(())
}

/// One file: models dir, then Hugging Face cache, then download.
fn locate(f: &FileSpec, opts: &ResolveOptions) -> Result<(PathBuf, Option<bool>, Origin)> {
    let local = opts.models_dir.join(f.file);
    if local.is_file() {
        match verify_cached(&local, f)? {
            Check::Ok(v) => return Ok((local, v, Origin::ModelsDir)),
            Check::Mismatch(why) => {
                let bad = set_aside(&local)?;
                bail!(
                    "{}: {why}; the file was moved to {} and not used",
                    local.display(),
                    bad.display()
                );
            }
        }
    }
    if let Some(p) = hf_cache_lookup(f, opts) {
        match verify_cached(&p, f)? {
            Check::Ok(v) => return Ok((p, v, Origin::HfCache)),
            Check::Mismatch(why) => bail!(
                "{} (Hugging Face cache): {why}; not used. Delete it or place a good copy at {}",
                p.display(),
                local.display()
            ),
        }
    }
    let how = manual_hint(f, &local);
    if opts.offline {
        bail!(
            "{} is not present and downloads are off (offline / HF_HUB_OFFLINE); {how}",
            f.file
        );
    }
    #[cfg(feature = "hub")]
    {
        let (p, v, o) =
            download::fetch(f, opts, &local).map_err(|e| anyhow::anyhow!("{e:#}; {how}"))?;
        Ok((p, v, o))
    }
    #[cfg(not(feature = "hub"))]
    {
        bail!(
            "{} is not present and this build has no download support (feature `hub` off); {how}",
            f.file
        )
    }
}

fn manual_hint(f: &FileSpec, local: &Path) -> String {
    let mut src: Vec<String> = f.urls.iter().map(|u| u.to_string()).collect();
    if let Some(h) = f.hf {
        src.push(format!(
            "https://huggingface.co/{}/resolve/{}/{}",
            h.repo, h.revision, h.path
        ));
    }
    let hash = f
        .sha256
        .map(|h| format!(" (sha256 {h})"))
        .unwrap_or_default();
    format!(
        "download it by hand from {} and place it at {}{hash}",
        src.join(" or "),
        local.display()
    )
}

/// The file in the Hugging Face cache, if there (no network). hf-hub's `Cache` with feature `hub`, the same
/// on-disk layout read directly without it: `models--org--name/refs/<rev>` holds the commit, the file is in
/// `snapshots/<commit>/<path>`.
fn hf_cache_lookup(f: &FileSpec, opts: &ResolveOptions) -> Option<PathBuf> {
    let h = f.hf?;
    let root = opts.hf_cache.as_ref()?;
    #[cfg(feature = "hub")]
    {
        let cache = hf_hub::Cache::new(root.clone());
        let repo = hf_hub::Repo::with_revision(
            h.repo.to_string(),
            hf_hub::RepoType::Model,
            h.revision.to_string(),
        );
        cache.repo(repo).get(h.path)
    }
    #[cfg(not(feature = "hub"))]
    {
        let dir = root.join(format!("models--{}", h.repo.replace('/', "--")));
        let commit = std::fs::read_to_string(dir.join("refs").join(h.revision)).ok()?;
        let p = dir.join("snapshots").join(commit.trim()).join(h.path);
        p.is_file().then_some(p)
    }
}

enum Check {
    /// `Some(true)`: hash known and matching; `None`: no hash known (size checked when known).
    Ok(Option<bool>),
    Mismatch(String),
}

/// Size then sha256 against the registry. A `<file>.sha256` stamp (hash, size, mtime) written after a
/// successful check spares re-hashing a large file on every run.
fn verify_cached(path: &Path, f: &FileSpec) -> Result<Check> {
    let meta = std::fs::metadata(path).with_context(|| format!("reading {}", path.display()))?;
    if let Some(s) = f.size {
        if meta.len() != s {
            return Ok(Check::Mismatch(format!(
                "size is {} bytes, expected {s}",
                meta.len()
            )));
        }
    }
    let Some(expected) = f.sha256 else {
        return Ok(Check::Ok(None));
    };
    let stamp = stamp_path(path);
    let key = stamp_key(expected, &meta);
    if std::fs::read_to_string(&stamp).ok().as_deref() == Some(key.as_str()) {
        return Ok(Check::Ok(Some(true)));
    }
    let got = sha256_file(path)?;
    if got != expected {
        return Ok(Check::Mismatch(format!(
            "sha256 is {got}, expected {expected}"
        )));
    }
    // Best effort: a read-only cache just means hashing again next time.
    let _ = crate::util::write_atomic(&stamp, key.as_bytes());
    Ok(Check::Ok(Some(true)))
}

fn stamp_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".sha256");
    PathBuf::from(s)
}

fn stamp_key(hash: &str, meta: &std::fs::Metadata) -> String {
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_nanos());
    format!("{hash} {} {}\n", meta.len(), mtime.unwrap_or(0))
}

/// Lower-case hex sha256 of a file.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut file =
        std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file
            .read(&mut buf)
            .with_context(|| format!("reading {}", path.display()))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex(&h.finalize()))
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Renames `path` to `<path>.bad` (replacing an older `.bad`) and returns the new path.
pub(crate) fn set_aside(path: &Path) -> Result<PathBuf> {
    let mut s = path.as_os_str().to_owned();
    s.push(".bad");
    let bad = PathBuf::from(s);
    std::fs::rename(path, &bad)
        .with_context(|| format!("moving {} to {}", path.display(), bad.display()))?;
    let _ = std::fs::remove_file(stamp_path(path));
    Ok(bad)
}

/// What is present locally for one file of a registry model (for `candle-darknet models`).
#[derive(Clone, Debug)]
pub struct LocalFile {
    pub path: PathBuf,
    pub size: u64,
    pub origin: Origin,
    /// `Some(true)` verified, `Some(false)` mismatch, `None` no hash known.
    pub verified: Option<bool>,
}

/// Looks for a registry file locally (models dir, then Hugging Face cache) without downloading or moving
/// anything; checks size and sha256 where known (a valid `.sha256` stamp spares the hashing).
pub fn local_file(f: &FileSpec, opts: &ResolveOptions) -> Result<Option<LocalFile>> {
    let local = opts.models_dir.join(f.file);
    let (path, origin) = if local.is_file() {
        (local, Origin::ModelsDir)
    } else if let Some(p) = hf_cache_lookup(f, opts) {
        (p, Origin::HfCache)
    } else {
        return Ok(None);
    };
    let size = std::fs::metadata(&path)
        .with_context(|| format!("reading {}", path.display()))?
        .len();
    let verified = match verify_cached(&path, f)? {
        Check::Ok(v) => v,
        Check::Mismatch(_) => Some(false),
    };
    Ok(Some(LocalFile {
        path,
        size,
        origin,
        verified,
    }))
}

#[cfg(test)]
mod tests;
