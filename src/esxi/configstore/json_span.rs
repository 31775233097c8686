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

/// `text` without its top-level field `name` (key, value and one separating comma), every other
/// byte kept; None when the field is not there exactly once, the text cannot be scanned, or the
/// result would not parse to `want`. For a field whose absence is what the schema means by
/// "not set" (lockdown's `mode`).
pub(crate) fn remove_member(text: &str, name: &str, want: &serde_json::Value) -> Option<String> {
    let b = text.as_bytes();
    let members = top_level_members(b)?;
    let mut hits = members.iter().enumerate().filter(|(_, m)| m.0 == name);
    let (i, &(_, kstart, _, vend)) = hits.next()?;
    if hits.next().is_some() {
        return None;
    }
    let (from, to) = if let Some(next) = members.get(i + 1) {
        // `"name":v, "next"...`: up to the next key.
        (kstart, next.1)
    } else if i > 0 {
        // The last member: from the end of the one before it (its comma goes too).
        (members[i - 1].3, vend)
    } else {
        (kstart, vend)
    };
    let out = format!("{}{}", &text[..from], &text[to..]);
    let parsed: serde_json::Value = serde_json::from_str(&out).ok()?;
    (parsed == *want).then_some(out)
}

/// Byte span of the value of the last top-level field `name` of the JSON object in `b`.
fn top_level_value_span(b: &[u8], name: &str) -> Option<(usize, usize)> {
    top_level_members(b)?
        .into_iter()
        .rev()
        .find(|m| m.0 == name)
        .map(|m| (m.2, m.3))
}

/// The first byte at or after `i` that is not JSON white space.
fn ws(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && matches!(b[i], b' ' | b'\t' | b'\r' | b'\n') {
        i += 1;
    }
    i
}

/// The end of the JSON string starting at `i`.
fn string_end(b: &[u8], i: usize) -> Option<usize> {
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
}

