//! Where the blocks of a raw deflate stream begin, found with zlib's `Z_BLOCK` decoding.

use super::DeflateError;

use super::ffi::{Stream, Z_BLOCK, Z_BUF_ERROR, Z_OK, Z_STREAM_END};

/// Where the blocks of a deflate stream begin: `(bit offset in the compressed data, byte offset
/// in the decoded data)`, the first being `(0, 0)`, plus where the stream ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockMap {
    pub starts: Vec<(u64, usize)>,
    /// Bit offset just after the final block's end-of-block code; with `end_exact` false, only
    /// the end of the last byte (the map stopped early).
    pub end_bit: u64,
    pub end_exact: bool,
    /// Length of the decoded data.
    pub total_out: usize,
}

/// Where the blocks of a raw deflate stream begin, found with zlib's `Z_BLOCK` decoding into a
/// small scratch buffer (libdeflate decodes the data itself; it cannot say where blocks begin).
/// Decoding stops once the data passes byte `until` (an edit needs the blocks up to the one
/// holding its first changed byte; [`splice`](super::splice) reads any block after that itself), so an edit near
/// the start of a large archive maps almost nothing. `total_out` is the decoded length, known
/// from the decode. Without reaching the end the end bit is only known to the byte.
pub fn map_blocks(input: &[u8], until: usize, total_out: usize) -> Result<BlockMap, DeflateError> {
    let corrupt = |offset: u64, detail: &str| DeflateError::Corrupt {
        offset,
        detail: detail.to_string(),
    };
    let mut st = Stream::inflater().ok_or_else(|| corrupt(0, "cannot start the decoder"))?;
    st.set_input(input)
        .map_err(|_| corrupt(0, "compressed data larger than 4 GiB"))?;
    // zlib keeps its own 32 KiB window, so the output space is only scratch.
    let mut scratch = vec![0u8; 64 * 1024];
    let mut starts = vec![(0u64, 0usize)];
    loop {
        let (r, produced) = st.inflate(&mut scratch, Z_BLOCK);
        let out = st.total_out() as usize;
        let at_bit = st.total_in() * 8 - (st.data_type() & 7) as u64;
        match r {
            // The end of the final block is the end of the stream. zlib-rs says so with
            // Z_STREAM_END after a Huffman block, but after a final stored block it stops at the
            // boundary (128) of the last block (64) and makes no further progress under Z_BLOCK.
            _ if r == Z_STREAM_END || (r == Z_OK && st.data_type() & 192 == 192) => {
                return Ok(BlockMap {
                    starts,
                    end_bit: at_bit,
                    end_exact: true,
                    total_out: out,
                });
            }
            Z_OK | Z_BUF_ERROR => {
                // A boundary, unless it is the end of the final block (64: the last block has
                // been started), which is no place to resume copying at.
                if st.data_type() & 128 != 0
                    && st.data_type() & 64 == 0
                    && starts.last().map(|s| s.0) != Some(at_bit)
                {
                    starts.push((at_bit, out));
                }
                if out > until {
                    return Ok(BlockMap {
                        starts,
                        end_bit: input.len() as u64 * 8,
                        end_exact: false,
                        total_out,
                    });
                }
                if st.avail_in() == 0 && produced == 0 && st.avail_out() > 0 {
                    return Err(corrupt(
                        st.total_in(),
                        "unexpected end of the compressed data (truncated file?)",
                    ));
                }
            }
            _ => {
                return Err(corrupt(st.total_in(), "invalid deflate data"));
            }
        }
    }
}
