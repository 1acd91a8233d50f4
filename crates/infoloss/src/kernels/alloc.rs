//! Output buffers: zeroed without a pass over the memory, fallible, and backed by transparent huge
//! pages where the operating system offers them.
//!
//! A loss that returns a gradient of the input's size writes every byte of a fresh allocation once.
//! With 4 KiB pages the first touch of each page costs a page fault (about 2–3 µs each here: ~0.3 s
//! for the 500 MiB gradient of a 4096 × 32000 `f32` batch, several times the cost of writing it).
//! [`zeroed`] asks the allocator for zeroed memory (`calloc`, which maps fresh zero pages without
//! writing them) and, on Linux, advises the kernel to back the range with 2 MiB transparent huge
//! pages (`madvise(MADV_HUGEPAGE)`, honoured when
//! `/sys/kernel/mm/transparent_hugepage/enabled` is `always` or `madvise`), so the same buffer
//! takes ~250 faults instead of ~128,000. The advice changes no contents and is ignored where it
//! is not supported. Setting the environment variable `INFOLOSS_NO_HUGEPAGES` (to anything) turns the
//! advice off, for systems where direct compaction on huge-page faults costs more than it saves.

use std::alloc::Layout;

use crate::base::{Error, Result};

/// Element types whose all-zero bit pattern is the value `+0.0`: `f32`, `f64`, `half::f16`,
/// `half::bf16` (crate-private, so no other type can claim it: the zeroed allocation relies on it).
pub(crate) trait ZeroBits: Copy {}
impl ZeroBits for f32 {}
impl ZeroBits for f64 {}
impl ZeroBits for half::f16 {}
impl ZeroBits for half::bf16 {}

/// Buffers at least this large (bytes) are advised to use huge pages.
const HUGE_MIN_BYTES: usize = 4 << 20;
const HUGE_PAGE: usize = 2 << 20;

/// `n` zeros, allocated zeroed (no pass over the memory) and fallibly: `None` when the size
/// overflows or the memory cannot be had.
pub(crate) fn zeroed<T: ZeroBits>(n: usize) -> Option<Vec<T>> {
    if n == 0 || std::mem::size_of::<T>() == 0 {
        return Some(Vec::new());
    }
    let layout = Layout::array::<T>(n).ok()?;
    // SAFETY: `layout` has a non-zero size (n > 0 and T is not zero-sized).
    let ptr = unsafe { std::alloc::alloc_zeroed(layout) }.cast::<T>();
    if ptr.is_null() {
        return None;
    }
    // SAFETY: `ptr` was allocated by the global allocator with the layout of `[T; n]`, which is the
    // layout `Vec<T>` with capacity `n` frees with; all `n` elements are initialized, because every
    // byte is zero and the all-zero bit pattern is a valid `T` (`ZeroBits`: +0.0 of an IEEE type).
    let mut v = unsafe { Vec::from_raw_parts(ptr, n, n) };
    advise_huge_pages(&mut v);
    Some(v)
}

/// `n` copies of `T::default()` for any element type: [`zeroed`] for `f32`, `f64`, `f16` and `bf16`
/// (whose default is `+0.0`, all bits zero), a fallible reserve and fill for anything else. `None`
/// when the memory cannot be had.
pub(crate) fn zeroed_default<T: Default + Clone + 'static>(n: usize) -> Option<Vec<T>> {
    use std::any::{Any, TypeId};
    fn cast<U: 'static, T: 'static>(v: Vec<U>) -> Option<Vec<T>> {
        (Box::new(v) as Box<dyn Any>).downcast::<Vec<T>>().ok().map(|b| *b)
    }
    let id = TypeId::of::<T>();
    if id == TypeId::of::<f32>() {
        cast(zeroed::<f32>(n)?)
    } else if id == TypeId::of::<f64>() {
        cast(zeroed::<f64>(n)?)
    } else if id == TypeId::of::<half::f16>() {
        cast(zeroed::<half::f16>(n)?)
    } else if id == TypeId::of::<half::bf16>() {
        cast(zeroed::<half::bf16>(n)?)
    } else {
        let mut v = Vec::new();
        v.try_reserve_exact(n).ok()?;
        v.resize(n, T::default());
        Some(v)
    }
}

