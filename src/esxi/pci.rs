//! PCI addresses as ESXi writes them in esx.conf and as lspci/esxcli show them.
//!
//! ESXi stores every address inside esx.conf in **decimal** (`000:022:00.0` is bus 0x16), whatever
//! its digit counts, while lspci and esxcli print hex `SSSS:BB:DD.F`. The same text can therefore
//! mean two different devices; this module keeps the two readings apart and compares addresses by
//! value, never by string.

use std::fmt;
use std::str::FromStr;

/// A PCI function address by value: segment (domain), bus, device (slot) and function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PciAddress {
    /// PCI segment (domain), 0 on most hosts; the `SSSS` of lspci's `SSSS:BB:DD.F`.
    pub segment: u16,
    /// Bus number, 0 to 255 (esx.conf's `022` is lspci's `16`).
    pub bus: u8,
    /// Device (slot) on the bus, 0 to 31.
    pub device: u8,
    /// Function of a multi-function card, 0 to 7.
    pub function: u8,
}

/// Why a text is not a PCI address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    #[error("`{text}` is not a PCI address (expected BB:DD.F or SSSS:BB:DD.F)")]
    Shape { text: String },
    #[error("`{text}`: {part} `{value}` is not a {radix} number")]
    Digits {
        text: String,
        part: &'static str,
        value: String,
        radix: &'static str,
    },
    #[error("`{text}`: {part} {value} is out of range (at most {max})")]
    Range {
        text: String,
        part: &'static str,
        value: u64,
        max: u64,
    },
}

/// How a user-typed address was read, so that output can say which device was meant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Reading {
    /// ESXi's decimal form, as written in esx.conf.
    Esx,
    /// lspci/esxcli hexadecimal form.
    Pci,
    /// The ConfigStore's bus-address form: `p` + hex `SSSS:BB:DD.F` (`p0000:16:00.0`), as
    /// `esx/system/device_data` writes it.
    #[serde(rename = "configstore")]
    Bus,
}

impl PciAddress {
    /// The address from its numbers, with no reading implied: `new(0, 0x16, 0, 0)` is what
    /// lspci prints as `0000:16:00.0` and esx.conf writes as `000:022:00.0`.
    pub const fn new(segment: u16, bus: u8, device: u8, function: u8) -> Self {
        PciAddress {
            segment,
            bus,
            device,
            function,
        }
    }

    /// Parses an address as written inside esx.conf: every component decimal, in any of the forms
    /// ESXi has used (`BBB:SS.F`, `SSS:BBB:SS.F`, `SSSSS:BBB:SS.F`, `SSSS:BB:DD.F`).
    pub fn parse_esx(text: &str) -> Result<Self, AddressError> {
        parse(text, 10)
    }

    /// Parses an address the way lspci and esxcli print it: hex `BB:DD.F` or `SSSS:BB:DD.F`.
    pub fn parse_pci(text: &str) -> Result<Self, AddressError> {
        parse(text, 16)
    }

    /// Parses an address typed by a user. An `esx:` prefix forces the decimal reading, `pci:` the
    /// hex one. Without a prefix, `is_esx_key` is asked whether esx.conf holds a key written
    /// exactly so; if it does the decimal reading wins, otherwise the text is read as lspci hex.
    pub fn parse_user(
        text: &str,
        is_esx_key: impl Fn(&str) -> bool,
    ) -> Result<(Self, Reading), AddressError> {
        let t = text.trim();
        if let Some(rest) = strip_prefix_ci(t, "esx:") {
            return Ok((Self::parse_esx(rest)?, Reading::Esx));
        }
        if let Some(rest) = strip_prefix_ci(t, "pci:") {
            return Ok((Self::parse_pci(rest)?, Reading::Pci));
        }
        if let Some(a) = crate::esxi::configstore::parse_bus_address(t) {
            return Ok((a, Reading::Bus));
        }
        if (is_esx_key(t) || esx_only_shape(t))
            && let Ok(a) = Self::parse_esx(t)
        {
            return Ok((a, Reading::Esx));
        }
        Ok((Self::parse_pci(t)?, Reading::Pci))
    }

