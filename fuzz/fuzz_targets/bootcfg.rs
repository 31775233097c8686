//! boot.cfg parsing and the next-boot prediction built on it.
//!
//! Input: one boot.cfg, or two separated by a NUL byte (two banks, partitions 5 and 6).
#![no_main]

use bootbank::bootcfg::BootCfg;
use bootbank::nextboot::{self, Candidate};
use libfuzzer_sys::fuzz_target;

fn check(data: &[u8], cfg: &BootCfg) {
    let _ = (cfg.bootstate(), cfg.updated(), cfg.quickboot(), cfg.build());
    let _ = (cfg.has_bootstate(), cfg.text("kernelopt"), cfg.modules());
    // A value's offset points at the value's first byte in the file (an edit of bootstate
    // relies on it).
    for key in [
        "bootstate",
        "updated",
        "build",
        "kernelopt",
        "modules",
        "title",
    ] {
        if let Some(v) = cfg.get(key) {
            assert!(
                v.offset + v.len <= data.len(),
                "{key}: value at {}+{} past the end",
                v.offset,
                v.len
            );
            // The value's bytes in the file start and end with the bytes the bootloader holds.
            let span = &data[v.offset..v.offset + v.len];
            assert_eq!(span.first(), v.bytes.first(), "{key}: offset {}", v.offset);
            assert_eq!(span.last(), v.bytes.last(), "{key}: offset {}", v.offset);
        }
    }
    let _ = cfg.state_site();
    let _ = cfg.state_writable();
}

fuzz_target!(|data: &[u8]| {
    let (a, b) = match data.iter().position(|&x| x == 0) {
        Some(i) => (&data[..i], Some(&data[i + 1..])),
        None => (data, None),
    };
    let ca = BootCfg::parse(a);
    if let Ok(cfg) = &ca {
        check(a, cfg);
    }
    let cb = b.map(BootCfg::parse);
    if let (Some(b), Some(Ok(cfg))) = (b, &cb) {
        check(b, cfg);
    }
    let mut candidates = vec![Candidate {
        partition: 5,
        boot_cfg: ca
            .as_ref()
            .map_err(|e| bootbank::bootcfg::BootCfgUnread::Parse(e.clone())),
    }];
    if let Some(cb) = &cb {
        candidates.push(Candidate {
            partition: 6,
            boot_cfg: cb
                .as_ref()
                .map_err(|e| bootbank::bootcfg::BootCfgUnread::Parse(e.clone())),
        });
    }
    let p = nextboot::predict(&candidates);
    assert_eq!(p.banks.len(), candidates.len());
    let next: Vec<_> = p.banks.iter().filter(|v| v.boots_next).collect();
    assert!(next.len() <= 1, "two banks boot next: {p:?}");
    match (p.next_boot_partition, &p.unknown) {
        (Some(n), None) => assert!(next.len() == 1 && next[0].partition == n && next[0].valid),
        (None, None) => assert!(next.is_empty() && p.banks.iter().all(|v| !v.valid)),
        (None, Some(_)) => assert!(next.is_empty()),
        (Some(_), Some(_)) => panic!("a next boot and an unknown one: {p:?}"),
    }
    let _ = nextboot::shift_r(&candidates);
});
