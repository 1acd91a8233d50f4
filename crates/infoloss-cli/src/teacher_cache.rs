//! `infoloss teacher-cache`: a teacher's top-k log-probabilities from its logits (or its hidden states and output
//! layer), written to a crash-safe cache ([`infoloss_cache`]) block by block, with a progress bar; `--resume`
//! continues an interrupted run, `--verify` checks a cache whole.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use half::{bf16, f16};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use infoloss::ndarray::{ArrayView1, ArrayView2, Ix1, Ix2, s};
use infoloss_cache::{CacheReader, CacheWriter, Index, Logit, Mode};
use serde_json::json;

use crate::files::source::{Blocks, Input, Spec, Want};
use crate::files::tensor::StoredDType;

const ABOUT: &str = "Store a teacher's top-k log-probabilities for offline distillation: \
log_softmax(logits / T) at the k largest logits of each row, and the mass outside them, \
in safetensors shards with a JSON index (crash-safe: --resume continues a killed run).";

const EXAMPLES: &str = "Examples:
  infoloss teacher-cache cache/ --logits teacher_logits.npy --k 128 --mode packed6
  infoloss teacher-cache cache/ --hidden h.safetensors#hidden --weight lm_head.npy --k 64 --temperature 2
  infoloss teacher-cache cache/ --logits teacher_logits.npy --k 128 --mode packed6 --resume
  infoloss teacher-cache cache/ --verify";

