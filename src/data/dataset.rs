//! Datasets: what a path holds (IDX files, CIFAR binary batches, or an image folder), opened as
//! one interface the loader reads from.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{cifar, idx, Image};
use crate::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    Train,
    Test,
}

/// Per-channel mean and standard deviation used to normalise the views.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Normalization {
    pub mean: [f32; 3],
    pub std: [f32; 3],
}

impl Normalization {
    pub const IMAGENET: Self = Self {
        mean: [0.485, 0.456, 0.406],
        std: [0.229, 0.224, 0.225],
    };
}

/// How a run's images become network inputs: the view side, channels and normalisation.
/// Saved with checkpoints so that evaluation and embedding see images as training did.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ViewSpec {
    pub side: usize,
    pub channels: usize,
    pub normalization: Normalization,
}

pub trait Dataset: Send + Sync {
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Decodes image `i`; an unreadable or corrupt image is an `Err` with the reason.
    fn load(&self, i: usize) -> std::result::Result<Image, String>;
    /// The class of image `i`, where the dataset has labels.
    fn label(&self, i: usize) -> Option<u32>;
    /// Classes (0 when unlabelled).
    fn classes(&self) -> usize;
    /// The classes' names where the dataset has them (folder names, CIFAR's and
    /// Fashion-MNIST's), else none.
    fn class_names(&self) -> Vec<String>;
    /// Channels of the network's input: 1 for grayscale datasets, else 3.
    fn channels(&self) -> usize;
    /// A name for image `i` in reports (its path, or its index).
    fn describe(&self, i: usize) -> String;
    fn normalization(&self) -> Normalization;
    /// The largest width and height of any image (bounds the device's source buffer).
    fn max_side(&self) -> usize;
}

/// Images of one size held decoded in memory (IDX and CIFAR).
pub struct InMemory {
    name: String,
    width: usize,
    height: usize,
    channels: usize,
    pixels: Vec<u8>,
    labels: Option<Vec<u32>>,
    classes: usize,
    class_names: Vec<String>,
    norm: Normalization,
}

impl InMemory {
    pub fn new(
        name: String,
        [width, height, channels]: [usize; 3],
        pixels: Vec<u8>,
        labels: Option<Vec<u32>>,
        norm: Option<Normalization>,
    ) -> Result<Self> {
        let per = width * height * channels;
        let n = pixels.len() / per.max(1);
        if per == 0 || pixels.len() != n * per || labels.as_ref().is_some_and(|l| l.len() != n) {
            return Err(Error::Shape {
                op: "dataset".into(),
                msg: format!("{name}: pixels and labels do not describe the same images"),
            });
        }
        let classes = labels
            .as_ref()
            .and_then(|l| l.iter().max())
            .map_or(0, |&m| m as usize + 1);
        let norm = norm.unwrap_or_else(|| measured_normalization(&pixels, channels));
        Ok(Self {
            name,
            width,
            height,
            channels,
            pixels,
            labels,
            classes,
            class_names: Vec::new(),
            norm,
        })
    }

    /// The same images with their classes named.
    pub fn with_class_names(self, names: Vec<String>) -> Self {
        Self {
            class_names: names,
            ..self
        }
    }
}

/// The per-channel mean and std of 8-bit interleaved pixels, scaled to [0, 1].
fn measured_normalization(pixels: &[u8], channels: usize) -> Normalization {
    let mut sum = [0f64; 3];
    let mut sq = [0f64; 3];
    for px in pixels.chunks_exact(channels) {
        for (c, &v) in px.iter().enumerate() {
            let v = f64::from(v) / 255.0;
            sum[c] += v;
            sq[c] += v * v;
        }
    }
    let n = (pixels.len() / channels).max(1) as f64;
    let mut norm = Normalization {
        mean: [0.0; 3],
        std: [1.0; 3],
    };
    for c in 0..3 {
        let k = c.min(channels - 1);
        let mean = sum[k] / n;
        norm.mean[c] = mean as f32;
        norm.std[c] = ((sq[k] / n - mean * mean).max(1e-12)).sqrt() as f32;
    }
    norm
}

