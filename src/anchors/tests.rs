use super::*;

fn opts(k: usize, init: Init, seed: u64) -> KmeansOptions {
    KmeansOptions {
        k,
        init,
        restarts: 3,
        seed,
    }
}

const CENTRES: [[f32; 2]; 4] = [[12.0, 16.0], [40.0, 90.0], [120.0, 60.0], [300.0, 280.0]];

/// Well-separated clusters (±5 % jitter): both inits must find every centre within 3 %.
#[test]
fn recovers_separated_clusters() {
    let boxes = synthetic_boxes(20_000, &CENTRES, 0.05, [416.0, 416.0], 7);
    for init in [Init::KmeansPlusPlus, Init::Darknet] {
        let r = calc_anchors(&boxes, &opts(4, init, 1)).unwrap();
        assert_eq!(r.anchors.len(), 4);
        for (a, c) in r.anchors.iter().zip(CENTRES.iter()) {
            for j in 0..2 {
                let rel = (a[j] - c[j]).abs() / c[j];
                assert!(rel < 0.03, "{init}: anchor {a:?} vs centre {c:?}");
            }
        }
        assert_eq!(r.counts.iter().sum::<usize>(), boxes.len());
        for &n in &r.counts {
            assert!((4000..6000).contains(&n), "{init}: counts {:?}", r.counts);
        }
        assert!(r.avg_iou > 90.0, "{init}: avg IoU {}", r.avg_iou);
    }
}

/// The average IoU is Darknet's `100 · Σ best IoU / n`, worked out by hand:
/// box (10,10): anchor (10,10) IoU 1;
/// box (20,20): vs (10,10) 100/400, vs (20,30) 400/(400+600−400) = 2/3 → 2/3;
/// box (10,40): vs (10,10) 100/400, vs (20,30) 300/(400+600−300) = 3/7 → 3/7.
#[test]
fn average_iou_matches_darknet_formula() {
    let boxes = [[10.0, 10.0], [20.0, 20.0], [10.0, 40.0]];
    let anchors = [[10.0, 10.0], [20.0, 30.0]];
    let (avg, counts) = average_iou(&boxes, &anchors);
    let expected = 100.0 * (1.0 + 2.0 / 3.0 + 3.0 / 7.0) / 3.0;
    assert!((avg - expected).abs() < 1e-4, "{avg} vs {expected}");
    assert_eq!(counts, vec![1, 2]);
    assert_eq!(format!("{avg:2.2}"), "69.84");
}

#[test]
fn same_seed_same_anchors() {
    let centres = [
        [20.0, 30.0],
        [60.0, 50.0],
        [100.0, 200.0],
        [250.0, 150.0],
        [350.0, 380.0],
    ];
    let boxes = synthetic_boxes(30_000, &centres, 0.6, [416.0, 416.0], 3);
    for init in [Init::KmeansPlusPlus, Init::Darknet] {
        let a = calc_anchors(&boxes, &opts(9, init, 42)).unwrap();
        let b = calc_anchors(&boxes, &opts(9, init, 42)).unwrap();
        assert_eq!(a.anchors, b.anchors);
        assert_eq!(a.avg_iou, b.avg_iou);
        assert_eq!(a.counts, b.counts);
        // Single-threaded pool: the chunked sums make the result independent of the thread count.
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap();
        let c = pool.install(|| calc_anchors(&boxes, &opts(9, init, 42)).unwrap());
        assert_eq!(a.anchors, c.anchors);
    }
}

/// Darknet's init takes k boxes of the data as centres (first k of a permutation: all distinct indices),
/// and the Lloyd loop converges with sorted anchors.
#[test]
fn darknet_init_picks_data_points() {
    let boxes: Vec<[f32; 2]> = (0..50)
        .map(|i| [1.0 + i as f32, 100.0 - i as f32])
        .collect();
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let c = darknet_init(&boxes, 9, &mut rng);
    assert_eq!(c.len(), 9);
    let mut ws: Vec<u32> = c.iter().map(|b| b[0] as u32).collect();
    for b in &c {
        assert!(boxes.contains(b));
    }
    ws.sort();
    ws.dedup();
    assert_eq!(ws.len(), 9, "distinct boxes");
    let r = calc_anchors(&boxes, &opts(9, Init::Darknet, 5)).unwrap();
    assert!(r.iterations < MAX_ITERATIONS);
    for w in r.anchors.windows(2) {
        assert!(w[0][0] * w[0][1] <= w[1][0] * w[1][1]);
    }
}

