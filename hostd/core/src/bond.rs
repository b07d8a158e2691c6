//! Bonding: modes and options, each defined once.
//!
//! [`bond_options!`] below is the only place a bond option is spelled: its
//! schema field and kernel name, its `IFLA_BOND_*` attribute number and wire
//! type, the modes the kernel accepts it in, and whether the kernel only takes
//! it on a bond that is down (`BOND_OPTFLAG_IFDOWN`) or has no ports
//! (`BOND_OPTFLAG_NOSLAVES`). Everything else is derived from that table:
//! the [`BondOptions`] struct (the schema), [`BondOptions::for_mode`],
//! [`BondOptions::diff`], [`BondOptions::merge`], validation of mode
//! dependencies, the plan's text, and the netlink encoding and decoding
//! ([`BondOptions::to_attrs`], [`BondOptions::set_attr`], used by hostd's
//! netlink side with raw attribute payloads).

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use crate::types::{IfName, MacAddr};

/// Bond modes (`IFLA_BOND_MODE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum BondMode {
    /// balance-rr (0)
    #[serde(rename = "balance-rr")]
    BalanceRr,
    /// active-backup (1)
    #[serde(rename = "active-backup")]
    ActiveBackup,
    /// balance-xor (2)
    #[serde(rename = "balance-xor")]
    BalanceXor,
    /// broadcast (3)
    #[serde(rename = "broadcast")]
    Broadcast,
    /// 802.3ad / LACP (4)
    #[serde(rename = "802.3ad")]
    Lacp,
    /// balance-tlb (5)
    #[serde(rename = "balance-tlb")]
    BalanceTlb,
    /// balance-alb (6)
    #[serde(rename = "balance-alb")]
    BalanceAlb,
}

impl BondMode {
    /// Whether the kernel uses a primary port in this mode (it keeps a
    /// configured primary's name in the others, unreported, and uses it
    /// again when such a mode comes back).
    pub fn uses_primary(self) -> bool {
        matches!(
            self,
            Self::ActiveBackup | Self::BalanceTlb | Self::BalanceAlb
        )
    }

    /// Every mode, in kernel number order.
    pub const ALL: [BondMode; 7] = [
        Self::BalanceRr,
        Self::ActiveBackup,
        Self::BalanceXor,
        Self::Broadcast,
        Self::Lacp,
        Self::BalanceTlb,
        Self::BalanceAlb,
    ];

    /// Kernel name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BalanceRr => "balance-rr",
            Self::ActiveBackup => "active-backup",
            Self::BalanceXor => "balance-xor",
            Self::Broadcast => "broadcast",
            Self::Lacp => "802.3ad",
            Self::BalanceTlb => "balance-tlb",
            Self::BalanceAlb => "balance-alb",
        }
    }

    /// Kernel number (`IFLA_BOND_MODE`).
    pub fn number(self) -> u8 {
        Self::ALL.iter().position(|m| *m == self).unwrap_or(0) as u8
    }

    /// From the kernel number.
    pub fn from_number(n: u8) -> Option<Self> {
        Self::ALL.get(usize::from(n)).copied()
    }

    fn bit(self) -> u8 {
        1 << self.number()
    }
}

/// The `IFLA_BOND_MODE` attribute number.
pub const IFLA_BOND_MODE: u16 = 1;

macro_rules! kernel_enum {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $var:ident = $s:literal = $n:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum $name {
            $($(#[$vm])* #[serde(rename = $s)] $var),+
        }
        impl $name {
            /// Every value.
            pub const ALL: &'static [$name] = &[$(Self::$var),+];
            /// Kernel name.
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$var => $s),+ }
            }
            /// Kernel number.
            pub fn number(self) -> u32 {
                match self { $(Self::$var => $n),+ }
            }
            /// From the kernel number.
            pub fn from_number(n: u32) -> Option<Self> {
                match n { $($n => Some(Self::$var),)+ _ => None }
            }
        }
    };
}

