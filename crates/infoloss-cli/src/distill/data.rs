//! The data of `infoloss distill`: the embedded UCI digits, or MNIST IDX files / a CSV given with `--data`;
//! the fixed train / labeled / test split; and the augmentation used by the UDA run.

use std::io::Read;
use std::path::Path;

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Normal};

/// The UCI optical handwritten digits (1,797 images of 8×8 pixels), as shipped by scikit-learn.
static DIGITS_CSV_GZ: &[u8] = include_bytes!("../../../../data/digits.csv.gz");

/// Images (row-major, scaled to [0, 1]) and labels.
#[derive(Debug, Clone)]
pub struct Dataset {
    /// Human-readable origin.
    pub name: String,
    /// Image height (= width) in pixels.
    pub side: usize,
    /// Number of classes.
    pub classes: usize,
    /// `n × side²` pixels in [0, 1].
    pub pixels: Vec<f32>,
    /// `n` labels in `0..classes`.
    pub labels: Vec<u32>,
}

impl Dataset {
    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Pixels per image.
    pub fn dim(&self) -> usize {
        self.side * self.side
    }

    /// The rows `idx` as a flat pixel buffer and their labels.
    pub fn gather(&self, idx: &[usize]) -> (Vec<f32>, Vec<u32>) {
        let d = self.dim();
        let mut x = Vec::with_capacity(idx.len() * d);
        let mut y = Vec::with_capacity(idx.len());
        for &i in idx {
            x.extend_from_slice(&self.pixels[i * d..(i + 1) * d]);
            y.push(self.labels[i]);
        }
        (x, y)
    }
}

fn gunzip_if(bytes: Vec<u8>, path: &Path) -> Result<Vec<u8>, String> {
    let gz = bytes.starts_with(&[0x1f, 0x8b]);
    if !gz {
        return Ok(bytes);
    }
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(&bytes[..])
        .read_to_end(&mut out)
        .map_err(|e| format!("{}: not a valid gzip file: {e}", path.display()))?;
    Ok(out)
}

/// Parses CSV rows of numbers; `label_first` says where the label column is.
fn parse_csv(text: &str, origin: &str, label_first: bool) -> Result<(Vec<Vec<f32>>, Vec<u32>), String> {
    let mut rows = Vec::new();
    let mut labels = Vec::new();
    for (ln, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        let nums: Result<Vec<f64>, _> = fields.iter().map(|f| f.parse::<f64>()).collect();
        let nums = match nums {
            Ok(n) => n,
            Err(_) if ln == 0 => continue, // a header row
            Err(e) => return Err(format!("{origin}: line {}: not a number: {e}", ln + 1)),
        };
        if nums.len() < 2 {
            return Err(format!("{origin}: line {}: expected a label and at least one pixel", ln + 1));
        }
        let (label, px) =
            if label_first { (nums[0], &nums[1..]) } else { (nums[nums.len() - 1], &nums[..nums.len() - 1]) };
        if label < 0.0 || label.fract() != 0.0 || label > 1e6 {
            return Err(format!("{origin}: line {}: label {label} is not a class index", ln + 1));
        }
        if let Some(bad) = px.iter().find(|v| !v.is_finite()) {
            return Err(format!("{origin}: line {}: pixel value {bad} is not finite", ln + 1));
        }
        if let Some(first) = rows.first().map(|r: &Vec<f32>| r.len())
            && first != px.len()
        {
            return Err(format!(
                "{origin}: line {}: {} pixels, but earlier rows have {first}",
                ln + 1,
                px.len()
            ));
        }
        rows.push(px.iter().map(|&v| v as f32).collect());
        labels.push(label as u32);
    }
    if rows.is_empty() {
        return Err(format!("{origin}: no data rows"));
    }
    Ok((rows, labels))
}

fn finish(name: String, rows: Vec<Vec<f32>>, labels: Vec<u32>) -> Result<Dataset, String> {
    let dim = rows[0].len();
    let side = (dim as f64).sqrt().round() as usize;
    if side * side != dim {
        return Err(format!("{name}: {dim} pixels per image is not a square image"));
    }
    let max = rows.iter().flatten().fold(0f32, |m, &v| m.max(v.abs()));
    let scale = if max > 0.0 { 1.0 / max } else { 1.0 };
    let classes = labels.iter().copied().max().map_or(0, |m| m as usize + 1);
    if classes < 2 {
        return Err(format!("{name}: need at least 2 classes, found {classes}"));
    }
    let pixels = rows.into_iter().flatten().map(|v| v * scale).collect();
    Ok(Dataset { name, side, classes, pixels, labels })
}

