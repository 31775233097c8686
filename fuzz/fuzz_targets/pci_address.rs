//! PCI address parsing: ESXi's decimal forms, lspci hex, and what a user types.
#![no_main]

use bootbank::pci::{PciAddress, Reading};
use libfuzzer_sys::fuzz_target;

fn roundtrip(a: PciAddress) {
    assert_eq!(PciAddress::parse_pci(&a.to_pci_string()), Ok(a));
    assert_eq!(PciAddress::parse_esx(&a.to_esx_string()), Ok(a));
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(a) = PciAddress::parse_esx(text) {
        roundtrip(a);
    }
    if let Ok(a) = PciAddress::parse_pci(text) {
        roundtrip(a);
        assert_eq!(text.parse::<PciAddress>(), Ok(a));
    }
    for known in [false, true] {
        if let Ok((a, reading)) = PciAddress::parse_user(text, |_| known) {
            roundtrip(a);
            if !known && reading == Reading::Esx {
                let t = text.trim();
                assert!(
                    t.len() >= 4 && t.as_bytes()[..4].eq_ignore_ascii_case(b"esx:"),
                    "{text:?}"
                );
            }
        }
    }
});
