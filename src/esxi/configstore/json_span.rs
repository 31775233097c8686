//! Replacing one top-level field's value in a JSON text while keeping every other byte: a
//! ConfigStore edit changes `"owner":"OWNER_PASSTHRU"` to `"owner":"OWNER_VMKERNEL"` and leaves
//! the key order and spacing ESXi wrote. serde_json re-serialises the whole object (key order,
//! number forms), which would change bytes that need not change; so this is a small scanner of
//! our own, checked by parsing the result.

/// `text` with the value of the top-level field named by `pointer` (a one-level JSON pointer)
/// replaced by `new`, every other byte kept; None when the text cannot be scanned that way or
/// the result would not parse to `want`.
pub(crate) fn replace_token(
    text: &str,
    pointer: &str,
    old: &serde_json::Value,
    new: &serde_json::Value,
    want: &serde_json::Value,
) -> Option<String> {
    let name = pointer.strip_prefix('/')?;
    if name.contains('/') {
        return None;
    }
    let name = name.replace("~1", "/").replace("~0", "~");
    let (start, end) = top_level_value_span(text.as_bytes(), &name)?;
    let token: serde_json::Value = serde_json::from_str(&text[start..end]).ok()?;
    if token != *old {
        return None;
    }
    let out = format!("{}{}{}", &text[..start], new, &text[end..]);
    let parsed: serde_json::Value = serde_json::from_str(&out).ok()?;
    (parsed == *want).then_some(out)
}

/// Byte span of the value of the last top-level field `name` of the JSON object in `b`.
fn top_level_value_span(b: &[u8], name: &str) -> Option<(usize, usize)> {
    let ws = |mut i: usize| {
        while i < b.len() && matches!(b[i], b' ' | b'\t' | b'\r' | b'\n') {
            i += 1;
        }
        i
    };
    let string_end = |i: usize| -> Option<usize> {
        if b.get(i) != Some(&b'"') {
            return None;
        }
        let mut j = i + 1;
        while j < b.len() {
            match b[j] {
                b'\\' => j += 2,
                b'"' => return Some(j + 1),
                _ => j += 1,
            }
        }
        None
    };
    let value_end = |i: usize| -> Option<usize> {
        match b.get(i)? {
            b'"' => string_end(i),
            b'{' | b'[' => {
                let mut depth = 0usize;
                let mut j = i;
                while j < b.len() {
                    match b[j] {
                        b'"' => {
                            j = string_end(j)?;
                            continue;
                        }
                        b'{' | b'[' => depth += 1,
                        b'}' | b']' => {
                            depth -= 1;
                            if depth == 0 {
                                return Some(j + 1);
                            }
                        }
                        _ => {}
                    }
                    j += 1;
                }
                None
            }
            _ => {
                let mut j = i;
                while j < b.len()
                    && !matches!(b[j], b',' | b'}' | b']' | b' ' | b'\t' | b'\r' | b'\n')
                {
                    j += 1;
                }
                (j > i).then_some(j)
            }
        }
    };
    let mut i = ws(0);
    if b.get(i) != Some(&b'{') {
        return None;
    }
    i = ws(i + 1);
    let mut found = None;
    if b.get(i) == Some(&b'}') {
        return None;
    }
    loop {
        let kend = string_end(i)?;
        let key: String = serde_json::from_slice(&b[i..kend]).ok()?;
        i = ws(kend);
        if b.get(i) != Some(&b':') {
            return None;
        }
        let vstart = ws(i + 1);
        let vend = value_end(vstart)?;
        if key == name {
            found = Some((vstart, vend));
        }
        i = ws(vend);
        match b.get(i)? {
            b',' => i = ws(i + 1),
            b'}' => break,
            _ => return None,
        }
    }
    found
}
