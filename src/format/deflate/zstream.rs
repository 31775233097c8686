//! A zlib-rs stream (raw inflate or deflate) that is ended when dropped, and the loop that feeds
//! a deflate stream.

use super::DeflateError;

use libz_rs_sys as z;

/// A zlib stream that is ended when dropped. Boxed: zlib keeps a pointer to it.
pub(super) struct Stream {
    pub(super) s: Box<z::z_stream>,
    pub(super) deflate: bool,
}

impl Stream {
    /// A raw (headerless) inflate stream; `None` when zlib cannot start one.
    pub(super) fn inflater() -> Option<Stream> {
        let mut st = Stream {
            s: Box::default(),
            deflate: false,
        };
        // SAFETY: a zeroed (default) z_stream with a valid version string and size.
        let r = unsafe { z::inflateInit2_(&mut *st.s, -15, z::zlibVersion(), stream_size()) };
        if r != z::Z_OK {
            // Not initialised: nothing to end.
            std::mem::forget(st);
            return None;
        }
        Some(st)
    }
}

impl Drop for Stream {
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

pub(super) fn stream_size() -> i32 {
    size_of::<z::z_stream>() as i32
}

/// Feeds `input` to a deflate stream with `flush`, appending all output to `out`.
pub(super) fn run(
    st: &mut Stream,
    input: &[u8],
    flush: i32,
    out: &mut Vec<u8>,
) -> Result<(), DeflateError> {
    st.s.next_in = input.as_ptr();
    st.s.avail_in = u32::try_from(input.len())
        .map_err(|_| DeflateError::Encode("span larger than 4 GiB".to_string()))?;
    loop {
        if out.capacity() - out.len() < 1024 {
            out.reserve(out.capacity().max(64 * 1024));
        }
        let spare = (out.capacity() - out.len()).min(u32::MAX as usize);
        // SAFETY: next_out points at the Vec's spare capacity; the bytes zlib reports written
        // (avail_out shrinks by them) are then counted as initialised.
        let r = unsafe {
            st.s.next_out = out.as_mut_ptr().add(out.len());
            st.s.avail_out = spare as u32;
            let r = z::deflate(&mut *st.s, flush);
            let written = spare - st.s.avail_out as usize;
            out.set_len(out.len() + written);
            r
        };
        match r {
            z::Z_STREAM_END => return Ok(()),
            z::Z_OK | z::Z_BUF_ERROR => {
                // Done when all input is taken and zlib left output room unused.
                if st.s.avail_in == 0 && st.s.avail_out > 0 && flush != z::Z_FINISH {
                    return Ok(());
                }
                if r == z::Z_BUF_ERROR && st.s.avail_out > 0 {
                    return Err(DeflateError::Encode(format!(
                        "zlib deflate made no progress (flush {flush})"
                    )));
                }
            }
            _ => {
                return Err(DeflateError::Encode(format!("zlib deflate returned {r}")));
            }
        }
    }
}