    /// The lspci/esxcli form, lower case: `0000:16:00.0`.
    pub fn to_pci_string(&self) -> String {
        self.to_string()
    }

    /// ESXi's current esx.conf form for this address, `SSS:BBB:DD.F` in decimal. Used only for
    /// display: keys are always matched by value, never regenerated from this text.
    pub fn to_esx_string(&self) -> String {
        format!(
            "{:03}:{:03}:{:02}.{}",
            self.segment, self.bus, self.device, self.function
        )
    }
}

/// A shape only esx.conf writes (reference section 6): a three-digit bus (`BBB:SS.F`,
/// `SSS:BBB:SS.F`, `SSSSS:BBB:SS.F`) or a three- or five-digit segment. lspci and esxcli print a
/// two-digit bus and a four-digit segment, so such a text is ESXi's decimal form even when
/// esx.conf has no key written so (from 7.0U2 on it has no `/device/` keys at all).
pub fn esx_only_shape(t: &str) -> bool {
    let Some((head, _)) = t.rsplit_once('.') else {
        return false;
    };
    match head.split(':').collect::<Vec<_>>().as_slice() {
        [b, _] => b.len() == 3,
        [s, b, _] => b.len() == 3 || s.len() == 3 || s.len() == 5,
        _ => false,
    }
}

fn strip_prefix_ci<'a>(t: &'a str, prefix: &str) -> Option<&'a str> {
    // `get` keeps a multi-byte character at the cut from panicking (found by fuzzing).
    match t.get(..prefix.len()) {
        Some(head) if head.eq_ignore_ascii_case(prefix) => Some(&t[prefix.len()..]),
        _ => None,
    }
}

fn parse(text: &str, radix: u32) -> Result<PciAddress, AddressError> {
    let shape = || AddressError::Shape {
        text: text.to_string(),
    };
    let (head, func) = text.rsplit_once('.').ok_or_else(shape)?;
    let parts: Vec<&str> = head.split(':').collect();
    let (seg, bus, dev) = match parts.as_slice() {
        [b, d] => (None, *b, *d),
        [s, b, d] => (Some(*s), *b, *d),
        _ => return Err(shape()),
    };
    let num = |part: &'static str, value: &str, max: u64| -> Result<u64, AddressError> {
        let radix_name = if radix == 10 { "decimal" } else { "hex" };
        if value.is_empty() || !value.chars().all(|c| c.is_digit(radix)) {
            return Err(AddressError::Digits {
                text: text.to_string(),
                part,
                value: value.to_string(),
                radix: radix_name,
            });
        }
        // Leading zeros are allowed in any number; only the value counts.
        let v = u64::from_str_radix(value.trim_start_matches('0'), radix).unwrap_or(0);
        let v = if value.trim_start_matches('0').is_empty() {
            0
        } else {
            v
        };
        if value.trim_start_matches('0').len() > 12 || v > max {
            return Err(AddressError::Range {
                text: text.to_string(),
                part,
                value: v,
                max,
            });
        }
        Ok(v)
    };
    let segment = match seg {
        Some(s) => num("segment", s, 0xffff)? as u16,
        None => 0,
    };
    Ok(PciAddress {
        segment,
        bus: num("bus", bus, 0xff)? as u8,
        device: num("device", dev, 31)? as u8,
        function: num("function", func, 7)? as u8,
    })
}

impl fmt::Display for PciAddress {
    /// lspci form, lower-case hex: `SSSS:BB:DD.F`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:04x}:{:02x}:{:02x}.{:x}",
            self.segment, self.bus, self.device, self.function
        )
    }
}

