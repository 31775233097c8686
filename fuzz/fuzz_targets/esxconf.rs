//! esx.conf parsing and the PCI device list built from it.
#![no_main]

use bootbank::esxconf::EsxConf;
use bootbank::pci::PciAddress;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(conf) = EsxConf::parse(data) else {
        return;
    };
    for e in &conf.entries {
        // An edit replaces exactly `value_range`: it must hold the value.
        assert_eq!(
            &data[e.value_range.clone()],
            e.value.as_bytes(),
            "line {}",
            e.line
        );
        let _ = conf.get(&e.key);
    }
    for d in conf.devices() {
        assert!(conf.has_device_text(&d.esx_address), "{}", d.esx_address);
        assert_eq!(PciAddress::parse_esx(&d.esx_address).ok(), Some(d.address));
        assert_eq!(PciAddress::parse_pci(&d.pci_address).ok(), Some(d.address));
        let _ = (d.is_storage(), d.is_passthru());
    }
});
