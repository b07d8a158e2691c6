//! Validated newtypes: a value of these types cannot hold something the
//! kernel would reject. They deserialize through `try_from`, so a bad value is
//! refused while parsing, with the field path attached by the parser.

use std::{fmt, str::FromStr};

use serde::{Deserialize, Serialize};

/// A Linux interface name: 1..=15 bytes, no '/', ':' or whitespace, not "." or "..".
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct IfName(String);

impl IfName {
    /// Validates `s` as an interface name.
    pub fn new(s: &str) -> Result<Self, String> {
        if s.is_empty() {
            return Err("interface name is empty".into());
        }
        if s.len() > 15 {
            return Err(format!(
                "interface name {s:?} is {} bytes; the kernel allows at most 15",
                s.len()
            ));
        }
        if s == "." || s == ".." {
            return Err(format!("interface name {s:?} is reserved"));
        }
        if let Some(c) = s
            .chars()
            .find(|c| *c == '/' || *c == ':' || c.is_whitespace() || c.is_control())
        {
            return Err(format!("interface name {s:?} contains {c:?}"));
        }
        Ok(Self(s.to_owned()))
    }

    /// The name as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for IfName {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        Self::new(&s)
    }
}

impl From<IfName> for String {
    fn from(n: IfName) -> String {
        n.0
    }
}

impl fmt::Display for IfName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::borrow::Borrow<str> for IfName {
    fn borrow(&self) -> &str {
        &self.0
    }
}

/// An 802.1Q VLAN id, 1..=4094.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "u32", into = "u16")]
pub struct VlanId(u16);

impl VlanId {
    /// Validates `v` as a VLAN id.
    pub fn new(v: u32) -> Result<Self, String> {
        if (1..=4094).contains(&v) {
            Ok(Self(v as u16))
        } else {
            Err(format!("VLAN id {v} is outside 1..=4094"))
        }
    }

    /// The id.
    pub fn get(self) -> u16 {
        self.0
    }
}

impl TryFrom<u32> for VlanId {
    type Error = String;
    fn try_from(v: u32) -> Result<Self, String> {
        Self::new(v)
    }
}

impl From<VlanId> for u16 {
    fn from(v: VlanId) -> u16 {
        v.0
    }
}

impl fmt::Display for VlanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// An MTU: 68 (the IPv4 minimum) ..= 65535.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "u32", into = "u32")]
pub struct Mtu(u32);

impl Mtu {
    /// Validates `v` as an MTU.
    pub fn new(v: u32) -> Result<Self, String> {
        if (68..=65535).contains(&v) {
            Ok(Self(v))
        } else {
            Err(format!("MTU {v} is outside 68..=65535"))
        }
    }

    /// The MTU in bytes.
    pub fn get(self) -> u32 {
        self.0
    }
}

impl TryFrom<u32> for Mtu {
    type Error = String;
    fn try_from(v: u32) -> Result<Self, String> {
        Self::new(v)
    }
}

impl From<Mtu> for u32 {
    fn from(v: Mtu) -> u32 {
        v.0
    }
}

impl fmt::Display for Mtu {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// An Ethernet MAC address, written `aa:bb:cc:dd:ee:ff`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    /// True for the all-zero address.
    pub fn is_zero(&self) -> bool {
        self.0 == [0; 6]
    }

    /// True when the group bit is set.
    pub fn is_multicast(&self) -> bool {
        self.0[0] & 1 == 1
    }
}

impl FromStr for MacAddr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let mut out = [0u8; 6];
        let parts: Vec<&str> = s.split(':').collect();
        if parts.len() != 6 {
            return Err(format!(
                "MAC address {s:?} must have 6 colon-separated bytes"
            ));
        }
        for (i, p) in parts.iter().enumerate() {
            if p.len() != 2 {
                return Err(format!(
                    "MAC address {s:?}: byte {p:?} must be two hex digits"
                ));
            }
            out[i] = u8::from_str_radix(p, 16)
                .map_err(|_| format!("MAC address {s:?}: {p:?} is not hex"))?;
        }
        Ok(Self(out))
    }
}

impl TryFrom<String> for MacAddr {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl From<MacAddr> for String {
    fn from(m: MacAddr) -> String {
        m.to_string()
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ifname_limits() {
        assert!(IfName::new("eth0").is_ok());
        assert!(IfName::new("a23456789012345").is_ok());
        assert!(IfName::new("a234567890123456").is_err());
        assert!(IfName::new("").is_err());
        assert!(IfName::new("a/b").is_err());
        assert!(IfName::new("a b").is_err());
        assert!(IfName::new("..").is_err());
    }

    #[test]
    fn vlan_limits() {
        assert!(VlanId::new(0).is_err());
        assert!(VlanId::new(1).is_ok());
        assert!(VlanId::new(4094).is_ok());
        assert!(VlanId::new(4095).is_err());
    }

    #[test]
    fn mtu_limits() {
        assert!(Mtu::new(67).is_err());
        assert!(Mtu::new(9000).is_ok());
        assert!(Mtu::new(65536).is_err());
    }

    #[test]
    fn mac_round_trip() {
        let m: MacAddr = "02:00:0A:bb:cc:01".parse().unwrap();
        assert_eq!(m.to_string(), "02:00:0a:bb:cc:01");
        assert!("02:00:0a:bb:cc".parse::<MacAddr>().is_err());
        assert!("02:00:0a:bb:cc:zz".parse::<MacAddr>().is_err());
    }
}