/// `infoloss teacher-cache`.
#[derive(Debug, clap::Args)]
#[command(about = ABOUT, after_help = EXAMPLES)]
pub struct TeacherCacheArgs {
    /// The cache directory (created; must not hold a cache unless --resume or --verify).
    pub dir: PathBuf,
    /// Teacher logits (rows, V) or (..., V): .npy, .npz (FILE#NAME), .safetensors (FILE#NAME); f32, f64, f16,
    /// bf16, read a block of rows at a time (memory-mapped).
    #[arg(long, conflicts_with_all = ["hidden", "verify"])]
    pub logits: Option<String>,
    /// Teacher hidden states (rows, H), f32, with --weight (and --bias): the logits are computed a chunk of rows
    /// at a time, never whole.
    #[arg(long, requires = "weight", conflicts_with = "verify")]
    pub hidden: Option<String>,
    /// The teacher's output layer weight (V, H), f32.
    #[arg(long, requires = "hidden")]
    pub weight: Option<String>,
    /// The output layer's bias (V,), f32.
    #[arg(long, requires = "hidden")]
    pub bias: Option<String>,
    /// Entries kept per row.
    #[arg(long, default_value_t = 128)]
    pub k: usize,
    /// The temperature T of log_softmax(logits / T).
    #[arg(long, default_value_t = 1.0)]
    pub temperature: f64,
    /// Storage: `lossless` (u32 indices, f32 log-probabilities: 8k + 4 bytes per row) or `packedB`, B = 2..16
    /// (Rice-coded indices, B-bit log-probabilities, exact tail mass: about k·(log2(V/k) + 2.5 + B)/8 + 12 bytes).
    #[arg(long, default_value = "lossless")]
    pub mode: String,
    /// Rows per shard file.
    #[arg(long, default_value_t = 4096)]
    pub rows_per_shard: usize,
    /// Rows selected per block (memory: the block's logits as f32, twice, per thread).
    #[arg(long, default_value_t = 256)]
    pub block_rows: usize,
    /// Continue an interrupted run in DIR: the same input and options, from the first row not yet written.
    #[arg(long)]
    pub resume: bool,
    /// Check the cache in DIR whole (index, every shard's checksum and rows) and print its summary.
    #[arg(long)]
    pub verify: bool,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Runs `infoloss teacher-cache`.
pub fn run(a: TeacherCacheArgs) -> Result<(), String> {
    let start = Instant::now();
    if a.verify {
        let r = CacheReader::open(&a.dir).map_err(|e| e.to_string())?;
        r.verify().map_err(|e| e.to_string())?;
        return report(&a, r.index(), 0, start.elapsed(), 0);
    }
    let mode: Mode =
        a.mode.parse().map_err(|e: infoloss_cache::CacheError| format!("invalid --mode: {e}"))?;
    if a.block_rows == 0 {
        return Err("invalid --block-rows 0: must be at least 1".into());
    }
    let source = Source::open(&a)?;
    let (rows, vocab) = (source.rows(), source.vocab());
    let about = source.describe();
    let mut w = if a.resume && a.dir.join(infoloss_cache::INDEX_FILE).exists() {
        let w = CacheWriter::resume(&a.dir).map_err(|e| e.to_string())?;
        let ix = w.index();
        let same = ix.source == about
            && ix.k == a.k
            && ix.vocab_size == vocab
            && ix.temperature == a.temperature
            && ix.mode == mode;
        if !same {
            return Err(format!(
                "{}: --resume: the cache was written from `{}` with k = {}, T = {}, mode {}; this run reads `{about}` \
                 with k = {}, T = {}, mode {mode}",
                a.dir.display(),
                ix.source,
                ix.k,
                ix.temperature,
                ix.mode,
                a.k,
                a.temperature
            ));
        }
        w
    } else {
        let index = Index::new(vocab, a.k, a.temperature, mode, a.rows_per_shard, about)
            .map_err(|e| format!("invalid option: {e}"))?;
        if a.dir.join(infoloss_cache::INDEX_FILE).exists() {
            return Err(format!(
                "{}: already holds a teacher cache: pass --resume to continue it, or choose an empty directory",
                a.dir.display()
            ));
        }
        CacheWriter::create(&a.dir, index).map_err(|e| e.to_string())?
    };
    let first = w.rows_written();
    if w.index().complete {
        return report(&a, w.index(), 0, start.elapsed(), 0);
    }
    let bar = progress(rows as u64, first, a.quiet || a.json);
    let row_bytes = source.row_bytes();
    let mut blocks = source.blocks()?;
    let mut at = first as usize;
    while at < rows {
        let end = (at + a.block_rows).min(rows);
        source.push(&mut w, blocks.as_mut(), at..end)?;
        at = end;
        bar.set_position(at as u64);
        let secs = bar.elapsed().as_secs_f64().max(1e-9);
        bar.set_message(format!("{:.2} GB/s", ((at as u64 - first) * row_bytes as u64) as f64 / secs / 1e9));
    }
    bar.finish_and_clear();
    let index = w.finish().map_err(|e| e.to_string())?;
    report(&a, &index, (rows as u64 - first) * row_bytes as u64, start.elapsed(), first)
}

/// A progress bar with rows/s and GB/s on standard error (drawn only on a terminal).
fn progress(len: u64, pos: u64, quiet: bool) -> ProgressBar {
    let target = if quiet { ProgressDrawTarget::hidden() } else { ProgressDrawTarget::stderr() };
    let bar = ProgressBar::with_draw_target(Some(len), target);
    if let Ok(style) =
        ProgressStyle::with_template("{bar:30} {pos}/{len} rows  {per_sec}  {msg}  [{elapsed} < {eta}]")
    {
        bar.set_style(style);
    }
    bar.set_position(pos);
    // rows/s and bytes/s count this run's rows only, not the ones a resumed cache already held
    bar.reset_eta();
    bar.reset_elapsed();
    bar
}

fn report(
    a: &TeacherCacheArgs,
    ix: &Index,
    read_bytes: u64,
    took: Duration,
    resumed_at: u64,
) -> Result<(), String> {
    let bytes: u64 = ix.shards.iter().map(|s| s.bytes).sum();
    let per_row = if ix.rows > 0 { bytes as f64 / ix.rows as f64 } else { 0.0 };
    let secs = took.as_secs_f64();
    if a.json {
        let v = json!({
            "dir": a.dir.display().to_string(), "rows": ix.rows, "shards": ix.shards.len(), "k": ix.k,
            "vocab_size": ix.vocab_size, "temperature": ix.temperature, "mode": ix.mode.to_string(),
            "bytes": bytes, "bytes_per_row": per_row, "complete": ix.complete, "resumed_at_row": resumed_at,
            "seconds": secs, "input_gb_per_s": read_bytes as f64 / secs.max(1e-9) / 1e9, "source": ix.source,
        });
        println!("{}", serde_json::to_string_pretty(&v).map_err(|e| e.to_string())?);
    } else {
        println!(
            "{}: {} rows in {} shards, k = {} of V = {}, T = {}, {}: {:.1} bytes/row{}",
            a.dir.display(),
            ix.rows,
            ix.shards.len(),
            ix.k,
            ix.vocab_size,
            ix.temperature,
            ix.mode,
            per_row,
            if a.verify { " (verified)".to_string() } else { String::new() }
        );
        if read_bytes > 0 {
            println!(
                "read {:.2} GB in {:.2} s ({:.2} GB/s){}",
                read_bytes as f64 / 1e9,
                secs,
                read_bytes as f64 / secs / 1e9,
                if resumed_at > 0 { format!(", resumed at row {resumed_at}") } else { String::new() }
            );
        }
    }
    Ok(())
}

/// Where the rows come from.
enum Source {
    Logits(Box<Logits>),
    Hidden(Box<Hidden>),
}

/// Hidden states and the output layer that turns them into logits.
struct Hidden {
    hidden: Input,
    weight: Input,
    bias: Option<Input>,
    label: String,
    rows: usize,
    h: usize,
    v: usize,
}

/// Logits, viewed in place when stored row-major in a native float type.
struct Logits {
    input: Input,
    rows: usize,
    v: usize,
}

fn open(arg: &str) -> Result<Input, String> {
    Input::open(&Spec::parse(arg))
}

/// `(rows, last)` of a shape: the leading dimensions flattened.
fn rows_of(shape: &[usize], label: &str, what: &str) -> Result<(usize, usize), String> {
    match shape.split_last() {
        Some((&v, lead)) if !lead.is_empty() => Ok((lead.iter().product(), v)),
        _ => Err(format!("{label}: {what} must have at least 2 dimensions (rows, ...), got shape {shape:?}")),
    }
}

impl Source {
    fn open(a: &TeacherCacheArgs) -> Result<Source, String> {
        if let Some(l) = &a.logits {
            let input = open(l)?;
            let t = input.head(Want::Floats)?;
            if !t.dtype.is_float() {
                return Err(format!("{}: logits must be floating point, got {}", input.label, t.dtype));
            }
            let (rows, v) = rows_of(&t.shape, &input.label, "logits")?;
            return Ok(Source::Logits(Box::new(Logits { input, rows, v })));
        }
        let (Some(h), Some(w)) = (&a.hidden, &a.weight) else {
            return Err(
                "give the teacher as --logits FILE, or as --hidden FILE --weight FILE [--bias FILE]".into()
            );
        };
        let (hidden, weight) = (open(h)?, open(w)?);
        let bias = a.bias.as_deref().map(open).transpose()?;
        let hs = hidden.head(Want::Floats)?.shape;
        let ws = weight.head(Want::Floats)?.shape;
        let (rows, hd) = rows_of(&hs, &hidden.label, "hidden")?;
        if ws.len() != 2 || ws[1] != hd {
            return Err(format!(
                "{}: weight of shape {ws:?} must be (V, H) with H = {hd}, the last dimension of hidden {hs:?}",
                weight.label
            ));
        }
        if let Some(b) = &bias {
            let bs = b.head(Want::Floats)?.shape;
            if bs != [ws[0]] {
                return Err(format!(
                    "{}: bias of shape {bs:?} must be ({},), as weight {ws:?}",
                    b.label, ws[0]
                ));
            }
        }
        let label = format!(
            "hidden {} {hs:?} × weight {} {ws:?}{}",
            hidden.label,
            weight.label,
            bias.as_ref().map(|b| format!(" + bias {}", b.label)).unwrap_or_default()
        );
        Ok(Source::Hidden(Box::new(Hidden { hidden, weight, bias, label, rows, h: hd, v: ws[0] })))
    }