/// The embedded digits.
pub fn embedded_digits() -> Result<Dataset, String> {
    let text = gunzip_if(DIGITS_CSV_GZ.to_vec(), Path::new("embedded digits.csv.gz"))?;
    let text = String::from_utf8(text).map_err(|e| format!("embedded digits: {e}"))?;
    let (rows, labels) = parse_csv(&text, "embedded digits", false)?;
    finish("UCI digits (embedded, 8x8)".into(), rows, labels)
}

fn read(path: &Path) -> Result<Vec<u8>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
    gunzip_if(bytes, path)
}

fn be_u32(b: &[u8], at: usize, path: &Path) -> Result<usize, String> {
    b.get(at..at + 4)
        .map(|s| u32::from_be_bytes([s[0], s[1], s[2], s[3]]) as usize)
        .ok_or_else(|| format!("{}: truncated IDX header", path.display()))
}

fn find_idx(dir: &Path, stem: &str) -> Option<std::path::PathBuf> {
    [
        stem.to_string(),
        format!("{stem}.gz"),
        stem.replace("-idx", ".idx"),
        format!("{}.gz", stem.replace("-idx", ".idx")),
    ]
    .into_iter()
    .map(|n| dir.join(n))
    .find(|p| p.exists())
}

/// MNIST IDX files in a directory (`train-images-idx3-ubyte[.gz]` and `train-labels-idx1-ubyte[.gz]`).
pub fn mnist_dir(dir: &Path) -> Result<Dataset, String> {
    let ip = find_idx(dir, "train-images-idx3-ubyte")
        .ok_or_else(|| format!("{}: no train-images-idx3-ubyte[.gz] in this directory", dir.display()))?;
    let lp = find_idx(dir, "train-labels-idx1-ubyte")
        .ok_or_else(|| format!("{}: no train-labels-idx1-ubyte[.gz] in this directory", dir.display()))?;
    let img = read(&ip)?;
    let lab = read(&lp)?;
    if be_u32(&img, 0, &ip)? != 0x0803 {
        return Err(format!("{}: not an IDX image file (magic 0x00000803 expected)", ip.display()));
    }
    if be_u32(&lab, 0, &lp)? != 0x0801 {
        return Err(format!("{}: not an IDX label file (magic 0x00000801 expected)", lp.display()));
    }
    let (n, h, w) = (be_u32(&img, 4, &ip)?, be_u32(&img, 8, &ip)?, be_u32(&img, 12, &ip)?);
    let nl = be_u32(&lab, 4, &lp)?;
    if n != nl {
        return Err(format!("{} has {n} images but {} has {nl} labels", ip.display(), lp.display()));
    }
    if h != w {
        return Err(format!("{}: images are {h}x{w}; only square images are supported", ip.display()));
    }
    let need = n.checked_mul(h * w).and_then(|v| v.checked_add(16)).ok_or("IDX size overflows")?;
    if img.len() < need || lab.len() < 8 + n {
        return Err(format!("{}: truncated (expected {n} images of {h}x{w})", ip.display()));
    }
    let rows = (0..n)
        .map(|i| img[16 + i * h * w..16 + (i + 1) * h * w].iter().map(|&b| b as f32).collect())
        .collect();
    finish(format!("MNIST IDX ({})", dir.display()), rows, lab[8..8 + n].iter().map(|&b| b as u32).collect())
}

/// Loads `--data PATH`: a directory of MNIST IDX files, or a CSV file (label, pixels…; `.csv.gz` accepted).
pub fn load(path: Option<&Path>) -> Result<Dataset, String> {
    let Some(path) = path else { return embedded_digits() };
    if path.is_dir() {
        return mnist_dir(path);
    }
    let text = read(path)?;
    let text = String::from_utf8(text).map_err(|_| format!("{}: not a UTF-8 CSV file", path.display()))?;
    let (rows, labels) = parse_csv(&text, &path.display().to_string(), true)?;
    finish(format!("CSV ({})", path.display()), rows, labels)
}

/// The fixed split of one seed.
#[derive(Debug, Clone)]
pub struct Split {
    /// All training rows (labels used by the teacher and the full-label student).
    pub train: Vec<usize>,
    /// The small labeled subset (class-balanced where possible).
    pub labeled: Vec<usize>,
    /// Training rows outside the labeled subset (their labels are never used by the students).
    pub unlabeled: Vec<usize>,
    /// Held-out test rows.
    pub test: Vec<usize>,
}

