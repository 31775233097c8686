//! Where an edited byte string differs from the original, as hunks the deflate splice reads.

use crate::format::deflate::Hunk;

/// Length of the common beginning of `a` and `b`, compared a chunk at a time (memcmp) before
/// byte by byte: archives are hundreds of KiB that differ in a few places.
fn common_prefix(a: &[u8], b: &[u8]) -> usize {
    const CHUNK: usize = 256;
    let n = a.len().min(b.len());
    let mut k = 0;
    while k + CHUNK <= n && a[k..k + CHUNK] == b[k..k + CHUNK] {
        k += CHUNK;
    }
    k + a[k..n]
        .iter()
        .zip(&b[k..n])
        .take_while(|(x, y)| x == y)
        .count()
}

/// Length of the common end of `a` and `b`, as [`common_prefix`].
fn common_suffix(a: &[u8], b: &[u8]) -> usize {
    const CHUNK: usize = 256;
    let n = a.len().min(b.len());
    let (a, b) = (&a[a.len() - n..], &b[b.len() - n..]);
    let mut k = 0;
    while k + CHUNK <= n && a[n - k - CHUNK..n - k] == b[n - k - CHUNK..n - k] {
        k += CHUNK;
    }
    k + a[..n - k]
        .iter()
        .rev()
        .zip(b[..n - k].iter().rev())
        .take_while(|(x, y)| x == y)
        .count()
}

/// Where `new` differs from `old`, for an edit made in one place plus, possibly, small changes
/// after it that keep their position relative to the end: after the common beginning, the new
/// data is compared with the old aligned at their ends (a re-encoded gzip member: the changed
/// blocks, then the original blocks moved by the change in length, then a new CRC). Equal runs
/// shorter than 64 bytes are not worth keeping apart and count as changed.
pub(super) fn diff_hunks(old: &[u8], new: &[u8]) -> Vec<Hunk> {
    const MIN_RUN: usize = 64;
    let p = common_prefix(old, new);
    if p == old.len() && p == new.len() {
        return Vec::new();
    }
    let d = new.len() as isize - old.len() as isize;
    // Walk back over old positions x (exclusive ends) with new position x + d, down to `lo`.
    let lo = p + (-d).max(0) as usize;
    let mut tail: Vec<Hunk> = Vec::new();
    let mut x = old.len();
    // End of the current run of changed bytes being walked, if any.
    let mut diff_end: Option<usize> = None;
    while x > lo {
        // Length of the equal run ending at x.
        let nx = (x as isize + d) as usize;
        let run = common_suffix(&old[lo..x], &new[(lo as isize + d) as usize..nx]);
        if run >= MIN_RUN || (run > 0 && x - run == lo && diff_end.is_none()) {
            if let Some(end) = diff_end.take() {
                tail.push(Hunk {
                    old: x..end,
                    new_len: end - x,
                });
            }
            x -= run;
        } else {
            diff_end.get_or_insert(x);
            x -= run.max(1);
        }
    }
    // What remains between the common beginning and the first kept run is the edit itself.
    let front_end = diff_end.unwrap_or(x);
    let front = Hunk {
        old: p..front_end,
        new_len: (front_end as isize + d) as usize - p,
    };
    let mut hunks = Vec::with_capacity(tail.len() + 1);
    if !front.old.is_empty() || front.new_len > 0 {
        hunks.push(front);
    }
    hunks.extend(tail.into_iter().rev());
    hunks
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Applies hunks the way the deflate splice reads them: new bytes at the corresponding place.
    fn apply_hunks(old: &[u8], new: &[u8], hunks: &[Hunk]) -> Vec<u8> {
        let mut out = Vec::new();
        let (mut at, mut delta) = (0usize, 0isize);
        for h in hunks {
            out.extend_from_slice(&old[at..h.old.start]);
            let ns = (h.old.start as isize + delta) as usize;
            out.extend_from_slice(&new[ns..ns + h.new_len]);
            delta += h.new_len as isize - h.old.len() as isize;
            at = h.old.end;
        }
        out.extend_from_slice(&old[at..]);
        out
    }

    #[test]
    fn common_prefix_and_suffix_agree_with_a_byte_by_byte_count() {
        let a: Vec<u8> = (0..3000u32).map(|i| (i * 31 % 253) as u8).collect();
        for at in [0, 1, 255, 256, 257, 511, 512, 1000, 2999] {
            let mut b = a.clone();
            b[at] ^= 0x55;
            let slow_p = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
            let slow_s = a
                .iter()
                .rev()
                .zip(b.iter().rev())
                .take_while(|(x, y)| x == y)
                .count();
            assert_eq!(common_prefix(&a, &b), slow_p, "{at}");
            assert_eq!(common_suffix(&a, &b), slow_s, "{at}");
            // Different lengths: compared from each end.
            assert_eq!(common_prefix(&a, &b[..at]), at);
            assert_eq!(common_suffix(&a[at + 1..], &b), a.len() - at - 1);
        }
        assert_eq!(common_prefix(&a, &a), a.len());
        assert_eq!(common_suffix(&[], &a), 0);
    }

    #[test]
    fn diff_hunks_find_the_edit_and_the_changes_after_it() {
        let old: Vec<u8> = (0..5000u32).map(|i| (i * 7 % 251) as u8).collect();
        let mut cases = Vec::new();
        // A re-encoded start of different length, the rest moved, and a new 4-byte CRC.
        let mut new = b"re-encoded head".to_vec();
        new.extend_from_slice(&old[100..4992]);
        new.extend_from_slice(b"CRC!");
        new.extend_from_slice(&old[4996..]);
        cases.push(new);
        cases.push(old[..4000].to_vec());
        let mut longer = old.clone();
        longer.extend_from_slice(b"more");
        cases.push(longer);
        let mut inserted = old[..2000].to_vec();
        inserted.extend_from_slice(b"inserted");
        inserted.extend_from_slice(&old[2000..]);
        cases.push(inserted);
        let mut deleted = old[..2000].to_vec();
        deleted.extend_from_slice(&old[2100..]);
        cases.push(deleted);
        cases.push(old.clone());
        for (n, new) in cases.iter().enumerate() {
            let hunks = diff_hunks(&old, new);
            assert_eq!(apply_hunks(&old, new, &hunks), *new, "case {n}: {hunks:?}");
            let changed: usize = hunks.iter().map(|h| h.old.len().max(h.new_len)).sum();
            assert!(
                changed <= 200 + old.len().abs_diff(new.len()),
                "case {n}: {hunks:?}"
            );
        }
        assert_eq!(diff_hunks(&old, &cases[0]).len(), 2);
    }
}