impl Dataset for InMemory {
    fn len(&self) -> usize {
        self.pixels.len() / (self.width * self.height * self.channels)
    }
    fn load(&self, i: usize) -> std::result::Result<Image, String> {
        let per = self.width * self.height * self.channels;
        let bytes = self.pixels[i * per..(i + 1) * per].to_vec();
        Image::new(self.width, self.height, self.channels, bytes).map_err(|e| e.to_string())
    }
    fn label(&self, i: usize) -> Option<u32> {
        self.labels.as_ref().map(|l| l[i])
    }
    fn classes(&self) -> usize {
        self.classes
    }
    fn class_names(&self) -> Vec<String> {
        self.class_names.clone()
    }
    fn channels(&self) -> usize {
        self.channels
    }
    fn describe(&self, i: usize) -> String {
        format!("{} image {i}", self.name)
    }
    fn normalization(&self) -> Normalization {
        self.norm
    }
    fn max_side(&self) -> usize {
        self.width.max(self.height)
    }
}

/// PNG, JPEG and WebP files in a folder: one subfolder per class, or flat without labels.
pub struct Folder {
    files: Vec<PathBuf>,
    labels: Option<Vec<u32>>,
    class_names: Vec<String>,
    channels: usize,
    max_side: usize,
}

const IMAGE_EXTENSIONS: [&str; 4] = ["png", "jpg", "jpeg", "webp"];

fn is_image(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut entries = std::fs::read_dir(dir)
        .map_err(|e| Error::File {
            path: dir.to_path_buf(),
            msg: e.to_string(),
        })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect::<Vec<_>>();
    entries.sort();
    Ok(entries)
}

impl Folder {
    /// Opens `dir`; images are decoded lazily and those larger than `max_side` downscaled.
    pub fn open(dir: &Path, max_side: usize) -> Result<Self> {
        let entries = sorted_entries(dir)?;
        let class_dirs: Vec<&PathBuf> = entries.iter().filter(|p| p.is_dir()).collect();
        let (files, labels) = if class_dirs.is_empty() {
            (
                entries.iter().filter(|p| is_image(p)).cloned().collect(),
                None,
            )
        } else {
            let mut files = Vec::new();
            let mut labels = Vec::new();
            for (class, d) in class_dirs.iter().enumerate() {
                for f in sorted_entries(d)?.into_iter().filter(|p| is_image(p)) {
                    files.push(f);
                    labels.push(class as u32);
                }
            }
            (files, Some(labels))
        };
        if files.is_empty() {
            return Err(Error::File {
                path: dir.to_path_buf(),
                msg: "no PNG, JPEG or WebP images here or in its subfolders".into(),
            });
        }
        // Grayscale only when the first readable images all are.
        let sample: Vec<Image> = files
            .iter()
            .take(16)
            .filter_map(|f| std::fs::read(f).ok())
            .filter_map(|b| Image::decode(&b, max_side).ok())
            .collect();
        let channels = if !sample.is_empty() && sample.iter().all(|i| i.channels == 1) {
            1
        } else {
            3
        };
        let class_names = class_dirs
            .iter()
            .map(|d| {
                d.file_name()
                    .map_or(String::new(), |n| n.to_string_lossy().into_owned())
            })
            .collect();
        Ok(Self {
            class_names,
            files,
            labels,
            channels,
            max_side,
        })
    }
}

impl Dataset for Folder {
    fn len(&self) -> usize {
        self.files.len()
    }
    fn load(&self, i: usize) -> std::result::Result<Image, String> {
        let bytes = std::fs::read(&self.files[i]).map_err(|e| e.to_string())?;
        Image::decode(&bytes, self.max_side)
    }
    fn label(&self, i: usize) -> Option<u32> {
        self.labels.as_ref().map(|l| l[i])
    }
    fn classes(&self) -> usize {
        self.class_names.len()
    }
    fn class_names(&self) -> Vec<String> {
        self.class_names.clone()
    }
    fn channels(&self) -> usize {
        self.channels
    }
    fn describe(&self, i: usize) -> String {
        self.files[i].display().to_string()
    }
    fn normalization(&self) -> Normalization {
        Normalization::IMAGENET
    }
    fn max_side(&self) -> usize {
        self.max_side
    }
}

