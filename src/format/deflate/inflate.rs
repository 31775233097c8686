//! Decoding a whole raw deflate stream at once with libdeflate, and gzip's CRC-32.

/// CRC-32 (gzip's) of `data`, with libdeflate's carry-less-multiply code where the CPU has it.
pub fn crc32(data: &[u8]) -> u32 {
    // SAFETY: libdeflate reads exactly `len` bytes from the pointer, which a slice provides.
    unsafe { libdeflate_sys::libdeflate_crc32(0, data.as_ptr().cast(), data.len()) }
}

/// Owns a libdeflate decompressor.
struct Decompressor(*mut libdeflate_sys::libdeflate_decompressor);

impl Drop for Decompressor {
    fn drop(&mut self) {
        // SAFETY: the pointer came from libdeflate_alloc_decompressor and is freed once.
        unsafe { libdeflate_sys::libdeflate_free_decompressor(self.0) }
    }
}

/// Decodes the raw deflate stream at the start of `input`, appending the data to `out`, and
/// returns how many input bytes the stream took. `None` when libdeflate refuses the data or it
/// would exceed `limit` bytes: the caller decodes again with a streaming decoder, which names the
/// offset and the reason.
pub fn inflate_fast(input: &[u8], out: &mut Vec<u8>, limit: usize) -> Option<usize> {
    use libdeflate_sys::*;
    // SAFETY: allocation is checked for NULL and freed by the guard.
    let d = Decompressor(unsafe { libdeflate_alloc_decompressor() });
    if d.0.is_null() {
        return None;
    }
    let start = out.len();
    if out.capacity() == start {
        out.reserve(64 * 1024);
    }
    loop {
        let spare = out.capacity() - start;
        populate(out, start);
        let (mut used_in, mut used_out) = (0usize, 0usize);
        // SAFETY: libdeflate reads `input.len()` bytes from `input` and writes at most `spare`
        // bytes into the Vec's allocated spare capacity, reporting how many it wrote; only
        // those are then counted as initialised.
        let r = unsafe {
            libdeflate_deflate_decompress_ex(
                d.0,
                input.as_ptr().cast(),
                input.len(),
                out.as_mut_ptr().add(start).cast(),
                spare,
                &mut used_in,
                &mut used_out,
            )
        };
        match r {
            r if r == libdeflate_result_LIBDEFLATE_SUCCESS => {
                // SAFETY: libdeflate initialised `used_out` bytes after `start`.
                unsafe { out.set_len(start + used_out) };
                return Some(used_in);
            }
            r if r == libdeflate_result_LIBDEFLATE_INSUFFICIENT_SPACE && spare < limit => {
                out.reserve((spare * 2).min(limit));
            }
            _ => return None,
        }
    }
}

/// Maps in the pages of `out`'s spare capacity after `from` with one system call when there are
/// many: letting the decoder fault them in one at a time costs as much as decoding (a fresh
/// megabyte is 256 faults). Advice only; ignored where the kernel lacks it (before Linux 5.14).
fn populate(out: &mut Vec<u8>, from: usize) {
    const PAGE: usize = 4096;
    let spare = out.capacity() - from;
    if spare < 64 * PAGE {
        return;
    }
    let base = out.as_mut_ptr() as usize + from;
    let start = base.div_ceil(PAGE) * PAGE;
    let end = (base + spare) / PAGE * PAGE;
    if end > start {
        // SAFETY: the range lies inside the Vec's own allocation; MADV_POPULATE_WRITE only
        // faults pages in (their contents are unspecified spare capacity either way).
        unsafe {
            libc::madvise(
                start as *mut libc::c_void,
                end - start,
                libc::MADV_POPULATE_WRITE,
            );
        }
    }
}