/// Advises the kernel to back the 2 MiB-aligned interior of `buf` with transparent huge pages
/// (Linux; a no-op elsewhere and for buffers under 4 MiB). Call it before the first write.
pub(crate) fn advise_huge_pages<T>(buf: &mut [T]) {
    static OFF: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let bytes = std::mem::size_of_val(buf);
    if bytes < HUGE_MIN_BYTES || *OFF.get_or_init(|| std::env::var_os("INFOLOSS_NO_HUGEPAGES").is_some()) {
        return;
    }
    let start = buf.as_mut_ptr() as usize;
    let first = start.next_multiple_of(HUGE_PAGE);
    let end = (start + bytes) / HUGE_PAGE * HUGE_PAGE;
    if end <= first {
        return;
    }
    #[cfg(target_os = "linux")]
    {
        // SAFETY: `[first, end)` lies inside the allocation behind `buf` (rounded inwards to whole
        // 2 MiB pages, so page-aligned as madvise requires) and we hold it mutably. MADV_HUGEPAGE only
        // changes how future page faults in the range are served; it never changes memory contents,
        // so no Rust invariant depends on it, and a failure (EINVAL where THP is absent) is harmless.
        unsafe {
            libc::madvise(first as *mut libc::c_void, end - first, libc::MADV_HUGEPAGE);
        }
    }
}

/// Buffers of at most this many elements go back to the thread's pool when dropped (larger ones
/// are freed, so a single huge row does not stay allocated for the life of the thread).
const POOL_MAX_ELEMS: usize = 1 << 22;
/// At most this many buffers are kept per thread.
const POOL_MAX_BUFS: usize = 8;