impl FromStr for PciAddress {
    type Err = AddressError;
    /// Reads lspci hex; use [`PciAddress::parse_esx`] for text taken from esx.conf.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse_pci(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn esx_forms_are_decimal() {
        // The story's host: 000:022:00.0 is bus 0x16.
        assert_eq!(
            PciAddress::parse_esx("000:022:00.0").unwrap().to_string(),
            "0000:16:00.0"
        );
        // VMware KB: slot 00:0b.0 is stored as 000:11.0.
        assert_eq!(
            PciAddress::parse_esx("000:11.0").unwrap(),
            PciAddress::new(0, 0, 11, 0)
        );
        // Intel SATA at lspci 00:1f.2, written in the lspci shape but decimal.
        assert_eq!(
            PciAddress::parse_esx("0000:00:31.2").unwrap().to_string(),
            "0000:00:1f.2"
        );
        // VMX form with a 5-digit segment.
        assert_eq!(
            PciAddress::parse_esx("00000:003:00.0").unwrap(),
            PciAddress::new(0, 3, 0, 0)
        );
    }

    #[test]
    fn pci_forms_are_hex() {
        assert_eq!(
            PciAddress::parse_pci("16:00.0").unwrap(),
            PciAddress::new(0, 0x16, 0, 0)
        );
        assert_eq!(
            PciAddress::parse_pci("0000:00:1F.2").unwrap(),
            PciAddress::new(0, 0, 0x1f, 2)
        );
    }

    #[test]
    fn rejects_bad_addresses() {
        assert!(matches!(
            PciAddress::parse_esx("000:32.0"),
            Err(AddressError::Range { part: "device", .. })
        ));
        assert!(matches!(
            PciAddress::parse_esx("000:1f.0"),
            Err(AddressError::Digits { .. })
        ));
        assert!(matches!(
            PciAddress::parse_pci("00:1f"),
            Err(AddressError::Shape { .. })
        ));
        assert!(matches!(
            PciAddress::parse_pci("1:2:3:4.0"),
            Err(AddressError::Shape { .. })
        ));
        assert!(PciAddress::parse_esx("000:00.8").is_err());
        assert!(PciAddress::parse_esx("000:256:00.0").is_err());
        assert!(PciAddress::parse_esx("99999999999999999999:00:00.0").is_err());
        // Non-ASCII text at the prefix cut (fuzzing found a panic here).
        assert!(PciAddress::parse_user("abcé", |_| false).is_err());
        assert!(PciAddress::parse_user("es/ĵ:6", |_| false).is_err());
    }

    #[test]
    fn user_addresses_follow_esx_keys_then_hex() {
        let keys = ["000:022:00.0"];
        let has = |t: &str| keys.contains(&t);
        assert_eq!(
            PciAddress::parse_user("000:022:00.0", has).unwrap(),
            (PciAddress::new(0, 22, 0, 0), Reading::Esx)
        );
        assert_eq!(
            PciAddress::parse_user("0000:16:00.0", has).unwrap(),
            (PciAddress::new(0, 0x16, 0, 0), Reading::Pci)
        );
        assert_eq!(
            PciAddress::parse_user("esx:0000:00:31.2", has).unwrap(),
            (PciAddress::new(0, 0, 31, 2), Reading::Esx)
        );
        assert_eq!(
            PciAddress::parse_user("PCI:00:10.0", has).unwrap(),
            (PciAddress::new(0, 0, 0x10, 0), Reading::Pci)
        );
    }

    /// From 7.0U2 on esx.conf has no `/device/` keys to look the text up in: a shape lspci
    /// never prints is still read as ESXi's decimal form, and the ConfigStore's `p` form as hex.
    #[test]
    fn user_addresses_without_esx_keys() {
        let none = |_: &str| false;
        for (text, want, reading) in [
            ("000:022:00.0", PciAddress::new(0, 22, 0, 0), Reading::Esx),
            ("022:00.0", PciAddress::new(0, 22, 0, 0), Reading::Esx),
            ("00000:022:00.0", PciAddress::new(0, 22, 0, 0), Reading::Esx),
            ("0000:16:00.0", PciAddress::new(0, 0x16, 0, 0), Reading::Pci),
            ("16:00.0", PciAddress::new(0, 0x16, 0, 0), Reading::Pci),
            (
                "p0000:16:00.0",
                PciAddress::new(0, 0x16, 0, 0),
                Reading::Bus,
            ),
        ] {
            assert_eq!(
                PciAddress::parse_user(text, none).unwrap(),
                (want, reading),
                "{text}"
            );
        }
    }
}