/// Shuffles with `seed`, holds out `test` rows, and takes `labeled` class-balanced rows from the rest.
pub fn split(data: &Dataset, test: usize, labeled: usize, seed: u64) -> Result<Split, String> {
    let n = data.len();
    if test >= n {
        return Err(format!("cannot hold out {test} test rows from {n} images"));
    }
    let mut idx: Vec<usize> = (0..n).collect();
    idx.shuffle(&mut StdRng::seed_from_u64(seed ^ SPLIT_SALT));
    let test_rows = idx[..test].to_vec();
    let train = idx[test..].to_vec();
    if labeled == 0 || labeled > train.len() {
        return Err(format!("--labeled {labeled} must be between 1 and the {} training images", train.len()));
    }
    let per_class = labeled.div_ceil(data.classes);
    let mut counts = vec![0usize; data.classes];
    let mut lab = Vec::with_capacity(labeled);
    for &i in &train {
        let c = data.labels[i] as usize;
        if counts[c] < per_class && lab.len() < labeled {
            counts[c] += 1;
            lab.push(i);
        }
    }
    for &i in &train {
        if lab.len() >= labeled {
            break;
        }
        if !lab.contains(&i) {
            lab.push(i);
        }
    }
    let unl = train.iter().copied().filter(|i| !lab.contains(i)).collect();
    Ok(Split { train, labeled: lab, unlabeled: unl, test: test_rows })
}

/// Mixed into the seed so the split's shuffle differs from the weight initialization's stream.
const SPLIT_SALT: u64 = 0x5eed_5011;

/// UDA's augmentation: every image shifted by up to `max_shift` pixels in each direction (zero fill), plus
/// Gaussian pixel noise of standard deviation `noise`, clamped to [0, 1].
pub fn augment(x: &[f32], side: usize, max_shift: i32, noise: f32, rng: &mut StdRng) -> Vec<f32> {
    let d = side * side;
    let normal = Normal::new(0.0f32, noise.max(0.0)).ok();
    let mut out = vec![0f32; x.len()];
    for (src, dst) in x.chunks_exact(d).zip(out.chunks_exact_mut(d)) {
        let dy = rng.random_range(-max_shift..=max_shift);
        let dx = rng.random_range(-max_shift..=max_shift);
        for r in 0..side as i32 {
            for c in 0..side as i32 {
                let (sr, sc) = (r - dy, c - dx);
                let v = if sr >= 0 && sc >= 0 && sr < side as i32 && sc < side as i32 {
                    src[(sr as usize) * side + sc as usize]
                } else {
                    0.0
                };
                let n = normal.as_ref().map_or(0.0, |nd| nd.sample(rng));
                dst[(r as usize) * side + c as usize] = (v + n).clamp(0.0, 1.0);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_digits_are_the_uci_set() {
        let d = embedded_digits().unwrap();
        assert_eq!((d.len(), d.side, d.classes), (1797, 8, 10));
        assert_eq!(d.labels[..5], [0, 1, 2, 3, 4]);
        // first image, first row: 0,0,5,13,9,1,0,0 scaled by 1/16
        assert_eq!(d.pixels[2], 5.0 / 16.0);
        assert!(d.pixels.iter().all(|&v| (0.0..=1.0).contains(&v)));
    }

    #[test]
    fn split_is_deterministic_and_disjoint() {
        let d = embedded_digits().unwrap();
        let a = split(&d, 500, 100, 7).unwrap();
        let b = split(&d, 500, 100, 7).unwrap();
        assert_eq!(a.test, b.test);
        assert_eq!(a.labeled, b.labeled);
        assert_eq!((a.test.len(), a.train.len(), a.labeled.len(), a.unlabeled.len()), (500, 1297, 100, 1197));
        let mut per = [0; 10];
        for &i in &a.labeled {
            per[d.labels[i] as usize] += 1;
        }
        assert_eq!(per, [10; 10]);
        assert!(a.labeled.iter().all(|i| !a.test.contains(i) && !a.unlabeled.contains(i)));
        assert_ne!(split(&d, 500, 100, 8).unwrap().test, a.test);
        assert!(split(&d, 500, 0, 7).is_err());
        assert!(split(&d, 2000, 10, 7).is_err());
    }

    #[test]
    fn csv_errors_name_the_line() {
        let e = parse_csv("1,0,0\n2,0,x\n", "f.csv", true).unwrap_err();
        assert!(e.contains("f.csv: line 2"), "{e}");
        let e = parse_csv("1,0,0\n2,0\n", "f.csv", true).unwrap_err();
        assert!(e.contains("1 pixels, but earlier rows have 2"), "{e}");
    }

    #[test]
    fn augmentation_shifts_and_keeps_range() {
        let mut rng = StdRng::seed_from_u64(1);
        let mut img = vec![0f32; 64];
        img[3 * 8 + 3] = 1.0;
        let out = augment(&img, 8, 1, 0.0, &mut rng);
        let pos = out.iter().position(|&v| v == 1.0).unwrap();
        let (r, c) = (pos / 8, pos % 8);
        assert!((2..=4).contains(&r) && (2..=4).contains(&c));
        let noisy = augment(&img, 8, 0, 0.1, &mut rng);
        assert!(noisy.iter().all(|&v| (0.0..=1.0).contains(&v)));
        assert!(noisy.iter().filter(|&&v| v > 0.0 && v < 1.0).count() > 10);
    }
}