/// Where the default dataset lives: Debian's `dataset-fashion-mnist` when installed, else the
/// sample shipped in assets/.
pub fn default_dataset_path() -> PathBuf {
    let debian = PathBuf::from("/usr/share/datasets/fashion-mnist");
    if debian.join("train-images-idx3-ubyte.gz").exists() {
        debian
    } else {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("assets/fashion-mnist-sample")
    }
}

fn find_file(dir: &Path, names: &[&str]) -> Option<PathBuf> {
    names.iter().map(|n| dir.join(n)).find(|p| p.is_file())
}

fn open_idx(dir: &Path, prefix: &str) -> Result<Option<InMemory>> {
    let images = find_file(
        dir,
        &[
            &format!("{prefix}-images-idx3-ubyte.gz"),
            &format!("{prefix}-images-idx3-ubyte"),
            &format!("{prefix}-images.idx3-ubyte"),
        ],
    );
    let Some(images) = images else {
        return Ok(None);
    };
    let imgs = idx::read_idx(&images)?;
    if imgs.dims.len() != 3 {
        return Err(Error::File {
            path: images,
            msg: format!(
                "expected [N, H, W] images, the IDX file has dims {:?}",
                imgs.dims
            ),
        });
    }
    let labels = find_file(
        dir,
        &[
            &format!("{prefix}-labels-idx1-ubyte.gz"),
            &format!("{prefix}-labels-idx1-ubyte"),
            &format!("{prefix}-labels.idx1-ubyte"),
        ],
    )
    .map(|p| idx::read_idx(&p).map(|l| (p, l)))
    .transpose()?;
    let labels = match labels {
        Some((p, l)) if l.dims != [imgs.dims[0]] => {
            return Err(Error::File {
                path: p,
                msg: format!("{:?} labels for {} images", l.dims, imgs.dims[0]),
            })
        }
        Some((_, l)) => Some(l.data.iter().map(|&b| u32::from(b)).collect()),
        None => None,
    };
    let names = known_idx_class_names(dir);
    InMemory::new(
        images.display().to_string(),
        [imgs.dims[2], imgs.dims[1], 1],
        imgs.data,
        labels,
        None,
    )
    .map(|d| Some(d.with_class_names(names)))
}

const FASHION_MNIST_CLASSES: [&str; 10] = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
];

const CIFAR10_CLASSES: [&str; 10] = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
];

/// IDX files carry no class names: Fashion-MNIST's and MNIST's are known by the folder's name.
fn known_idx_class_names(dir: &Path) -> Vec<String> {
    let name = dir.to_string_lossy().to_lowercase();
    if name.contains("fashion") {
        FASHION_MNIST_CLASSES
            .iter()
            .map(|s| s.to_string())
            .collect()
    } else if name.contains("mnist") {
        (0..10).map(|d| d.to_string()).collect()
    } else {
        Vec::new()
    }
}

/// CIFAR's names: from the batches' meta file where it is there (batches.meta.txt, or
/// fine_label_names.txt for CIFAR-100), else CIFAR-10's for its layout.
fn cifar_class_names(dir: &Path, label_bytes: usize) -> Vec<String> {
    let meta = if label_bytes == 1 {
        "batches.meta.txt"
    } else {
        "fine_label_names.txt"
    };
    match std::fs::read_to_string(dir.join(meta)) {
        Ok(text) => text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect(),
        Err(_) if label_bytes == 1 => CIFAR10_CLASSES.iter().map(|s| s.to_string()).collect(),
        Err(_) => Vec::new(),
    }
}

