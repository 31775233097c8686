//! Every foreign call of the deflate layer, behind safe functions: libdeflate (whole-buffer
//! decoding and CRC-32) and zlib-rs's C API (`z_stream`: block-by-block decoding, priming,
//! dictionaries, stream copies). Nothing outside this file writes `unsafe` for them.
//!
//! Why the C API of zlib-rs and not a safe crate: the splice needs `inflatePrime`,
//! `deflatePrime`, `deflatePending`, `deflateCopy` and `Z_BLOCK` decoding with the bit position
//! (`data_type`), which neither flate2 nor miniz_oxide exposes. Why libdeflate for whole
//! streams: it decodes a buffer about twice as fast as a streaming decoder (bench/inspect).

use libz_rs_sys as z;
use std::marker::PhantomData;

pub(super) use z::{Z_BLOCK, Z_BUF_ERROR, Z_FINISH, Z_NO_FLUSH, Z_OK, Z_STREAM_END, Z_SYNC_FLUSH};

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

/// A raw (headerless) zlib stream, inflating or deflating, ended when dropped. `'a` is the
/// input it was given with [`Stream::set_input`]: zlib keeps a pointer to it between calls.
pub(super) struct Stream<'a> {
    /// Boxed: zlib keeps a pointer to the stream itself.
    s: Box<z::z_stream>,
    deflate: bool,
    input: PhantomData<&'a [u8]>,
}

/// A zlib return code other than the one a call needed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Code(pub(super) i32);

fn check(r: i32) -> Result<(), Code> {
    if r == Z_OK { Ok(()) } else { Err(Code(r)) }
}

fn stream_size() -> i32 {
    size_of::<z::z_stream>() as i32
}