/// A Lloyd step by hand: centres (10,10) and (100,100); boxes (8,8),(12,12) go to the first, (90,90) and
/// (110,110) to the second; new centres are the means, then nothing changes (1 iteration counted).
#[test]
fn lloyd_step_by_hand() {
    let boxes = [[8.0, 8.0], [12.0, 12.0], [90.0, 90.0], [110.0, 110.0]];
    let r = lloyd(&boxes, vec![[10.0, 10.0], [100.0, 100.0]]);
    assert_eq!(r.assignments, vec![0, 0, 1, 1]);
    assert_eq!(r.centers, vec![[10.0, 10.0], [100.0, 100.0]]);
    // First expectation changes assignments of boxes 2, 3 (from 0), maximization, then converged.
    assert_eq!(r.iterations, 1);
    // k = 1: the mean of all boxes.
    let r = lloyd(&boxes, vec![[1.0, 1.0]]);
    assert_eq!(r.centers, vec![[55.0, 55.0]]);
}

#[test]
fn format_like_darknet() {
    let a = [[10.2, 14.0], [116.0, 90.0]];
    assert_eq!(format_anchors(&a, 416), "anchors =  10, 14, 116, 90");
    assert_eq!(
        format_anchors(&[[1.5, 2.25]], 13),
        "anchors = 1.5000,2.2500"
    );
}

#[test]
fn too_few_boxes_is_an_error() {
    let e = calc_anchors(&[[1.0, 2.0]; 3], &opts(9, Init::KmeansPlusPlus, 0)).unwrap_err();
    assert!(e.to_string().contains("only 3 boxes for 9 clusters"), "{e}");
}

#[test]
fn label_paths_like_darknet() {
    assert_eq!(
        replace_image_to_label("/d/VOC2007/JPEGImages/0001.jpg"),
        "/d/VOC2007/labels/0001.txt"
    );
    assert_eq!(
        replace_image_to_label("coco/images/train2017/x.png "),
        "coco/labels/train2017/x.txt"
    );
    assert_eq!(
        replace_image_to_label("data/obj/img.jpeg.JPG"),
        "data/obj/img.jpeg.txt"
    );
    assert_eq!(replace_image_to_label("a.jpg/b.bmp"), "a.jpg/b.txt");
}

#[test]
fn loads_data_file_and_label_dir() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir_all(d.join("img")).unwrap();
    std::fs::write(
        d.join("img/a.txt"),
        "0 0.5 0.5 0.25 0.5\n\n2 0.1 0.1 0.1 0.2\n",
    )
    .unwrap();
    std::fs::write(d.join("img/b.txt"), "1 0.5 0.5 1.0 1.0\n").unwrap();
    std::fs::write(
        d.join("train.txt"),
        "img/a.jpg\nimg/b.png\nimg/missing.jpg\n",
    )
    .unwrap();
    std::fs::write(
        d.join("obj.data"),
        "classes = 3\ntrain = train.txt\nvalid = train.txt\n",
    )
    .unwrap();
    let s = load_box_sizes(&BoxSource::Data(d.join("obj.data")), 416, 320).unwrap();
    assert_eq!(
        s.boxes,
        vec![
            [0.25 * 416.0, 0.5 * 320.0],
            [0.1f32 * 416.0, 0.2f32 * 320.0],
            [416.0, 320.0]
        ]
    );
    assert_eq!(s.class_counts, vec![1, 1, 1]);
    assert_eq!(s.missing.len(), 1);
    // The list file directly.
    let s2 = load_box_sizes(&BoxSource::Data(d.join("train.txt")), 416, 320).unwrap();
    assert_eq!(s2.boxes, s.boxes);
    let s3 = load_box_sizes(&BoxSource::Labels(d.join("img")), 416, 320).unwrap();
    assert_eq!(s3.boxes.len(), 3);
    // Darknet layout: `train = data/train.txt` listing `data/obj/x.jpg`, both relative to the .data folder.
    std::fs::create_dir_all(d.join("root/data/obj")).unwrap();
    std::fs::write(d.join("root/data/obj/x.txt"), "0 0.5 0.5 0.5 0.25\n").unwrap();
    std::fs::write(d.join("root/data/train.txt"), "data/obj/x.jpg\n").unwrap();
    std::fs::write(d.join("root/obj.data"), "train = data/train.txt\n").unwrap();
    let s4 = load_box_sizes(&BoxSource::Data(d.join("root/obj.data")), 416, 416).unwrap();
    assert_eq!(
        (s4.boxes.clone(), s4.missing.len()),
        (vec![[208.0, 104.0]], 0)
    );
}