kernel_enum!(
    /// LACPDU rate.
    LacpRate { /** every 30 s */ Slow = "slow" = 0, /** every second */ Fast = "fast" = 1 }
);
kernel_enum!(
    /// Transmit hash policy.
    XmitHashPolicy {
        /** layer2 */ Layer2 = "layer2" = 0,
        /** layer3+4 */ Layer34 = "layer3+4" = 1,
        /** layer2+3 */ Layer23 = "layer2+3" = 2,
        /** encap2+3 */ Encap23 = "encap2+3" = 3,
        /** encap3+4 */ Encap34 = "encap3+4" = 4,
        /** vlan+srcmac */ VlanSrcMac = "vlan+srcmac" = 5,
    }
);
kernel_enum!(
    /// Aggregator selection.
    AdSelect { /** stable */ Stable = "stable" = 0, /** bandwidth */ Bandwidth = "bandwidth" = 1, /** count */ Count = "count" = 2 }
);
kernel_enum!(
    /// Primary reselection.
    PrimaryReselect { /** always */ Always = "always" = 0, /** better */ Better = "better" = 1, /** failure */ Failure = "failure" = 2 }
);
kernel_enum!(
    /// ARP validation.
    ArpValidate {
        /** none */ None = "none" = 0,
        /** active */ Active = "active" = 1,
        /** backup */ Backup = "backup" = 2,
        /** all */ All = "all" = 3,
        /** filter */ Filter = "filter" = 4,
        /** filter_active */ FilterActive = "filter_active" = 5,
        /** filter_backup */ FilterBackup = "filter_backup" = 6,
    }
);
kernel_enum!(
    /// ARP targets that must be up.
    ArpAllTargets { /** any */ Any = "any" = 0, /** all */ All = "all" = 1 }
);
kernel_enum!(
    /// MAC policy on failover.
    FailOverMac { /** none */ None = "none" = 0, /** active */ Active = "active" = 1, /** follow */ Follow = "follow" = 2 }
);

/// How an option travels in netlink.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wire {
    /// u8.
    U8,
    /// u16.
    U16,
    /// u32.
    U32,
    /// Six bytes.
    Mac,
    /// An ifindex (u32) naming a link.
    IfIndex,
    /// Nested list of IPv4 addresses (network order), attribute type = index.
    Ipv4List,
}

/// A value of one option, in wire form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OptValue {
    /// An integer (also booleans and enums).
    Num(u32),
    /// A MAC address.
    Mac(MacAddr),
    /// A link name (encoded as its ifindex).
    Link(IfName),
    /// IPv4 addresses.
    Ipv4(Vec<Ipv4Addr>),
}

/// Modes an option is valid in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Modes(u8);

impl Modes {
    /// Every mode.
    pub const ALL: Modes = Modes(0x7f);

    const fn of(modes: &[BondMode]) -> Modes {
        let mut bits = 0u8;
        let mut i = 0;
        while i < modes.len() {
            bits |= 1 << (modes[i] as u8);
            i += 1;
        }
        Modes(bits)
    }

    const fn not(modes: &[BondMode]) -> Modes {
        Modes(!Self::of(modes).0 & 0x7f)
    }

    /// True when `mode` is in the set.
    pub fn contains(self, mode: BondMode) -> bool {
        self.0 & mode.bit() != 0
    }

    /// The modes, in kernel order.
    pub fn list(self) -> Vec<BondMode> {
        BondMode::ALL
            .into_iter()
            .filter(|m| self.contains(*m))
            .collect()
    }
}

const LACP_ONLY: Modes = Modes::of(&[BondMode::Lacp]);
const PRIMARY_MODES: Modes = Modes::of(&[
    BondMode::ActiveBackup,
    BondMode::BalanceTlb,
    BondMode::BalanceAlb,
]);
const HASH_MODES: Modes = Modes::of(&[BondMode::BalanceXor, BondMode::Lacp, BondMode::BalanceTlb]);
const ARP_MODES: Modes = Modes::not(&[BondMode::Lacp, BondMode::BalanceTlb, BondMode::BalanceAlb]);
const RR_ONLY: Modes = Modes::of(&[BondMode::BalanceRr]);
const TLB_ONLY: Modes = Modes::of(&[BondMode::BalanceTlb]);

