//! A bit string assembled least significant bit first, as deflate packs its codes.

/// A string of bits being assembled, least significant bit first as deflate packs them.
#[derive(Default)]
pub(super) struct Bits {
    pub(super) bytes: Vec<u8>,
    /// Number of valid bits; the last byte holds `len % 8` of them when not a whole byte.
    pub(super) len: u64,
}

impl Bits {
    /// Appends bits `from..to` of `src`.
    pub(super) fn append(&mut self, src: &[u8], from: u64, to: u64) {
        if from >= to {
            return;
        }
        let shift = (self.len % 8) as u32;
        if shift == 0 && from.is_multiple_of(8) {
            let (a, b) = ((from / 8) as usize, to.div_ceil(8) as usize);
            self.bytes.extend_from_slice(&src[a..b]);
            self.len += to - from;
            self.mask_tail();
            return;
        }
        if shift == (from % 8) as u32 {
            // Same alignment: merge the first byte, then copy whole bytes.
            let first = (from / 8) as usize;
            let last = self.bytes.last_mut().expect("a partial byte exists");
            let keep = (1u16 << shift) as u8 - 1;
            *last = (*last & keep) | (src[first] & !keep);
            let b = to.div_ceil(8) as usize;
            self.bytes
                .extend_from_slice(&src[first + 1..b.max(first + 1)]);
            self.len += to - from;
            self.mask_tail();
            return;
        }
        // Different alignment: move bits through a 64-bit accumulator.
        let mut pos = from;
        while pos < to {
            let take = (to - pos).min(56 - (pos % 8)) as u32;
            let byte = (pos / 8) as usize;
            let mut word = [0u8; 8];
            let end = (byte + 8).min(src.len());
            word[..end - byte].copy_from_slice(&src[byte..end]);
            let v = (u64::from_le_bytes(word) >> (pos % 8)) & ((1u64 << take) - 1);
            self.push(v, take);
            pos += take as u64;
        }
    }

    /// Appends the low `n` bits of `v` (n <= 57).
    pub(super) fn push(&mut self, v: u64, n: u32) {
        let mut v = v;
        let mut n = n;
        let shift = (self.len % 8) as u32;
        if shift != 0 {
            let last = self.bytes.last_mut().expect("a partial byte exists");
            *last |= (v << shift) as u8;
            let used = (8 - shift).min(n);
            v >>= used;
            n -= used;
            self.len += used as u64;
        }
        while n > 0 {
            self.bytes.push(v as u8);
            let used = n.min(8);
            v >>= used;
            n -= used;
            self.len += used as u64;
        }
        self.mask_tail();
    }

    /// Zeroes the unused high bits of a partial last byte.
    fn mask_tail(&mut self) {
        let r = (self.len % 8) as u32;
        if r != 0
            && let Some(last) = self.bytes.last_mut()
        {
            *last &= (1u16 << r) as u8 - 1;
        }
    }

    /// Sets bit `at` (already written) to 0: a copied BFINAL that no longer ends the stream.
    pub(super) fn clear_bit(&mut self, at: u64) {
        self.bytes[(at / 8) as usize] &= !(1u8 << (at % 8));
    }

    /// Removes a partial last byte and returns `(bits in it, its value)`.
    pub(super) fn take_partial(&mut self) -> (u32, u8) {
        let r = (self.len % 8) as u32;
        if r == 0 {
            return (0, 0);
        }
        self.len -= r as u64;
        (r, self.bytes.pop().expect("a partial byte exists"))
    }
}