impl<'a> Stream<'a> {
    fn blank(deflate: bool) -> Stream<'a> {
        Stream {
            s: Box::default(),
            deflate,
            input: PhantomData,
        }
    }

    /// A raw inflate stream; `None` when zlib cannot start one.
    pub(super) fn inflater() -> Option<Stream<'a>> {
        let mut st = Stream::blank(false);
        // SAFETY: a zeroed (default) z_stream with a valid version string and size.
        let r = unsafe { z::inflateInit2_(&mut *st.s, -15, z::zlibVersion(), stream_size()) };
        if r != Z_OK {
            // Not initialised: nothing to end.
            std::mem::forget(st);
            return None;
        }
        Some(st)
    }

    /// A raw deflate stream with a window of `2^wbits` bytes.
    pub(super) fn deflater(level: i32, wbits: i32, mem_level: i32) -> Result<Stream<'a>, Code> {
        let mut st = Stream::blank(true);
        // SAFETY: a default z_stream with a valid version string and size.
        let r = unsafe {
            z::deflateInit2_(
                &mut *st.s,
                level,
                z::Z_DEFLATED,
                -wbits,
                mem_level,
                z::Z_DEFAULT_STRATEGY,
                z::zlibVersion(),
                stream_size(),
            )
        };
        if r != Z_OK {
            std::mem::forget(st);
            return Err(Code(r));
        }
        Ok(st)
    }

    /// A copy of this deflate stream's whole state, to try different continuations.
    pub(super) fn copy(&mut self) -> Result<Stream<'a>, Code> {
        let mut v = Stream::blank(true);
        // SAFETY: copies an initialised deflate stream into a default one.
        let r = unsafe { z::deflateCopy(&mut *v.s, &mut *self.s) };
        if r != Z_OK {
            std::mem::forget(v);
            return Err(Code(r));
        }
        Ok(v)
    }

    /// Sets the history the next data may refer back to.
    pub(super) fn set_dictionary(&mut self, dict: &[u8]) -> Result<(), Code> {
        let len = u32::try_from(dict.len()).map_err(|_| Code(Z_BUF_ERROR))?;
        // SAFETY: initialised stream; zlib copies the dictionary during the call.
        check(unsafe {
            if self.deflate {
                z::deflateSetDictionary(&mut *self.s, dict.as_ptr(), len)
            } else {
                z::inflateSetDictionary(&mut *self.s, dict.as_ptr(), len)
            }
        })
    }

    /// Starts the stream `bits` bits into a byte whose bits so far are `value`.
    pub(super) fn prime(&mut self, bits: i32, value: i32) -> Result<(), Code> {
        // SAFETY: initialised stream; plain integers.
        check(unsafe {
            if self.deflate {
                z::deflatePrime(&mut *self.s, bits, value)
            } else {
                z::inflatePrime(&mut *self.s, bits, value)
            }
        })
    }

    /// The bytes and bits a deflate stream holds back, not yet written out.
    pub(super) fn pending(&mut self) -> Result<(u32, i32), Code> {
        let (mut pending, mut bits) = (0u32, 0i32);
        // SAFETY: initialised stream, valid out-pointers.
        check(unsafe { z::deflatePending(&mut *self.s, &mut pending, &mut bits) })?;
        Ok((pending, bits))
    }

    /// Gives the stream its input, which must outlive the stream's use of it.
    pub(super) fn set_input(&mut self, input: &'a [u8]) -> Result<(), Code> {
        self.s.avail_in = u32::try_from(input.len()).map_err(|_| Code(Z_BUF_ERROR))?;
        self.s.next_in = input.as_ptr();
        Ok(())
    }

    /// One `inflate` call writing into `out`; returns zlib's code and how many bytes it wrote.
    pub(super) fn inflate(&mut self, out: &mut [u8], flush: i32) -> (i32, usize) {
        let room = out.len().min(u32::MAX as usize) as u32;
        self.s.next_out = out.as_mut_ptr();
        self.s.avail_out = room;
        // SAFETY: initialised inflate stream; next_in is the live input of `set_input` (its
        // lifetime `'a` outlives `self`), next_out the `room` bytes of `out`.
        let r = unsafe { z::inflate(&mut *self.s, flush) };
        let written = (room - self.s.avail_out) as usize;
        // `out` is only borrowed for this call: zlib must not keep writing there (every call
        // sets next_out again; avail_out stays readable as the room that was left).
        self.s.next_out = std::ptr::null_mut();
        (r, written)
    }

    /// Feeds `input` to a deflate stream with `flush`, appending all output to `out`.
    pub(super) fn run(&mut self, input: &[u8], flush: i32, out: &mut Vec<u8>) -> Result<(), Code> {
        self.s.avail_in = u32::try_from(input.len()).map_err(|_| Code(Z_BUF_ERROR))?;
        self.s.next_in = input.as_ptr();
        let result = loop {
            if out.capacity() - out.len() < 1024 {
                out.reserve(out.capacity().max(64 * 1024));
            }
            let spare = (out.capacity() - out.len()).min(u32::MAX as usize);
            // SAFETY: initialised deflate stream; next_in is `input` (borrowed for this call),
            // next_out the Vec's spare capacity; the bytes zlib reports written (avail_out
            // shrinks by them) are then counted as initialised.
            let r = unsafe {
                self.s.next_out = out.as_mut_ptr().add(out.len());
                self.s.avail_out = spare as u32;
                let r = z::deflate(&mut *self.s, flush);
                let written = spare - self.s.avail_out as usize;
                out.set_len(out.len() + written);
                r
            };
            match r {
                Z_STREAM_END => break Ok(()),
                Z_OK | Z_BUF_ERROR => {
                    // Done when all input is taken and zlib left output room unused.
                    if self.s.avail_in == 0 && self.s.avail_out > 0 && flush != Z_FINISH {
                        break Ok(());
                    }
                    if r == Z_BUF_ERROR && self.s.avail_out > 0 {
                        break Err(Code(r));
                    }
                }
                _ => break Err(Code(r)),
            }
        };
        // `input` is only borrowed for this call: zlib must not read it later.
        self.s.next_in = std::ptr::null();
        self.s.avail_in = 0;
        result
    }

    pub(super) fn avail_in(&self) -> u32 {
        self.s.avail_in
    }

    pub(super) fn avail_out(&self) -> u32 {
        self.s.avail_out
    }

    pub(super) fn total_in(&self) -> u64 {
        self.s.total_in
    }

    pub(super) fn total_out(&self) -> u64 {
        self.s.total_out
    }

    /// zlib's `data_type` after a `Z_BLOCK` inflate: bit count of the last byte (0-7), 64 in the
    /// last block, 128 at a block boundary.
    pub(super) fn data_type(&self) -> i32 {
        self.s.data_type
    }
}

impl Drop for Stream<'_> {
    fn drop(&mut self) {
        // SAFETY: the stream was initialised by inflateInit2_/deflateInit2_/deflateCopy.
        unsafe {
            if self.deflate {
                z::deflateEnd(&mut *self.s);
            } else {
                z::inflateEnd(&mut *self.s);
            }
        }
    }
}