/// What the kernel needs before it accepts a change of an option.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Needs {
    /// Changed on a live bond.
    Live,
    /// The bond must be down (`BOND_OPTFLAG_IFDOWN`).
    Down,
    /// The bond must have no ports (`BOND_OPTFLAG_NOSLAVES`).
    NoPorts,
}

/// One bond option: everything hostd knows about it.
#[derive(Debug, Clone, Copy)]
pub struct BondOptionDef {
    /// The kernel's name (as in /sys/class/net/BOND/bonding/ and the schema).
    pub name: &'static str,
    /// `IFLA_BOND_*` attribute number.
    pub attr: u16,
    /// Wire type.
    pub wire: Wire,
    /// Modes the kernel accepts it in (others fail with a mode dependency error).
    pub modes: Modes,
    /// What a change needs.
    pub needs: Needs,
    /// Inclusive range of numeric values the kernel accepts, when narrower
    /// than the wire type.
    pub range: Option<(u32, u32)>,
}

/// Conversions between a schema value and its wire form.
trait OptionValue: Sized {
    fn to_opt(&self) -> OptValue;
    fn from_opt(v: &OptValue) -> Option<Self>;
}

impl OptionValue for u32 {
    fn to_opt(&self) -> OptValue {
        OptValue::Num(*self)
    }
    fn from_opt(v: &OptValue) -> Option<Self> {
        match v {
            OptValue::Num(n) => Some(*n),
            _ => None,
        }
    }
}

impl OptionValue for u16 {
    fn to_opt(&self) -> OptValue {
        OptValue::Num(u32::from(*self))
    }
    fn from_opt(v: &OptValue) -> Option<Self> {
        match v {
            OptValue::Num(n) => u16::try_from(*n).ok(),
            _ => None,
        }
    }
}

impl OptionValue for u8 {
    fn to_opt(&self) -> OptValue {
        OptValue::Num(u32::from(*self))
    }
    fn from_opt(v: &OptValue) -> Option<Self> {
        match v {
            OptValue::Num(n) => u8::try_from(*n).ok(),
            _ => None,
        }
    }
}

impl OptionValue for bool {
    fn to_opt(&self) -> OptValue {
        OptValue::Num(u32::from(*self))
    }
    fn from_opt(v: &OptValue) -> Option<Self> {
        match v {
            OptValue::Num(n) => Some(*n != 0),
            _ => None,
        }
    }
}

impl OptionValue for MacAddr {
    fn to_opt(&self) -> OptValue {
        OptValue::Mac(*self)
    }
    fn from_opt(v: &OptValue) -> Option<Self> {
        match v {
            OptValue::Mac(m) => Some(*m),
            _ => None,
        }
    }
}

impl OptionValue for IfName {
    fn to_opt(&self) -> OptValue {
        OptValue::Link(self.clone())
    }
    fn from_opt(v: &OptValue) -> Option<Self> {
        match v {
            OptValue::Link(n) => Some(n.clone()),
            _ => None,
        }
    }
}

impl OptionValue for Vec<Ipv4Addr> {
    fn to_opt(&self) -> OptValue {
        OptValue::Ipv4(self.clone())
    }
    fn from_opt(v: &OptValue) -> Option<Self> {
        match v {
            OptValue::Ipv4(a) => Some(a.clone()),
            _ => None,
        }
    }
}

macro_rules! enum_values {
    ($($t:ty),*) => {$(
        impl OptionValue for $t {
            fn to_opt(&self) -> OptValue {
                OptValue::Num(self.number())
            }
            fn from_opt(v: &OptValue) -> Option<Self> {
                match v {
                    OptValue::Num(n) => <$t>::from_number(*n),
                    _ => None,
                }
            }
        }
    )*};
}
enum_values!(
    LacpRate,
    XmitHashPolicy,
    AdSelect,
    PrimaryReselect,
    ArpValidate,
    ArpAllTargets,
    FailOverMac
);