thread_local! {
    static POOL: std::cell::RefCell<Vec<Vec<f32>>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// A per-thread, reusable `f32` scratch buffer of a fixed length (the row and tile buffers of the
/// fast paths' parallel tasks).
///
/// A rayon task of the row drivers covers one or a few rows; allocating its scratch rows with
/// `vec![0f32; n]` on every task cost a `malloc`, a `memset` and, for rows of 128 KiB and more (at or
/// above glibc's `mmap` threshold), fresh pages and their faults on every row: 30–75 % of the
/// per-row time of the `bf16` cross-entropy on 32,000 classes. A `Scratch` takes a buffer from the
/// current thread's pool instead and gives it back when dropped.
///
/// Contents: [`Scratch::zeroed`] is all `+0.0`; [`Scratch::any`] holds unspecified (but initialized)
/// `f32` values, for buffers the caller overwrites completely before reading.
pub(crate) struct Scratch {
    buf: Vec<f32>,
    len: usize,
}

impl Scratch {
    /// A buffer of `n` elements with unspecified contents.
    pub(crate) fn any(n: usize) -> Scratch {
        let mut buf = POOL.with(|p| p.borrow_mut().pop()).unwrap_or_default();
        if buf.len() < n {
            buf.resize(n, 0.0);
        }
        Scratch { buf, len: n }
    }

    /// A buffer of `n` zeros.
    pub(crate) fn zeroed(n: usize) -> Scratch {
        let mut s = Scratch::any(n);
        s.fill(0.0);
        s
    }
}

impl std::ops::Deref for Scratch {
    type Target = [f32];
    fn deref(&self) -> &[f32] {
        self.buf.get(..self.len).unwrap_or_default()
    }
}

impl std::ops::DerefMut for Scratch {
    fn deref_mut(&mut self) -> &mut [f32] {
        self.buf.get_mut(..self.len).unwrap_or_default()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let buf = std::mem::take(&mut self.buf);
        if buf.capacity() == 0 || buf.len() > POOL_MAX_ELEMS {
            return;
        }
        // `try_with`: during thread teardown the pool may already be gone; the buffer is then freed
        let _ = POOL.try_with(|p| {
            let mut p = p.borrow_mut();
            if p.len() < POOL_MAX_BUFS {
                p.push(buf);
            }
        });
    }
}

/// `n` elements of `T::default()` (zero for the float types), allocated zeroed without a pass over the
/// memory and on huge pages where the system offers them ([`zeroed_default`]):
/// the buffer a fast kernel then writes once. [`Error::TooLarge`] naming `what` when it cannot be had.
pub(crate) fn try_zeroed<T: Default + Clone + 'static>(
    op: &'static str,
    what: &'static str,
    n: usize,
) -> Result<Vec<T>> {
    crate::kernels::alloc::zeroed_default(n).ok_or_else(|| {
        Error::too_large(
            op,
            what,
            format!("cannot allocate {n} elements of {} bytes", std::mem::size_of::<T>()),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zeroed_buffers_are_zero_and_usable() {
        for n in [0usize, 1, 1000, 3 << 20] {
            let mut v = zeroed::<f32>(n).unwrap();
            assert_eq!(v.len(), n);
            assert!(v.iter().all(|x| x.to_bits() == 0));
            v.iter_mut().enumerate().for_each(|(i, x)| *x = i as f32);
            assert!(v.iter().enumerate().all(|(i, x)| *x == i as f32));
            v.push(1.0);
        }
        let h = zeroed::<half::bf16>(5).unwrap();
        assert_eq!(h, vec![half::bf16::ZERO; 5]);
        let d = zeroed::<f64>(7).unwrap();
        assert_eq!(d, vec![0.0f64; 7]);
        assert_eq!(zeroed_default::<half::f16>(3).unwrap(), vec![half::f16::ZERO; 3]);
        assert_eq!(zeroed_default::<i64>(2).unwrap(), vec![0i64; 2]);
        assert_eq!(zeroed_default::<f32>(1 << 21).unwrap().len(), 1 << 21);
    }

    #[test]
    fn scratch_buffers_are_reused_and_sized() {
        let first_ptr = {
            let mut a = Scratch::zeroed(1000);
            assert_eq!(a.len(), 1000);
            assert!(a.iter().all(|x| x.to_bits() == 0));
            a.iter_mut().enumerate().for_each(|(i, x)| *x = i as f32 + 1.0);
            a.as_ptr()
        };
        // the same thread gets the same allocation back: shorter, and its old values still there
        let b = Scratch::any(10);
        assert_eq!(b.len(), 10);
        assert_eq!(b.as_ptr(), first_ptr);
        assert_eq!(b[9], 10.0);
        // two live buffers are distinct; zeroed() clears a reused one
        let c = Scratch::zeroed(2000);
        assert_ne!(c.as_ptr(), b.as_ptr());
        drop(b);
        let d = Scratch::zeroed(500);
        assert!(d.iter().all(|x| x.to_bits() == 0));
        drop((c, d));
        // huge buffers are not kept, and the pool holds at most POOL_MAX_BUFS
        let pooled = || POOL.with(|p| p.borrow().len());
        let before = pooled();
        let e = Scratch::any(POOL_MAX_ELEMS + 1);
        assert_eq!(e.len(), POOL_MAX_ELEMS + 1);
        drop(e);
        assert!(pooled() <= before, "a huge buffer went into the pool");
        let many: Vec<Scratch> = (0..POOL_MAX_BUFS + 3).map(|_| Scratch::any(4)).collect();
        drop(many);
        assert_eq!(pooled(), POOL_MAX_BUFS);
        assert_eq!(Scratch::any(0).len(), 0);
    }

    #[test]
    fn impossible_sizes_fail_instead_of_aborting() {
        assert!(zeroed::<f32>(usize::MAX / 2).is_none());
        assert!(zeroed::<f64>(1 << 60).is_none());
        assert!(zeroed_default::<u8>(usize::MAX).is_none());
    }
}