fn open_cifar(dir: &Path, split: Split) -> Result<Option<InMemory>> {
    let dir = if dir.join("cifar-10-batches-bin").is_dir() {
        dir.join("cifar-10-batches-bin")
    } else {
        dir.to_path_buf()
    };
    let (files, label_bytes): (Vec<PathBuf>, usize) = if dir.join("data_batch_1.bin").is_file() {
        let files = match split {
            Split::Train => (1..=5)
                .map(|i| dir.join(format!("data_batch_{i}.bin")))
                .collect(),
            Split::Test => vec![dir.join("test_batch.bin")],
        };
        (files, 1)
    } else if dir.join("train.bin").is_file() {
        let name = match split {
            Split::Train => "train.bin",
            Split::Test => "test.bin",
        };
        (vec![dir.join(name)], 2)
    } else {
        return Ok(None);
    };
    let mut pixels = Vec::new();
    let mut labels = Vec::new();
    for f in &files {
        let (p, l) = cifar::read_batch(f, label_bytes)?;
        pixels.extend(p);
        labels.extend(l);
    }
    let names = cifar_class_names(&dir, label_bytes);
    InMemory::new(
        dir.display().to_string(),
        [cifar::SIDE, cifar::SIDE, 3],
        pixels,
        Some(labels),
        None,
    )
    .map(|d| Some(d.with_class_names(names)))
}

/// Opens the dataset at `path` for `split`: a folder with IDX files (`train-*` / `t10k-*`),
/// CIFAR-10 or CIFAR-100 binary batches, or images (with `train/` and `test/` subfolders where
/// there are splits). Folder images larger than `max_side` are downscaled when decoded.
pub fn open(path: &Path, split: Split, max_side: usize) -> Result<Arc<dyn Dataset>> {
    if !path.exists() {
        return Err(Error::File {
            path: path.to_path_buf(),
            msg: "no such dataset (give a folder of IDX files, CIFAR batches or images)".into(),
        });
    }
    let idx_prefix = match split {
        Split::Train => "train",
        Split::Test => "t10k",
    };
    if let Some(d) = open_idx(path, idx_prefix)? {
        return Ok(Arc::new(d));
    }
    if let Some(d) = open_cifar(path, split)? {
        return Ok(Arc::new(d));
    }
    if path.join("train-images-idx3-ubyte.gz").exists()
        || path.join("train-images-idx3-ubyte").exists()
    {
        return Err(Error::File {
            path: path.to_path_buf(),
            msg: "this IDX dataset has no t10k-* test files".into(),
        });
    }
    let split_dir = path.join(match split {
        Split::Train => "train",
        Split::Test => "test",
    });
    if split_dir.is_dir() {
        return Ok(Arc::new(Folder::open(&split_dir, max_side)?));
    }
    if split == Split::Test && path.join("train").is_dir() {
        return Err(Error::File {
            path: path.to_path_buf(),
            msg: "this image folder has train/ but no test/ split".into(),
        });
    }
    Ok(Arc::new(Folder::open(path, max_side)?))
}

/// The first `count` images of `dataset` that decode, with their labels: the fixed probe sets
/// that a run draws (embedding.png, the live window's map). Unreadable images are passed over.
pub fn first_readable(dataset: &dyn Dataset, count: usize) -> (Vec<Image>, Vec<Option<u32>>) {
    (0..dataset.len())
        .filter_map(|i| dataset.load(i).ok().map(|img| (img, dataset.label(i))))
        .take(count)
        .unzip()
}

/// The first `n` images of a dataset (all of them when it has fewer).
pub struct Subset {
    inner: Arc<dyn Dataset>,
    n: usize,
}

impl Subset {
    pub fn new(inner: Arc<dyn Dataset>, n: usize) -> Self {
        let n = n.min(inner.len());
        Self { inner, n }
    }
}

impl Dataset for Subset {
    fn len(&self) -> usize {
        self.n
    }
    fn load(&self, i: usize) -> std::result::Result<Image, String> {
        self.inner.load(i)
    }
    fn label(&self, i: usize) -> Option<u32> {
        self.inner.label(i)
    }
    fn classes(&self) -> usize {
        self.inner.classes()
    }
    fn class_names(&self) -> Vec<String> {
        self.inner.class_names()
    }
    fn channels(&self) -> usize {
        self.inner.channels()
    }
    fn describe(&self, i: usize) -> String {
        self.inner.describe(i)
    }
    fn normalization(&self) -> Normalization {
        self.inner.normalization()
    }
    fn max_side(&self) -> usize {
        self.inner.max_side()
    }
}