macro_rules! bond_options {
    ($($field:ident: $ty:ty = $attr:literal, $wire:ident, $modes:expr, $needs:ident, $range:expr;)*) => {
        /// Kernel bonding options (names as in /sys/class/net/BOND/bonding/).
        /// Unset options keep the kernel's current value.
        #[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
        #[serde(deny_unknown_fields)]
        #[allow(missing_docs, reason = "each option is documented in docs/hostd.md and by its kernel name")]
        pub struct BondOptions {
            $(
                #[serde(default, skip_serializing_if = "Option::is_none")]
                pub $field: Option<$ty>,
            )*
        }

        /// Every bond option hostd manages, in attribute order.
        pub const BOND_OPTIONS: &[BondOptionDef] = &[$(
            BondOptionDef {
                name: stringify!($field),
                attr: $attr,
                wire: Wire::$wire,
                modes: $modes,
                needs: Needs::$needs,
                range: $range,
            },
        )*];

        impl BondOptions {
            /// The value of the option `name`, in wire form, when set.
            pub fn get(&self, name: &str) -> Option<OptValue> {
                match name {
                    $(stringify!($field) => self.$field.as_ref().map(OptionValue::to_opt),)*
                    _ => None,
                }
            }

            /// Sets the option `name` from its wire form; false when the value
            /// does not fit the option (the option is left unset).
            pub fn set(&mut self, name: &str, v: &OptValue) -> bool {
                match name {
                    $(stringify!($field) => {
                        self.$field = <$ty as OptionValue>::from_opt(v);
                        self.$field.is_some()
                    })*
                    _ => false,
                }
            }

            /// Unsets the option `name`.
            pub fn clear(&mut self, name: &str) {
                match name {
                    $(stringify!($field) => self.$field = None,)*
                    _ => {}
                }
            }

            /// True when the option `name` is set.
            pub fn is_set(&self, name: &str) -> bool {
                match name {
                    $(stringify!($field) => self.$field.is_some(),)*
                    _ => false,
                }
            }
        }
    };
}

bond_options! {
    miimon: u32 = 3, U32, Modes::ALL, Live, None;
    updelay: u32 = 4, U32, Modes::ALL, Live, None;
    downdelay: u32 = 5, U32, Modes::ALL, Live, None;
    use_carrier: bool = 6, U8, Modes::ALL, Live, None;
    arp_interval: u32 = 7, U32, ARP_MODES, Live, None;
    arp_ip_target: Vec<Ipv4Addr> = 8, Ipv4List, Modes::ALL, Live, None;
    arp_validate: ArpValidate = 9, U32, ARP_MODES, Live, None;
    arp_all_targets: ArpAllTargets = 10, U32, Modes::ALL, Live, None;
    primary: IfName = 11, IfIndex, PRIMARY_MODES, Live, None;
    primary_reselect: PrimaryReselect = 12, U8, PRIMARY_MODES, Live, None;
    fail_over_mac: FailOverMac = 13, U8, Modes::ALL, NoPorts, None;
    xmit_hash_policy: XmitHashPolicy = 14, U8, HASH_MODES, Live, None;
    resend_igmp: u32 = 15, U32, Modes::ALL, Live, Some((0, 255));
    num_grat_arp: u8 = 16, U8, Modes::ALL, Live, None;
    all_slaves_active: bool = 17, U8, Modes::ALL, Live, None;
    min_links: u32 = 18, U32, Modes::ALL, Live, None;
    lp_interval: u32 = 19, U32, Modes::ALL, Live, Some((1, 0x7fff_ffff));
    packets_per_slave: u32 = 20, U32, RR_ONLY, Live, Some((0, 65535));
    lacp_rate: LacpRate = 21, U8, LACP_ONLY, Down, None;
    ad_select: AdSelect = 22, U8, LACP_ONLY, Down, None;
    ad_actor_sys_prio: u16 = 24, U16, LACP_ONLY, Down, Some((1, 65535));
    ad_user_port_key: u16 = 25, U16, LACP_ONLY, Down, Some((0, 1023));
    ad_actor_system: MacAddr = 26, Mac, LACP_ONLY, Down, None;
    tlb_dynamic_lb: bool = 27, U8, TLB_ONLY, Down, None;
    peer_notif_delay: u32 = 28, U32, Modes::ALL, Live, None;
    lacp_active: bool = 29, U8, LACP_ONLY, Down, None;
    missed_max: u8 = 30, U8, ARP_MODES, Live, Some((1, 255));
}