#[test]
fn bad_label_line_names_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("x.txt"),
        "0 0.5 0.5 0.2 0.2\n0 0.5 oops 0.2 0.2\n",
    )
    .unwrap();
    let e = load_box_sizes(&BoxSource::Labels(dir.path().to_path_buf()), 416, 416).unwrap_err();
    let msg = format!("{e:#}");
    assert!(msg.contains("x.txt:2") && msg.contains("oops"), "{msg}");
    std::fs::write(dir.path().join("x.txt"), "0 0.5 0.5 0 0.2\n").unwrap();
    let msg = format!(
        "{:#}",
        load_box_sizes(&BoxSource::Labels(dir.path().to_path_buf()), 416, 416).unwrap_err()
    );
    assert!(msg.contains("x.txt:1") && msg.contains("positive"), "{msg}");
    std::fs::write(dir.path().join("x.txt"), "0 0.5\n").unwrap();
    let msg = format!(
        "{:#}",
        load_box_sizes(&BoxSource::Labels(dir.path().to_path_buf()), 416, 416).unwrap_err()
    );
    assert!(msg.contains("x.txt:1"), "{msg}");
}

#[test]
fn empty_dataset_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("x.txt"), "\n").unwrap();
    let msg = format!(
        "{:#}",
        load_box_sizes(&BoxSource::Labels(dir.path().to_path_buf()), 416, 416).unwrap_err()
    );
    assert!(msg.contains("no boxes"), "{msg}");
}

#[test]
fn plot_writes_png() {
    let boxes = synthetic_boxes(1000, &CENTRES, 0.1, [416.0, 416.0], 1);
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("a.png");
    plot::write_plot(&p, &boxes, &CENTRES, 416, 416).unwrap();
    let img = image::open(&p).unwrap().to_rgb8();
    assert_eq!(img.dimensions(), (800, 800));
    assert!(img
        .pixels()
        .any(|p| p.0 != [255, 255, 255] && p.0 != [0, 0, 0]));
}

fn read_pairs(p: &std::path::Path) -> Vec<[f32; 2]> {
    let b = std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    b.chunks_exact(8)
        .map(|c| {
            [
                f32::from_le_bytes([c[0], c[1], c[2], c[3]]),
                f32::from_le_bytes([c[4], c[5], c[6], c[7]]),
            ]
        })
        .collect()
}

/// Differential: from the same initial centres, Darknet's own kmeans functions (dumps made by
/// tools/anchors_darknet_ref/make_ref.sh) and ours give the same iteration count, anchors within 1e-5 relative
/// (centre sums: our f64 vs Darknet's float) and the average IoU within 0.001 points (Darknet sums in float).
#[test]
fn matches_darknet_kmeans_dumps() {
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/anchors/testdata/darknet_ref");
    let boxes = read_pairs(&dir.join("boxes.bin"));
    assert_eq!(boxes.len(), 3000);
    for k in [9, 6, 1] {
        let init = read_pairs(&dir.join(format!("init{k}.bin")));
        let text = std::fs::read_to_string(dir.join(format!("darknet_k{k}.txt"))).unwrap();
        let mut lines = text.lines();
        let iters: usize = lines
            .next()
            .unwrap()
            .strip_prefix("iterations ")
            .unwrap()
            .parse()
            .unwrap();
        let avg: f64 = lines
            .next()
            .unwrap()
            .strip_prefix("avg_iou ")
            .unwrap()
            .parse()
            .unwrap();
        let want: Vec<[f32; 2]> = lines
            .map(|l| {
                let v: Vec<f32> = l.split_whitespace().map(|x| x.parse().unwrap()).collect();
                [v[0], v[1]]
            })
            .collect();
        let run = lloyd(&boxes, init);
        let mut got = run.centers.clone();
        sort_by_area(&mut got);
        assert_eq!(run.iterations, iters, "k={k}");
        assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().zip(&want) {
            for j in 0..2 {
                assert!(
                    ((g[j] - w[j]) / w[j]).abs() < 1e-5,
                    "k={k}: {g:?} vs darknet {w:?}"
                );
            }
        }
        let (our_avg, _) = average_iou(&boxes, &got);
        assert!(
            (our_avg - avg).abs() < 1e-3,
            "k={k}: avg IoU {our_avg} vs darknet {avg}"
        );
    }
}

/// Boxes read elsewhere (relative w, h) are scaled to the network size and counted per class.
#[test]
fn relative_boxes_are_scaled_to_the_network() {
    let source = BoxSource::Relative {
        boxes: vec![(0, [0.25, 0.2]), (1, [0.5, 1.0]), (1, [1.5, 0.5])],
        images: 1,
        origin: "instances.json".into(),
    };
    let b = load_box_sizes(&source, 416, 320).unwrap();
    assert_eq!(b.boxes, vec![[104.0, 64.0], [208.0, 320.0], [624.0, 160.0]]);
    assert_eq!(
        (b.class_counts.clone(), b.oversized, b.files),
        (vec![1, 2], 1, 1)
    );
    let empty = BoxSource::Relative {
        boxes: vec![],
        images: 3,
        origin: "instances.json".into(),
    };
    let e = format!("{:#}", load_box_sizes(&empty, 416, 416).unwrap_err());
    assert!(
        e.contains("no boxes found in dataset instances.json"),
        "{e}"
    );
}