/// The end of the JSON value starting at `i` (a string, an object or array with everything in
/// it, or a number or literal).
fn value_end(b: &[u8], i: usize) -> Option<usize> {
    match b.get(i)? {
        b'"' => string_end(b, i),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut j = i;
            while j < b.len() {
                match b[j] {
                    b'"' => {
                        j = string_end(b, j)?;
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
            while j < b.len() && !matches!(b[j], b',' | b'}' | b']' | b' ' | b'\t' | b'\r' | b'\n')
            {
                j += 1;
            }
            (j > i).then_some(j)
        }
    }
}

/// Every top-level member of the JSON object in `b`: key, key start, value start, value end.
fn top_level_members(b: &[u8]) -> Option<Vec<(String, usize, usize, usize)>> {
    let mut i = ws(b, 0);
    if b.get(i) != Some(&b'{') {
        return None;
    }
    i = ws(b, i + 1);
    let mut found = Vec::new();
    if b.get(i) == Some(&b'}') {
        return None;
    }
    loop {
        let kstart = i;
        let kend = string_end(b, i)?;
        let key: String = serde_json::from_slice(&b[i..kend]).ok()?;
        i = ws(b, kend);
        if b.get(i) != Some(&b':') {
            return None;
        }
        let vstart = ws(b, i + 1);
        let vend = value_end(b, vstart)?;
        found.push((key, kstart, vstart, vend));
        i = ws(b, vend);
        match b.get(i)? {
            b',' => i = ws(b, i + 1),
            b'}' => break,
            _ => return None,
        }
    }
    Some(found)
}

/// The spans of the elements of the non-empty JSON array in `b`.
fn array_elements(b: &[u8]) -> Option<Vec<(usize, usize)>> {
    let mut i = ws(b, 0);
    if b.get(i) != Some(&b'[') {
        return None;
    }
    i = ws(b, i + 1);
    let mut found = Vec::new();
    loop {
        let end = value_end(b, i)?;
        found.push((i, end));
        i = ws(b, end);
        match b.get(i)? {
            b',' => i = ws(b, i + 1),
            b']' => break,
            _ => return None,
        }
    }
    Some(found)
}

/// `old`, a JSON text, rewritten to read as `new` while keeping every byte that can stay: the
/// members and elements whose values do not change keep their text (key order, spacing, number
/// forms), a changed value is rewritten the same way inside, a member `new` no longer has is
/// taken out with its separator, and a member only `new` has is appended at the end of its
/// object, compactly as ESXi writes. None when `old` cannot be scanned or the result would not
/// parse to `new` (duplicate keys, for one): the caller then says it re-serialises.
pub(crate) fn retext(old: &str, new: &serde_json::Value) -> Option<String> {
    let out = node(old, new)?;
    let parsed: serde_json::Value = serde_json::from_str(&out).ok()?;
    (parsed == *new).then_some(out)
}

/// [`retext`] of one value's exact text `t`.
fn node(t: &str, new: &serde_json::Value) -> Option<String> {
    use serde_json::Value;
    let cur: Value = serde_json::from_str(t).ok()?;
    if cur == *new {
        return Some(t.to_string());
    }
    let b = t.as_bytes();
    match (&cur, new) {
        (Value::Object(co), Value::Object(nm)) if !co.is_empty() => {
            let members = top_level_members(b)?;
            if members.len() != co.len() {
                return None; // duplicate keys: which bytes count is not ours to say
            }
            let mut s = t[..members[0].1].to_string();
            let mut sep: Option<&str> = None;
            for (i, (k, ks, vs, ve)) in members.iter().enumerate() {
                let after = members.get(i + 1).map_or(",", |m| &t[*ve..m.1]);
                let Some(nv) = nm.get(k) else { continue };
                if let Some(sep) = sep {
                    s.push_str(sep);
                }
                s.push_str(&t[*ks..*vs]);
                s.push_str(&node(&t[*vs..*ve], nv)?);
                sep = Some(after);
            }
            for (k, v) in nm.iter().filter(|(k, _)| !co.contains_key(*k)) {
                if sep.is_some() {
                    s.push(',');
                }
                s.push_str(&Value::String(k.clone()).to_string());
                s.push(':');
                s.push_str(&v.to_string());
                sep = Some(",");
            }
            s.push_str(&t[members.last()?.3..]);
            Some(s)
        }
        (Value::Array(ca), Value::Array(na)) if !ca.is_empty() && ca.len() == na.len() => {
            let elements = array_elements(b)?;
            let mut s = String::new();
            let mut at = 0;
            for ((start, end), nv) in elements.iter().zip(na) {
                s.push_str(&t[at..*start]);
                s.push_str(&node(&t[*start..*end], nv)?);
                at = *end;
            }
            s.push_str(&t[at..]);
            Some(s)
        }
        _ => Some(new.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    const PASSTHRU: &str = "OWNER_PASSTHRU";
    const VMKERNEL: &str = "OWNER_VMKERNEL";

    /// The text with `owner` set to OWNER_VMKERNEL through `replace_token`, asking for what
    /// serde_json makes of the same change.
    fn set_owner(text: &str) -> Option<String> {
        let mut want: Value = serde_json::from_str(text).ok()?;
        want.as_object_mut()?
            .insert("owner".into(), json!(VMKERNEL));
        replace_token(text, "/owner", &json!(PASSTHRU), &json!(VMKERNEL), &want)
    }

    #[test]
    fn the_value_span_is_found_in_the_shapes_esxi_and_python_write() {
        // ESXi's compact form (a 7.0.2 host's esx/hardware/pci_devices UserValue) and
        // Python's json.dumps with its default separators.
        let compact = r#"{"sbdf":"0000:16:00.0","owner":"OWNER_PASSTHRU"}"#;
        let (s, e) = top_level_value_span(compact.as_bytes(), "owner").unwrap();
        assert_eq!(&compact[s..e], "\"OWNER_PASSTHRU\"");
        let spaced = "{\"sbdf\": \"0000:16:00.0\",\n  \"owner\" :\t\"OWNER_PASSTHRU\" }";
        let (s, e) = top_level_value_span(spaced.as_bytes(), "owner").unwrap();
        assert_eq!(&spaced[s..e], "\"OWNER_PASSTHRU\"");
        // Numbers, literals, objects and arrays end where JSON says.
        let mixed = r#"{"a":12.5e3,"b":true,"c":{"owner":"x","d":[1,{"e":"]"}]},"f":[],"g":null}"#;
        for (key, want) in [
            ("a", "12.5e3"),
            ("b", "true"),
            ("c", r#"{"owner":"x","d":[1,{"e":"]"}]}"#),
            ("f", "[]"),
            ("g", "null"),
        ] {
            let (s, e) = top_level_value_span(mixed.as_bytes(), key).unwrap();
            assert_eq!(&mixed[s..e], want, "{key}");
        }
        // Only top-level keys count: `owner` inside `c` is not one.
        assert_eq!(top_level_value_span(mixed.as_bytes(), "owner"), None);
    }

    #[test]
    fn only_the_value_changes() {
        let compact = r#"{"sbdf":"0000:16:00.0","owner":"OWNER_PASSTHRU"}"#;
        assert_eq!(
            set_owner(compact).unwrap(),
            r#"{"sbdf":"0000:16:00.0","owner":"OWNER_VMKERNEL"}"#
        );
        let spaced =
            "{ \"owner\" : \"OWNER_PASSTHRU\",\n \"sbdf\": \"0000:16:00.0\",\"colour\":\"red\" }";
        assert_eq!(
            set_owner(spaced).unwrap(),
            spaced.replace(PASSTHRU, VMKERNEL)
        );
        // Escapes in other strings, a key spelled with an escape.
        let escaped = r#"{"note":"say \"owner\": \\","\u006fwner":"OWNER_PASSTHRU"}"#;
        assert_eq!(
            set_owner(escaped).unwrap(),
            escaped.replace(PASSTHRU, VMKERNEL)
        );
    }

    #[test]
    fn the_last_of_duplicate_keys_is_the_one_replaced_as_serde_json_reads_it() {
        let twice = r#"{"owner":"OWNER_VMKERNEL","owner":"OWNER_PASSTHRU"}"#;
        assert_eq!(
            set_owner(twice).unwrap(),
            r#"{"owner":"OWNER_VMKERNEL","owner":"OWNER_VMKERNEL"}"#
        );
        // The last one is not the old value: nothing is guessed.
        let other = r#"{"owner":"OWNER_PASSTHRU","owner":"OWNER_VMKERNEL"}"#;
        assert_eq!(set_owner(other), None);
    }

    #[test]
    fn what_cannot_be_scanned_is_refused() {
        for text in [
            r#"{"sbdf":"0000:16:00.0"}"#,                          // no owner
            r#"{"owner":"OWNER_VMKERNEL"}"#,                       // not the old value
            r#"["owner","OWNER_PASSTHRU"]"#,                       // not an object
            r#"{}"#,                                               // empty
            r#"{"owner":"OWNER_PASSTHRU""#,                        // truncated
            r#"{"owner":"OWNER_PASSTHRU"} x"#,                     // trailing bytes
            r#"{"owner" "OWNER_PASSTHRU"}"#,                       // no colon
            r#"{"owner":"OWNER_PASSTHRU";"sbdf":"0000:16:00.0"}"#, // no comma
        ] {
            assert_eq!(set_owner(text), None, "{text}");
        }
        let text = r#"{"owner":"OWNER_PASSTHRU"}"#;
        let want: Value = serde_json::from_str(text).unwrap();
        // Pointers deeper than one level are not scanned.
        assert_eq!(
            replace_token(text, "/owner/x", &json!(PASSTHRU), &json!(VMKERNEL), &want),
            None
        );
        assert_eq!(
            replace_token(text, "owner", &json!(PASSTHRU), &json!(VMKERNEL), &want),
            None
        );
        // A result that does not parse to what the caller wants is refused.
        assert_eq!(
            replace_token(text, "/owner", &json!(PASSTHRU), &json!(VMKERNEL), &want),
            None
        );
    }

    #[test]
    fn a_member_is_removed_with_its_comma_and_nothing_else() {
        let rm = |text: &str| {
            let mut want: Value = serde_json::from_str(text).unwrap();
            if let Some(o) = want.as_object_mut() {
                o.remove("mode");
            }
            remove_member(text, "mode", &want)
        };
        assert_eq!(
            rm(r#"{"mode":"NORMAL","exception_users":["a"]}"#).unwrap(),
            r#"{"exception_users":["a"]}"#
        );
        assert_eq!(
            rm(r#"{"exception_users":["a"], "mode" : "STRICT" }"#).unwrap(),
            r#"{"exception_users":["a"] }"#
        );
        assert_eq!(
            rm(r#"{"a":1,"mode":"NORMAL","b":{"mode":2}}"#).unwrap(),
            r#"{"a":1,"b":{"mode":2}}"#
        );
        assert_eq!(rm(r#"{"mode":"NORMAL"}"#).unwrap(), "{}");
        // Absent, twice, or not an object: nothing is guessed.
        assert_eq!(rm(r#"{"a":1}"#), None);
        assert_eq!(rm(r#"{"mode":"NORMAL","mode":"STRICT"}"#), None);
        assert_eq!(rm(r#"["mode"]"#), None);
    }

    #[test]
    fn json_pointer_escapes_name_the_key() {
        let text = r#"{"a/b":"OWNER_PASSTHRU","c~d":"OWNER_PASSTHRU"}"#;
        let mut want: Value = serde_json::from_str(text).unwrap();
        want["a/b"] = json!(VMKERNEL);
        assert_eq!(
            replace_token(text, "/a~1b", &json!(PASSTHRU), &json!(VMKERNEL), &want).unwrap(),
            r#"{"a/b":"OWNER_VMKERNEL","c~d":"OWNER_PASSTHRU"}"#
        );
        let mut want: Value = serde_json::from_str(text).unwrap();
        want["c~d"] = json!(VMKERNEL);
        assert!(replace_token(text, "/c~0d", &json!(PASSTHRU), &json!(VMKERNEL), &want).is_some());
    }

    #[test]
    fn retext_keeps_every_byte_that_can_stay() {
        // The real 7.0.2 host's vmk0 UserValue, made static.
        let old = r#"{"device":"vmk0","tso_mss":0,"ip":{"dhcp_dns":true,"ipv6":{"dhcp":false},"ipv6_enabled":true,"dhcp":true},"port_group":"Management Network"}"#;
        let mut new: Value = serde_json::from_str(old).unwrap();
        new["ip"]["dhcp"] = json!(false);
        new["ip"]["ipv4_address"] = json!("10.0.0.5");
        assert_eq!(
            retext(old, &new).unwrap(),
            r#"{"device":"vmk0","tso_mss":0,"ip":{"dhcp_dns":true,"ipv6":{"dhcp":false},"ipv6_enabled":true,"dhcp":false,"ipv4_address":"10.0.0.5"},"port_group":"Management Network"}"#
        );
        // And back: the added member goes with its comma.
        let back: Value = serde_json::from_str(old).unwrap();
        assert_eq!(retext(&retext(old, &new).unwrap(), &back).unwrap(), old);
        // An element of an array, spacing kept; a member in the middle taken out with the
        // separator after it.
        let sw = "{\"port_groups\": [{\"name\":\"A\",\"vlan_id\":0}, {\"name\":\"B\",\"vlan_id\":0}],\"x\":1, \"y\":2}";
        let mut want: Value = serde_json::from_str(sw).unwrap();
        want["port_groups"][1]["vlan_id"] = json!(20);
        want.as_object_mut().unwrap().remove("x");
        assert_eq!(
            retext(sw, &want).unwrap(),
            "{\"port_groups\": [{\"name\":\"A\",\"vlan_id\":0}, {\"name\":\"B\",\"vlan_id\":20}],\"y\":2}"
        );
        // Nothing changed: the very text.
        assert_eq!(retext(sw, &serde_json::from_str(sw).unwrap()).unwrap(), sw);
        // Duplicate keys or unscannable text: refused.
        assert_eq!(retext(r#"{"a":1,"a":2}"#, &json!({"a": 3})), None);
        assert_eq!(retext(r#"{"a":1"#, &json!({"a": 3})), None);
    }
}