impl BondOptionDef {
    /// The definition of the option called `name`.
    pub fn by_name(name: &str) -> Option<&'static BondOptionDef> {
        BOND_OPTIONS.iter().find(|d| d.name == name)
    }

    /// The definition of the option with attribute number `attr`.
    pub fn by_attr(attr: u16) -> Option<&'static BondOptionDef> {
        BOND_OPTIONS.iter().find(|d| d.attr == attr)
    }
}

impl BondOptions {
    /// True when no option is set.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// The options that are set, with their definitions, in attribute order.
    pub fn iter(&self) -> impl Iterator<Item = (&'static BondOptionDef, OptValue)> + '_ {
        BOND_OPTIONS
            .iter()
            .filter_map(|d| self.get(d.name).map(|v| (d, v)))
    }

    /// The options the kernel accepts in `mode` (others fail with a mode
    /// dependency error), without values that cannot be written back (an
    /// all-zero `ad_actor_system`).
    pub fn for_mode(&self, mode: BondMode) -> BondOptions {
        let mut o = self.clone();
        for d in BOND_OPTIONS {
            if !d.modes.contains(mode) {
                o.clear(d.name);
            }
        }
        if o.ad_actor_system.is_some_and(|m| m.is_zero()) {
            o.ad_actor_system = None;
        }
        o
    }

    /// The options set in `self` (desired) whose value differs in `have`.
    pub fn diff(&self, have: &BondOptions) -> BondOptions {
        let mut out = BondOptions::default();
        for (d, v) in self.iter() {
            if have.get(d.name).as_ref() != Some(&v) {
                out.set(d.name, &v);
            }
        }
        out
    }

    /// Options the kernel refuses outright (`EPERM`, "MII monitoring is
    /// disabled") while the MII monitor is off, even to set them to 0.
    pub const NEED_MIIMON: [&'static str; 3] = ["updelay", "downdelay", "peer_notif_delay"];

    /// These options without the MII delays when the MII monitor will be
    /// off (`miimon` 0, from these options or `current`) and the delay is 0:
    /// setting them is a no-op the kernel refuses.
    pub fn without_idle_mii_delays(&self, current: Option<u32>) -> BondOptions {
        let miimon = self.miimon.or(current).unwrap_or(0);
        let mut out = self.clone();
        if miimon == 0 {
            for n in Self::NEED_MIIMON {
                if out.get(n) == Some(OptValue::Num(0)) {
                    out.clear(n);
                }
            }
        }
        out
    }

    /// Why the kernel refuses these options on a bond whose MII monitor is
    /// at `current` (before them), if it does.
    pub fn mii_refusal(&self, current: Option<u32>) -> Option<String> {
        let miimon = self.miimon.or(current).unwrap_or(0);
        if miimon != 0 {
            return None;
        }
        Self::NEED_MIIMON
            .iter()
            .find(|n| self.is_set(n))
            .map(|n| format!("{n} cannot be set while MII monitoring is disabled (EPERM)"))
    }

    /// The options whose definition satisfies `keep`.
    pub fn only(&self, keep: impl Fn(&BondOptionDef) -> bool) -> BondOptions {
        let mut out = self.clone();
        for d in BOND_OPTIONS {
            if !keep(d) {
                out.clear(d.name);
            }
        }
        out
    }

    /// Sets every option set in `other`.
    pub fn merge(&mut self, other: &BondOptions) {
        for (d, v) in other.iter() {
            self.set(d.name, &v);
        }
    }

    /// What changing these options needs from the kernel (the strictest).
    pub fn needs(&self) -> Needs {
        self.iter()
            .map(|(d, _)| d.needs)
            .max()
            .unwrap_or(Needs::Live)
    }

    /// True when changing these options needs the bond down.
    pub fn needs_down(&self) -> bool {
        self.iter().any(|(d, _)| d.needs == Needs::Down)
    }

    /// True when changing these options needs the bond without ports.
    pub fn needs_no_ports(&self) -> bool {
        self.iter().any(|(d, _)| d.needs == Needs::NoPorts)
    }

    /// The options as `(attribute, value)` pairs, in the order the kernel
    /// should get them (attribute order; `miimon` before the delays that are
    /// multiples of it, `arp_interval` before its targets).
    pub fn to_attrs(&self) -> Vec<(u16, Wire, OptValue)> {
        self.iter().map(|(d, v)| (d.attr, d.wire, v)).collect()
    }

    /// Sets the option with attribute number `attr` from its wire value;
    /// false for attributes hostd does not manage.
    pub fn set_attr(&mut self, attr: u16, v: &OptValue) -> bool {
        match BondOptionDef::by_attr(attr) {
            Some(d) => self.set(d.name, v),
            None => false,
        }
    }

    /// What a new bond of `mode` reports when no option is given: the
    /// kernel's defaults (Debian 12's 6.1: `bonding_defaults` without module
    /// parameters), with `miimon` 100 in the modes that cannot use the ARP
    /// monitor (setting such a mode turns a `miimon` of 0 into 100), and the
    /// 802.3ad identity only in 802.3ad (the kernel reports it only there).
    pub fn kernel_defaults(mode: BondMode) -> BondOptions {
        let mut o = BondOptions {
            miimon: Some(0),
            updelay: Some(0),
            downdelay: Some(0),
            use_carrier: Some(true),
            arp_interval: Some(0),
            arp_ip_target: Some(Vec::new()),
            arp_validate: Some(ArpValidate::None),
            arp_all_targets: Some(ArpAllTargets::Any),
            primary_reselect: Some(PrimaryReselect::Always),
            fail_over_mac: Some(FailOverMac::None),
            xmit_hash_policy: Some(XmitHashPolicy::Layer2),
            resend_igmp: Some(1),
            num_grat_arp: Some(1),
            all_slaves_active: Some(false),
            min_links: Some(0),
            lp_interval: Some(1),
            packets_per_slave: Some(1),
            lacp_rate: Some(LacpRate::Slow),
            ad_select: Some(AdSelect::Stable),
            tlb_dynamic_lb: Some(true),
            peer_notif_delay: Some(0),
            lacp_active: Some(true),
            missed_max: Some(2),
            ..Default::default()
        };
        o.after_mode_set(mode);
        o
    }

    /// What setting the mode does to the other options (the kernel's
    /// `bond_option_mode_set`): a mode that cannot use the ARP monitor
    /// (802.3ad, balance-tlb, balance-alb) turns it off and turns the MII
    /// monitor on at 100 ms if it was off; every mode change resets
    /// `arp_validate` to none ("don't cache arp_validate between modes");
    /// balance-alb turns `tlb_dynamic_lb` on.
    pub fn after_mode_set(&mut self, mode: BondMode) {
        self.arp_validate = Some(ArpValidate::None);
        if mode == BondMode::BalanceAlb {
            self.tlb_dynamic_lb = Some(true);
        }
        let arp_capable = !matches!(
            mode,
            BondMode::Lacp | BondMode::BalanceTlb | BondMode::BalanceAlb
        );
        if !arp_capable {
            if self.arp_interval.is_some_and(|a| a > 0) {
                self.arp_interval = Some(0);
            }
            if self.miimon.is_none_or(|m| m == 0) {
                self.miimon = Some(100);
            }
        }
        if mode != BondMode::Lacp {
            self.ad_actor_sys_prio = None;
            self.ad_user_port_key = None;
            self.ad_actor_system = None;
        } else {
            self.ad_actor_sys_prio.get_or_insert(65535);
            self.ad_user_port_key.get_or_insert(0);
            self.ad_actor_system.get_or_insert(MacAddr([0; 6]));
        }
    }

    /// Plan text: ` name value` for each set option, in attribute order.
    pub fn text(&self) -> String {
        let mut s = String::new();
        for (d, v) in self.iter() {
            s.push(' ');
            s.push_str(d.name);
            s.push(' ');
            s.push_str(&self.value_text(d));
            let _ = v;
        }
        s
    }

    /// The value of the option `d` as the schema writes it.
    pub fn value_text(&self, d: &BondOptionDef) -> String {
        match serde_json::to_value(self) {
            Ok(serde_json::Value::Object(m)) => match m.get(d.name) {
                Some(serde_json::Value::String(s)) => s.clone(),
                Some(serde_json::Value::Array(a)) => a
                    .iter()
                    .map(|x| x.as_str().unwrap_or("?").to_owned())
                    .collect::<Vec<_>>()
                    .join(","),
                Some(other) => other.to_string(),
                None => String::new(),
            },
            _ => String::new(),
        }
    }
}

/// Bond: mode, ports and options.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct BondConfig {
    /// Mode.
    pub mode: BondMode,
    /// Ports (ethernet interfaces declared in the same state).
    #[serde(default)]
    pub port: Vec<IfName>,
    /// Kernel bonding options, with the kernel's names.
    #[serde(default, skip_serializing_if = "BondOptions::is_empty")]
    pub options: BondOptions,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_option_is_a_field_and_round_trips() {
        let mut seen = std::collections::BTreeSet::new();
        for d in BOND_OPTIONS {
            assert!(seen.insert(d.attr), "attribute {} twice", d.attr);
            let v = match d.wire {
                Wire::U8 | Wire::U16 | Wire::U32 => {
                    OptValue::Num(d.range.map_or(1, |r| r.0.max(1)))
                }
                Wire::Mac => OptValue::Mac(MacAddr([2, 0, 0, 0, 0, 1])),
                Wire::IfIndex => OptValue::Link(IfName::new("eth0").unwrap()),
                Wire::Ipv4List => OptValue::Ipv4(vec![Ipv4Addr::new(192, 0, 2, 1)]),
            };
            let mut o = BondOptions::default();
            assert!(o.set(d.name, &v), "{} takes its value", d.name);
            assert_eq!(o.get(d.name), Some(v.clone()), "{}", d.name);
            // The serialized schema uses the same name.
            let j = serde_json::to_value(&o).unwrap();
            assert!(j.get(d.name).is_some(), "{} is the schema field", d.name);
            let mut p = BondOptions::default();
            assert!(p.set_attr(d.attr, &v));
            assert_eq!(p, o);
        }
        assert_eq!(BOND_OPTIONS.len(), 27);
    }

    #[test]
    fn mode_validity_and_needs() {
        let o = BondOptions {
            lacp_rate: Some(LacpRate::Fast),
            primary: Some(IfName::new("eth0").unwrap()),
            miimon: Some(100),
            packets_per_slave: Some(2),
            ..Default::default()
        };
        let ab = o.for_mode(BondMode::ActiveBackup);
        assert!(ab.lacp_rate.is_none() && ab.packets_per_slave.is_none());
        assert!(ab.primary.is_some() && ab.miimon.is_some());
        let lacp = o.for_mode(BondMode::Lacp);
        assert!(lacp.lacp_rate.is_some() && lacp.primary.is_none());
        assert_eq!(o.needs(), Needs::Down);
        assert_eq!(
            BondOptions {
                fail_over_mac: Some(FailOverMac::Active),
                ..Default::default()
            }
            .needs(),
            Needs::NoPorts
        );
        assert_eq!(
            BondOptions {
                miimon: Some(1),
                ..Default::default()
            }
            .needs(),
            Needs::Live
        );
    }

    #[test]
    fn diff_and_merge() {
        let want = BondOptions {
            miimon: Some(100),
            lacp_rate: Some(LacpRate::Fast),
            ..Default::default()
        };
        let have = BondOptions {
            miimon: Some(100),
            lacp_rate: Some(LacpRate::Slow),
            updelay: Some(0),
            ..Default::default()
        };
        let d = want.diff(&have);
        assert_eq!(
            d,
            BondOptions {
                lacp_rate: Some(LacpRate::Fast),
                ..Default::default()
            }
        );
        let mut h = have.clone();
        h.merge(&d);
        assert!(want.diff(&h).is_empty());
        assert_eq!(d.text(), " lacp_rate fast");
    }

    #[test]
    fn mode_numbers() {
        for m in BondMode::ALL {
            assert_eq!(BondMode::from_number(m.number()), Some(m));
        }
        assert_eq!(BondMode::Lacp.number(), 4);
        assert_eq!(XmitHashPolicy::VlanSrcMac.number(), 5);
        assert_eq!(ArpValidate::from_number(6), Some(ArpValidate::FilterBackup));
    }
}
