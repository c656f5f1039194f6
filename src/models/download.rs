//! Downloads for [`super::resolve`] (feature `hub`): release URLs with `ureq`, the Hugging Face mirror with
//! hf-hub's sync API. Every file is checked (size, sha256 where known) before it becomes visible.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use sha2::{Digest, Sha256};

use super::{hex, set_aside, stamp_key, stamp_path, FileSpec, Origin, ResolveOptions};

/// Tries each URL, then the Hugging Face mirror; returns the first good copy. A copy that fails the check
/// is set aside as `.bad` and is an error at once (a second source would likely serve the same bytes).
pub(super) fn fetch(
    f: &FileSpec,
    opts: &ResolveOptions,
    dest: &Path,
) -> Result<(PathBuf, Option<bool>, Origin)> {
    let mut failures = Vec::new();
    for url in f.urls {
        match http_download(url, f, dest, opts.progress) {
            Ok(v) => return Ok((dest.to_path_buf(), v, Origin::Downloaded)),
            Err(Failure::Network(e)) => failures.push(e),
            Err(Failure::Bad(e)) => return Err(e),
        }
    }
    if let Some(h) = f.hf {
        let url = format!(
            "https://huggingface.co/{}/resolve/{}/{}",
            h.repo, h.revision, h.path
        );
        let mut b = hf_hub::api::sync::ApiBuilder::from_env().with_progress(opts.progress);
        if let Some(c) = &opts.hf_cache {
            b = b.with_cache_dir(c.clone());
        }
        let got = b.build().map_err(anyhow::Error::from).and_then(|api| {
            let repo = hf_hub::Repo::with_revision(
                h.repo.to_string(),
                hf_hub::RepoType::Model,
                h.revision.to_string(),
            );
            api.repo(repo).get(h.path).map_err(anyhow::Error::from)
        });
        match got {
            Ok(p) => {
                return match super::verify_cached(&p, f)? {
                    super::Check::Ok(v) => Ok((p, v, Origin::Downloaded)),
                    super::Check::Mismatch(why) => {
                        let bad = set_aside(&p)?;
                        bail!(
                            "{url}: {why}; the download was moved to {} and not used",
                            bad.display()
                        )
                    }
                };
            }
            Err(e) => failures.push(format!("{url}: {e:#}")),
        }
    }
    bail!("could not download {}: {}", f.file, failures.join("; "))
}

enum Failure {
    /// The source could not be reached or read: try the next one. The message names the URL.
    Network(String),
    /// The bytes arrived but are wrong, or they could not be stored.
    Bad(anyhow::Error),
}

fn http_download(
    url: &str,
    f: &FileSpec,
    dest: &Path,
    progress: bool,
) -> Result<Option<bool>, Failure> {
    let resp = ureq::get(url)
        .call()
        .map_err(|e| Failure::Network(e.to_string()))?;
    let len: Option<u64> = resp.header("Content-Length").and_then(|v| v.parse().ok());
    let dir = dest.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)
        .with_context(|| format!("creating {}", dir.display()))
        .map_err(Failure::Bad)?;
    let part = dir.join(format!(".{}.part.{}", f.file, std::process::id()));
    let result = (|| -> Result<Result<Option<bool>, Failure>> {
        let mut out =
            std::fs::File::create(&part).with_context(|| format!("creating {}", part.display()))?;
        let pb = if progress {
            ProgressBar::new(len.unwrap_or(0))
        } else {
            ProgressBar::hidden()
        };
        if let Ok(style) = ProgressStyle::with_template(
            "{msg} {bar:40} {bytes}/{total_bytes} {bytes_per_sec} {eta}",
        ) {
            pb.set_style(style);
        }
        pb.set_message(f.file.to_string());
        let mut reader = resp.into_reader();
        let mut h = Sha256::new();
        let mut buf = vec![0u8; 1 << 16];
        let mut total = 0u64;
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) => {
                    return Ok(Err(Failure::Network(format!(
                        "reading after {total} bytes: {e}"
                    ))))
                }
            };
            h.update(&buf[..n]);
            out.write_all(&buf[..n])
                .with_context(|| format!("writing {}", part.display()))?;
            total += n as u64;
            pb.inc(n as u64);
        }
        pb.finish_and_clear();
        out.sync_all()
            .with_context(|| format!("syncing {}", part.display()))?;
        drop(out);
        let got = hex(&h.finalize());
        let why = match (f.size, f.sha256) {
            (Some(s), _) if s != total => Some(format!("size is {total} bytes, expected {s}")),
            (_, Some(e)) if e != got => Some(format!("sha256 is {got}, expected {e}")),
            _ => None,
        };
        if let Some(why) = why {
            let bad = PathBuf::from(format!("{}.bad", dest.display()));
            std::fs::rename(&part, &bad)
                .with_context(|| format!("moving {} to {}", part.display(), bad.display()))?;
            return Ok(Err(Failure::Bad(anyhow::anyhow!(
                "{url}: {why}; the download was kept aside at {} and not used",
                bad.display()
            ))));
        }
        std::fs::rename(&part, dest)
            .with_context(|| format!("moving {} to {}", part.display(), dest.display()))?;
        if let Some(e) = f.sha256 {
            let meta = std::fs::metadata(dest)?;
            let _ = crate::util::write_atomic(&stamp_path(dest), stamp_key(e, &meta).as_bytes());
        }
        Ok(Ok(f.sha256.map(|_| true)))
    })();
    let _ = std::fs::remove_file(&part);
    match result {
        Ok(r) => r,
        Err(e) => Err(Failure::Bad(e)),
    }
}