    fn rows(&self) -> usize {
        match self {
            Source::Logits(l) => l.rows,
            Source::Hidden(h) => h.rows,
        }
    }

    fn vocab(&self) -> usize {
        match self {
            Source::Logits(l) => l.v,
            Source::Hidden(h) => h.v,
        }
    }

    /// Bytes read per row (for the GB/s shown).
    fn row_bytes(&self) -> usize {
        match self {
            Source::Logits(l) => l.v * l.input.head(Want::Floats).map_or(4, |t| t.dtype.size()),
            Source::Hidden(h) => h.h * 4,
        }
    }

    /// What `--resume` compares: the input's name, shape and type.
    fn describe(&self) -> String {
        match self {
            Source::Logits(l) => {
                let (shape, dtype) = l.input.describe(Want::Floats);
                format!("logits {} {shape:?} {dtype}", l.input.label)
            }
            Source::Hidden(h) => h.label.clone(),
        }
    }

    /// The logits' bytes a block at a time (none for hidden states).
    fn blocks(&self) -> Result<Option<Blocks<'_>>, String> {
        match self {
            Source::Logits(l) => l.input.blocks(Want::Floats).map(Some),
            Source::Hidden(_) => Ok(None),
        }
    }

    /// Selects rows `range` and appends them to the cache (`blocks`: from [`Source::blocks`]).
    fn push(
        &self,
        w: &mut CacheWriter,
        blocks: Option<&mut Blocks<'_>>,
        range: std::ops::Range<usize>,
    ) -> Result<(), String> {
        let shift = |e: infoloss_cache::CacheError| shift_rows(&e.to_string(), range.start);
        match self {
            Source::Logits(l) => {
                let h = l.input.head(Want::Floats)?;
                let rb = l.v * h.dtype.size();
                let native = !h.fortran && !h.big_endian;
                let floats = [StoredDType::F32, StoredDType::F64, StoredDType::F16, StoredDType::BF16];
                let (n, v) = (range.len(), l.v);
                let bytes = match blocks {
                    Some(b) if native && floats.contains(&h.dtype) => {
                        Some(b.get(range.start * rb..range.end * rb)?)
                    }
                    _ => None,
                };
                match (h.dtype, bytes) {
                    (StoredDType::F32, Some(b)) => block::<f32>(w, b, n, v),
                    (StoredDType::F64, Some(b)) => block::<f64>(w, b, n, v),
                    (StoredDType::F16, Some(b)) => block::<f16>(w, b, n, v),
                    (StoredDType::BF16, Some(b)) => block::<bf16>(w, b, n, v),
                    _ => {
                        // column-major or big-endian: converted (whole, once per block's call)
                        let all = l.input.tensor(Want::Floats)?.into_floats::<f32>()?;
                        let all = all.to_shape((l.rows, l.v)).map_err(|e| e.to_string())?;
                        w.push_logits(all.slice(s![range.clone(), ..]))
                    }
                }
                .map_err(shift)
            }
            Source::Hidden(src) => {
                let Hidden { hidden, weight, bias, rows, h, v, .. } = &**src;
                let hid = hidden.tensor(Want::Floats)?.into_floats::<f32>()?;
                let hid = hid.to_shape((*rows, *h)).map_err(|e| e.to_string())?;
                let wt = weight.tensor(Want::Floats)?.into_floats::<f32>()?;
                let wt = wt.view().into_dimensionality::<Ix2>().map_err(|e| e.to_string())?;
                let b = match bias {
                    Some(b) => Some(b.tensor(Want::Floats)?.into_floats::<f32>()?),
                    None => None,
                };
                let bv: Option<ArrayView1<'_, f32>> = b
                    .as_ref()
                    .map(|b| b.view().into_dimensionality::<Ix1>())
                    .transpose()
                    .map_err(|e| e.to_string())?;
                debug_assert_eq!(wt.nrows(), *v);
                w.push_hidden(hid.slice(s![range.clone(), ..]), wt, bv).map_err(shift)
            }
        }
    }
}

/// `rows` rows of `v` elements of a row-major native array of `T` in `bytes`, pushed (viewed in place when
/// aligned).
fn block<T: Logit + bytemuck::Pod>(
    w: &mut CacheWriter,
    bytes: &[u8],
    rows: usize,
    v: usize,
) -> infoloss_cache::Result<()> {
    let owned: Vec<T>;
    let elems: &[T] = match bytemuck::try_cast_slice(bytes) {
        Ok(s) => s,
        Err(_) => {
            owned = bytes.chunks_exact(size_of::<T>()).map(bytemuck::pod_read_unaligned).collect();
            &owned
        }
    };
    let view = ArrayView2::from_shape((rows, v), elems).expect("the block's shape");
    w.push_logits(view)
}

/// A selection error's row counted from the start of the input.
fn shift_rows(msg: &str, start: usize) -> String {
    for prefix in ["select_topk: row ", "select_topk_linear: row "] {
        if let Some((n, rest)) = msg.strip_prefix(prefix).and_then(|r| r.split_once(':')) {
            if let Ok(n) = n.parse::<usize>() {
                return format!("teacher row {}:{rest}", n + start);
            }
        }
    }
    msg.to_string()
}
